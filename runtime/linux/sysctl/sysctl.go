// Package sysctl applies a pod's sysctls inside the pod's own namespaces and
// never on the host: network ones in the pod's network namespace, IPC ones
// in its IPC namespace. Sysctls Kubernetes calls safe are always allowed;
// other namespaced ones only when the agent allows unsafe sysctls; sysctls
// that are not namespaced (they would change the whole node) never are.
package sysctl

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// safe is Kubernetes' list of safe sysctls: namespaced, and unable to hurt
// other pods or the node.
var safe = map[string]bool{
	"kernel.shm_rmid_forced":              true,
	"net.ipv4.ip_local_port_range":        true,
	"net.ipv4.tcp_syncookies":             true,
	"net.ipv4.ping_group_range":           true,
	"net.ipv4.ip_unprivileged_port_start": true,
	"net.ipv4.ip_local_reserved_ports":    true,
	"net.ipv4.tcp_keepalive_time":         true,
	"net.ipv4.tcp_fin_timeout":            true,
	"net.ipv4.tcp_keepalive_intvl":        true,
	"net.ipv4.tcp_keepalive_probes":       true,
	"net.ipv4.tcp_rmem":                   true,
	"net.ipv4.tcp_wmem":                   true,
}

// Namespace is the kernel namespace a sysctl belongs to.
type Namespace string

const (
	NetNS Namespace = "net"
	IPCNS Namespace = "ipc"
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([-_a-z0-9]*[a-z0-9])?([./][a-z0-9]([-_a-z0-9]*[a-z0-9])?)*$`)

// Normalize turns the slash form (net/ipv4/conf/eth0.100/forwarding) into the
// dotted form used for policy decisions, keeping dots inside components
// (interface names) distinguishable by the returned path.
func Normalize(name string) (dotted, procPath string, err error) {
	if !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return "", "", fmt.Errorf("sysctl %q: not a sysctl name: %w", name, runtime.ErrInvalidConfig)
	}
	if strings.Contains(name, "/") {
		return strings.ReplaceAll(name, "/", "."), filepath.Join("/proc/sys", name), nil
	}
	return name, filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/")), nil
}

// NamespaceOf returns the namespace of a (dotted) sysctl, or "" when it is
// not namespaced.
func NamespaceOf(dotted string) Namespace {
	switch {
	case strings.HasPrefix(dotted, "net."):
		return NetNS
	case dotted == "kernel.sem", strings.HasPrefix(dotted, "kernel.shm"),
		strings.HasPrefix(dotted, "kernel.msg"), strings.HasPrefix(dotted, "fs.mqueue."):
		return IPCNS
	}
	return ""
}

// Policy is what the pod and the agent allow.
type Policy struct {
	AllowUnsafe bool // Config.AllowUnsafeSysctls
	HostNetwork bool // net.* would change the node
	HostIPC     bool // IPC sysctls would change the node
}

// Validate checks every sysctl of a pod before anything is made; the error
// names the first offender and is runtime.ErrInvalidConfig (retrying cannot
// help until the manifest or the agent flag changes).
func Validate(sysctls map[string]string, p Policy) error {
	for _, name := range sorted(sysctls) {
		dotted, _, err := Normalize(name)
		if err != nil {
			return err
		}
		val := sysctls[name]
		if strings.ContainsAny(val, "\n") {
			return fmt.Errorf("sysctl %s: value %q spans lines: %w", name, val, runtime.ErrInvalidConfig)
		}
		ns := NamespaceOf(dotted)
		switch {
		case ns == "":
			return fmt.Errorf("sysctl %s: not namespaced, it would change the whole node: %w", name, runtime.ErrInvalidConfig)
		case ns == NetNS && p.HostNetwork:
			return fmt.Errorf("sysctl %s: the pod uses the host network, so it would change the node: %w", name, runtime.ErrInvalidConfig)
		case ns == IPCNS && p.HostIPC:
			return fmt.Errorf("sysctl %s: the pod uses the host IPC namespace, so it would change the node: %w", name, runtime.ErrInvalidConfig)
		case !safe[dotted] && !p.AllowUnsafe:
			return fmt.Errorf("sysctl %s: unsafe; the agent must be started with --allow-unsafe-sysctls: %w", name, runtime.ErrInvalidConfig)
		}
	}
	return nil
}

func sorted(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Paths are the namespace files sysctls are applied in, such as
// /run/netns/<name> and /proc/<pause>/ns/ipc.
type Paths struct {
	Net string
	IPC string
}

// Apply writes the sysctls inside the namespaces of paths. Validate first:
// Apply refuses a sysctl whose namespace has no path rather than write it on
// the host.
func Apply(sysctls map[string]string, paths Paths) error {
	byNS := map[Namespace][][2]string{}
	for _, name := range sorted(sysctls) {
		dotted, proc, err := Normalize(name)
		if err != nil {
			return err
		}
		ns := NamespaceOf(dotted)
		if ns == "" {
			return fmt.Errorf("sysctl %s: not namespaced: %w", name, runtime.ErrInvalidConfig)
		}
		byNS[ns] = append(byNS[ns], [2]string{proc, sysctls[name]})
	}
	for _, ns := range []Namespace{NetNS, IPCNS} {
		if len(byNS[ns]) == 0 {
			continue
		}
		path, flag := paths.Net, unix.CLONE_NEWNET
		if ns == IPCNS {
			path, flag = paths.IPC, unix.CLONE_NEWIPC
		}
		if path == "" {
			return fmt.Errorf("sysctl %s: no %s namespace to apply it in: %w", byNS[ns][0][0], ns, runtime.ErrInvalidConfig)
		}
		if err := inNS(path, flag, func() error {
			for _, kv := range byNS[ns] {
				if err := os.WriteFile(kv[0], []byte(kv[1]), 0o644); err != nil {
					return fmt.Errorf("sysctl: set %s=%q in %s: %w", kv[0], kv[1], path, err)
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// Read returns a sysctl's value as seen inside the namespace at path (flag
// CLONE_NEWNET or CLONE_NEWIPC), or in the caller's when path is "".
func Read(name string, path string, flag int) (string, error) {
	_, proc, err := Normalize(name)
	if err != nil {
		return "", err
	}
	var out string
	read := func() error {
		b, err := os.ReadFile(proc)
		out = strings.TrimSpace(string(b))
		return err
	}
	if path == "" {
		err = read()
	} else {
		err = inNS(path, flag, read)
	}
	return out, err
}

// inNS runs fn on a thread that has joined the namespace at path. /proc/sys
// resolves net and IPC sysctls through the calling thread's namespaces.
func inNS(path string, flag int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		kind := "net"
		if flag == unix.CLONE_NEWIPC {
			kind = "ipc"
		}
		self, err := os.Open("/proc/thread-self/ns/" + kind)
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			errc <- fmt.Errorf("sysctl: open namespace: %w", err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), flag); err != nil {
			errc <- fmt.Errorf("sysctl: enter %s: %w", path, os.NewSyscallError("setns", err))
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), flag); err != nil {
			// Leave the thread locked: it dies with this goroutine instead
			// of running other goroutines inside the pod's namespace.
			errc <- fmt.Errorf("sysctl: leave %s: %w", path, os.NewSyscallError("setns", err))
			return
		}
		goruntime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
