// Package resolv writes the name-resolution files of a pod sandbox:
// resolv.conf from the pod's DNS configuration and the host's resolver
// settings, and /etc/hosts with the pod's own names, its hostAliases and the
// names of the other pods on the node (<pod>.<namespace>), kept current in
// place as pods come and go (see docs/adr/0001-pod-name-resolution.md).
package resolv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Host locates the host's resolver configuration.
type Host struct {
	// ResolvConf is the host's resolver file (default /etc/resolv.conf).
	ResolvConf string
	// Upstream is the file that lists the real upstream servers when the
	// host runs a loopback stub (default systemd-resolved's
	// /run/systemd/resolve/resolv.conf).
	Upstream string
}

// DefaultHost is the usual host layout.
var DefaultHost = Host{ResolvConf: "/etc/resolv.conf", Upstream: "/run/systemd/resolve/resolv.conf"}

// Limits glibc and musl apply; more is silently ignored by them, so we
// truncate rather than write entries that would never be used.
const (
	maxNameservers = 3
	maxSearches    = 32
)

// Conf is a parsed resolv.conf.
type Conf struct {
	Nameservers []string
	Searches    []string
	Options     []string
}

// Parse reads the nameserver, search/domain and options lines of a
// resolv.conf; other lines (sortlist, comments) are dropped.
func Parse(data []byte) Conf {
	var c Conf
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			c.Nameservers = append(c.Nameservers, f[1])
		case "search", "domain":
			// The last search or domain line wins, as in the resolver.
			c.Searches = append([]string(nil), f[1:]...)
		case "options":
			c.Options = append(c.Options, f[1:]...)
		}
	}
	return c
}

// Bytes renders c as a resolv.conf.
func (c Conf) Bytes() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by pelagos-agent from the pod's dnsPolicy and dnsConfig.\n")
	if len(c.Nameservers) == 0 {
		b.WriteString("# No usable nameserver: the host has only loopback resolvers and no known upstreams.\n")
	}
	for _, s := range c.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(c.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(c.Searches, " "))
	}
	if len(c.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(c.Options, " "))
	}
	return b.Bytes()
}

func isLoopback(s string) bool {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	return a.Unmap().IsLoopback()
}

// HostConf returns the host's resolver configuration as a pod can use it:
// loopback nameservers (systemd-resolved's 127.0.0.53, a local dnsmasq) are
// unreachable from a pod's network namespace, so they are replaced by the
// upstreams of h.Upstream when that file exists, and dropped otherwise.
func HostConf(h Host) (Conf, error) {
	data, err := ReadHostFile(h.ResolvConf)
	if errors.Is(err, fs.ErrNotExist) {
		return Conf{}, nil // a host without resolv.conf: the pod gets none either
	}
	if err != nil {
		return Conf{}, fmt.Errorf("resolv: read host resolver config: %w", err)
	}
	c := Parse(data)
	var kept []string
	loop := false
	for _, s := range c.Nameservers {
		if isLoopback(s) {
			loop = true
			continue
		}
		kept = append(kept, s)
	}
	if loop && h.Upstream != "" {
		up, err := ReadHostFile(h.Upstream)
		switch {
		case err == nil:
			uc := Parse(up)
			for _, s := range uc.Nameservers {
				if !isLoopback(s) {
					kept = append(kept, s)
				}
			}
			if len(c.Searches) == 0 {
				c.Searches = uc.Searches
			}
		case !errors.Is(err, fs.ErrNotExist):
			return Conf{}, fmt.Errorf("resolv: read upstream resolver config: %w", err)
		}
	}
	c.Nameservers = dedupe(kept)
	// The stub's own option (trust-ad, edns0) is harmless; keep options.
	return c, nil
}

// Build merges the pod's DNS configuration into the host's (when UseHost is
// set, dnsPolicy Default and, on a node without cluster DNS, ClusterFirst)
// or uses it alone (dnsPolicy None). Nameservers the pod names itself are
// kept even on loopback: they are the pod's own loopback, where a sidecar
// resolver may listen.
func Build(dns runtime.DNSConfig, h Host) (Conf, error) {
	for _, s := range dns.Servers {
		if _, err := netip.ParseAddr(s); err != nil {
			return Conf{}, fmt.Errorf("resolv: dnsConfig.nameservers: %q is not an IP address: %w", s, runtime.ErrInvalidConfig)
		}
	}
	for _, s := range dns.Searches {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			return Conf{}, fmt.Errorf("resolv: dnsConfig.searches: %q is not a domain: %w", s, runtime.ErrInvalidConfig)
		}
	}
	for _, o := range dns.Options {
		if o == "" || strings.ContainsAny(o, " \t\n") {
			return Conf{}, fmt.Errorf("resolv: dnsConfig.options: %q is not an option: %w", o, runtime.ErrInvalidConfig)
		}
	}
	var c Conf
	if dns.UseHost {
		var err error
		if c, err = HostConf(h); err != nil {
			return Conf{}, err
		}
	}
	c.Nameservers = dedupe(append(c.Nameservers, dns.Servers...))
	if len(c.Nameservers) > maxNameservers {
		c.Nameservers = c.Nameservers[:maxNameservers]
	}
	c.Searches = dedupe(append(c.Searches, dns.Searches...))
	if len(c.Searches) > maxSearches {
		c.Searches = c.Searches[:maxSearches]
	}
	c.Options = mergeOptions(c.Options, dns.Options)
	return c, nil
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// mergeOptions keeps one option per name ("ndots" of "ndots:5"); the pod's
// value wins over the host's, as Kubernetes merges them.
func mergeOptions(host, pod []string) []string {
	var out []string
	idx := map[string]int{}
	for _, o := range append(append([]string(nil), host...), pod...) {
		name, _, _ := strings.Cut(o, ":")
		if i, ok := idx[name]; ok {
			out[i] = o
			continue
		}
		idx[name] = len(out)
		out = append(out, o)
	}
	return out
}

// MaxHostFileSize caps what this package reads of the host's resolver
// files and the node's /etc/hosts: they are a few hundred bytes, their
// content ends up on the pod's size-capped tmpfs, and a bigger one is
// refused rather than read into the agent's memory.
const MaxHostFileSize = 1 << 20

// ReadHostFile reads a host file of at most MaxHostFileSize bytes.
func ReadHostFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxHostFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxHostFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxHostFileSize)
	}
	return b, nil
}

// WriteFile writes a file the containers of a pod bind-mount. A new file is
// written atomically (temp file, rename; no fsync: these files live under
// the volatile run root and are rebuilt from the records, so durability
// would buy nothing and cost milliseconds per pod). An existing one is
// rewritten in place instead, because a rename would leave every existing
// bind mount on the old inode and the update would never be seen; the
// content is written with a single write before truncating, so a reader
// sees either the old or the new lines, at worst with a stale tail for an
// instant. Identical content is not rewritten.
//
// Containers can write to these files, so the old content is read only as
// far as it takes to compare it with data (len(data)+1 bytes), whatever a
// container left there.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return writeFile(path, data, mode, true)
}

// UpdateFile rewrites an existing file in place like WriteFile and does
// nothing when the file does not exist: the files of other sandboxes are
// refreshed with it, and a sandbox being removed must not get files back.
func UpdateFile(path string, data []byte) error {
	return writeFile(path, data, 0, false)
}

// Every error here comes from an *os.File or os call and names the file.
func writeFile(path string, data []byte, mode os.FileMode, create bool) error {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err == nil {
		defer f.Close()
		old, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
		if err != nil {
			return fmt.Errorf("resolv: %w", err)
		}
		if bytes.Equal(old, data) {
			return nil
		}
		if _, err := f.WriteAt(data, 0); err != nil {
			return fmt.Errorf("resolv: %w", err)
		}
		if err := f.Truncate(int64(len(data))); err != nil {
			return fmt.Errorf("resolv: %w", err)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("resolv: %w", err)
	}
	if !create {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("resolv: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("resolv: %w", err)
	}
	return nil
}
