// Package nsinit is the container init: the helper process that is born in
// a container's new mount (and PID) namespace, or that joins a running
// container's namespaces for exec, and then builds the root filesystem,
// drops privileges, loads seccomp and execs the workload. Spawn is the
// starting side, used by the shim and, for exec, by the agent.
package nsinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/caps"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/console"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/oomscore"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/rootfs"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/seccomp/filter"
)

// Name is argv[0] of the init.
const Name = "pelagos-init"

// File descriptors of the init: the spec arrives on SpecFD (the shim
// writes it only after placing the init in its cgroups), and ErrFD carries
// a failure message back; it is close-on-exec, so EOF without a message
// means the workload's execve succeeded. An exec init gets a pidfd of the
// container's main process on MountFD, whose mount namespace it joins. An
// init whose spec asks for a terminal sends the terminal's master on
// ConsoleFD, a unix socket.
const (
	SpecFD    = 3
	ErrFD     = 4
	MountFD   = 5
	ConsoleFD = 6
)

// DefaultPath is the PATH a container gets when neither the image nor the
// pod sets one (Docker's), and the one the init searches then.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Env keeps the init's own Go runtime small and out of the way: no
// collection on the way to execve. The workload gets only its spec's
// environment.
var Env = []string{"GOMAXPROCS=1", "GOGC=off", "GOTRACEBACK=none"}

// ErrNotFound is a command found nowhere in the container's PATH.
var ErrNotFound = errors.New("executable file not found")

// Spec is the message on SpecFD.
type Spec struct {
	// Rootfs is set for a container's first process.
	Rootfs *rootfs.Spec `json:"rootfs,omitempty"`
	// Exec is set for a process started in a running container: it joins
	// the mount namespace of the container's main process (the pidfd on
	// MountFD), whose root is the container's.
	Exec bool `json:"exec,omitempty"`
	// Join is set for an init started ahead of its container (by a spare
	// shim): it enters the pod's namespaces itself, on the thread that
	// will execve, whose namespaces the workload inherits.
	Join *Join `json:"join,omitempty"`
	// Cgroups are files the init writes 0 to, from the thread that
	// execs, to enter the container's cgroups itself before anything else
	// (v1 tasks files: cgroups.Manager.ThreadFiles); empty when the
	// caller placed it. A thread moving itself does not wait for the
	// kernel's global lock that moving a process by PID takes.
	Cgroups []string        `json:"cgroups,omitempty"`
	Process record.Process  `json:"process"`
	Seccomp *filter.Program `json:"seccomp,omitempty"`
	// Console gives the process a terminal: a pty of the container's
	// devpts becomes its controlling terminal and its stdio, and the
	// master goes to the caller on ConsoleFD.
	Console *Console `json:"console,omitempty"`
}

// Console is the terminal an init makes.
type Console struct {
	// Size is the initial window size (zero: unknown until a resize).
	Size runtime.TermSize `json:"size"`
	// DevConsole binds the terminal at /dev/console too, as runc does for
	// a container's main process (not for exec).
	DevConsole bool `json:"devConsole,omitempty"`
}

// Join names namespaces of the pod's pause to enter: Types is a set of
// CLONE_NEW* flags.
type Join struct {
	Pause procid.ID `json:"pause"`
	Types int       `json:"types"`
}

// nsFiles maps the namespace flags to their names in /proc/PID/ns, in the
// order they are entered (the user namespace, never used, would be first).
var nsFiles = []struct {
	flag int
	name string
}{
	{unix.CLONE_NEWIPC, "ipc"}, {unix.CLONE_NEWUTS, "uts"}, {unix.CLONE_NEWNET, "net"}, {unix.CLONE_NEWPID, "pid"},
}

// Enter moves the calling thread into the pause's namespaces. They are
// opened through /proc (a pre-started init is in a PID namespace of its
// own, where the pause has no PID to open a pidfd with) and the pause's
// identity is checked after opening, so they cannot be another process's.
func (j *Join) Enter() error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	var types []int
	for _, ns := range nsFiles {
		if j.Types&ns.flag == 0 {
			continue
		}
		p := fmt.Sprintf("/proc/%d/ns/%s", j.Pause.PID, ns.name)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("join the pod's namespaces: %w", &os.PathError{Op: "open", Path: p, Err: err})
		}
		fds, types = append(fds, fd), append(types, ns.flag)
	}
	if !j.Pause.Alive() {
		return fmt.Errorf("join the pod's namespaces: pause %d: %w", j.Pause.PID, procid.ErrGone)
	}
	for i, fd := range fds {
		if err := unix.Setns(fd, types[i]); err != nil {
			return fmt.Errorf("join the pod's namespaces: %w", os.NewSyscallError("setns", err))
		}
	}
	return nil
}

// Main is the init's entry point; it returns only on failure, with the
// exit status.
func Main() int {
	// Capabilities, seccomp and the mount namespace of exec are per
	// thread: everything from here to execve happens on this one.
	goruntime.LockOSThread()
	// Until the workload's execve (which resets it) nothing may ptrace
	// this process or open its /proc files, /proc/self/exe included.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	// The pipes are used blocking, so the Go runtime never starts its
	// poller: no descriptor of its own that the init, closing everything
	// it did not get, would pull from under it.
	unix.SetNonblock(SpecFD, false)
	unix.SetNonblock(ErrFD, false)
	errPipe := os.NewFile(ErrFD, "init-errors")
	var spec Spec
	specPipe := os.NewFile(SpecFD, "init-spec")
	err := json.NewDecoder(specPipe).Decode(&spec)
	specPipe.Close()
	if err == nil {
		err = run(&spec)
	} else {
		err = fmt.Errorf("read spec: %w", err)
	}
	fmt.Fprintf(errPipe, "%v", err)
	var ce *commandError
	if errors.As(err, &ce) {
		return ce.code
	}
	return 125 // podman's status for a failure of the runtime itself
}

// commandError is the command itself failing to run: the init exits with
// a shell's status for it (127 not found, 126 not executable), which exec
// reports as the command's own, as a shell or crun would.
type commandError struct {
	code int
	err  error
}

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// run prepares the process and execs; it only returns on failure.
func run(spec *Spec) error {
	p := &spec.Process
	if err := enterCgroups(spec.Cgroups); err != nil {
		return err
	}
	if spec.Join != nil {
		if err := spec.Join.Enter(); err != nil {
			return err
		}
	}
	// Nothing the init holds may reach the workload: every descriptor
	// above 2 closes at execve from here on (the error pipe's EOF then
	// tells the caller the execve worked).
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return os.NewSyscallError("close_range", err)
	}
	switch {
	case spec.Rootfs != nil:
		// The mount namespace is made now, on the thread that will
		// execve, not when the init was started: a spare init waits from
		// before the pod existed, and a copy made then would lack every
		// mount made since (the pod's files, its tmpfs volumes) on a host
		// whose mounts do not propagate.
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("new mount namespace: %w", os.NewSyscallError("unshare(CLONE_NEWNS)", err))
		}
		if err := rootfs.Setup(spec.Rootfs); err != nil {
			return err
		}
	case spec.Exec:
		err := joinMountNS(MountFD)
		unix.Close(MountFD)
		if err != nil {
			return err
		}
	default:
		return errors.New("spec has neither a rootfs nor a container to enter")
	}
	if spec.Console != nil {
		// In the container's mount namespace by now: the pty is of the
		// container's own devpts.
		if err := setupConsole(spec.Console, int(p.User.UID)); err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
	}
	// Nor may a path the workload chose (a workingDir of /proc/self/fd/N)
	// lead through one of them: what the set-up left open is closed before
	// the working directory is entered.
	if err := CloseLeftovers(ErrFD); err != nil {
		return err
	}
	if err := enterWorkingDir(p, spec.Rootfs); err != nil {
		return err
	}
	if p.OOMScoreAdj != nil {
		// Clamped where the kernel refuses to lower it; the shim records
		// what the workload got.
		oomscore.Set(0, *p.OOMScoreAdj)
	}
	argv0, err := lookPath(p.Args[0], p.Env)
	if err != nil {
		return &commandError{code: 127, err: err}
	}
	return dropAndExec(p, spec.Seccomp, argv0)
}

// setupConsole makes a pty the process's controlling terminal and stdio
// and sends its master on ConsoleFD. The master is close-on-exec and
// closed here once sent: the workload only ever holds the slave.
func setupConsole(c *Console, uid int) error {
	master, slave, err := console.Open(uid)
	if err != nil {
		return err
	}
	defer unix.Close(master)
	defer unix.Close(slave) // the original; 0, 1 and 2 are its copies
	if err := console.SetSize(master, c.Size); err != nil {
		return err
	}
	if c.DevConsole {
		if err := console.BindDevConsole(slave); err != nil {
			return err
		}
	}
	if err := console.MakeControlling(slave); err != nil {
		return err
	}
	err = console.Send(ConsoleFD, master)
	unix.Close(ConsoleFD)
	return err
}

// enterCgroups moves the calling thread, the one that execs, into the
// cgroups whose tasks files are given.
func enterCgroups(files []string) error {
	for _, f := range files {
		fd, err := unix.Open(f, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			_, err = unix.Write(fd, []byte("0"))
			unix.Close(fd)
		}
		if err != nil {
			return fmt.Errorf("join cgroup: %w", &os.PathError{Op: "write", Path: f, Err: err})
		}
	}
	return nil
}

// CloseLeftovers closes every descriptor above 2 but those in keep and the
// Go runtime's own (its poller's: anonymous inodes, which no path can go
// through): directories, files, pipes and sockets that a library kept
// (such as a procfs handle) or that the process inherited from the agent's
// own parent without close-on-exec.
func CloseLeftovers(keep ...int) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list descriptors: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 || slices.Contains(keep, fd) {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT == 0 {
			continue // closed by now (the listing's own), or anonymous
		}
		unix.Close(fd)
	}
	return nil
}

// enterWorkingDir changes to the process's working directory and checks
// that it is inside the container's root: getcwd names a directory outside
// the root (reached through a descriptor, a bind or a race) as unreachable.
func enterWorkingDir(p *record.Process, rfs *rootfs.Spec) error {
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if rfs != nil {
		// Like runc: a missing working directory is created (as root, before
		// privileges drop), then owned by the user when it is new.
		if _, err := os.Stat(cwd); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(cwd, 0o755); err != nil && !rfs.ReadOnly {
				return fmt.Errorf("workingDir %s: %w", cwd, err)
			}
			_ = os.Chown(cwd, int(p.User.UID), int(p.User.GID))
		}
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("workingDir: %w", &os.PathError{Op: "chdir", Path: cwd, Err: err})
	}
	wd, err := unix.Getwd()
	if err != nil || !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("workingDir %s: the directory is outside the container's root", cwd)
	}
	return nil
}

// dropAndExec applies the user, capabilities, no_new_privs and seccomp,
// then execs.
func dropAndExec(p *record.Process, prog *filter.Program, argv0 string) error {
	// Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
	// while we still have it. With no_new_privs, load it last, so the
	// filter does not have to allow the set-up calls.
	if prog != nil && !p.NoNewPrivs {
		if err := filter.Load(prog); err != nil {
			return err
		}
	}
	capset, err := caps.Prepare(p.Caps)
	if err != nil {
		return err
	}
	if err := capset.DropBounding(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_KEEPCAPS)", err)
	}
	groups := make([]int, len(p.User.Groups))
	for i, g := range p.User.Groups {
		groups[i] = int(g)
	}
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", groups, err)
	}
	if err := unix.Setgid(int(p.User.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", p.User.GID, err)
	}
	if err := unix.Setuid(int(p.User.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", p.User.UID, err)
	}
	if err := capset.ApplyThread(); err != nil {
		return err
	}
	if p.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return os.NewSyscallError("prctl(PR_SET_NO_NEW_PRIVS)", err)
		}
		if prog != nil {
			if err := filter.Load(prog); err != nil {
				return err
			}
		}
	}
	if err := unix.Exec(argv0, p.Args, p.Env); err != nil {
		code := 126
		if errors.Is(err, unix.ENOENT) {
			code = 127
		}
		return &commandError{code: code, err: fmt.Errorf("exec %s: %w", p.Args[0], err)}
	}
	return nil
}

// lookPath finds the executable with the container's PATH, as the
// container would.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := DefaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: %w in PATH %s", name, ErrNotFound, path)
}

// joinMountNS moves the calling thread, which execs next, into the mount
// namespace of the process behind pidfd; its root and working directory
// become that namespace's root. A chroot through /proc/<pid>/root would
// leave the process in the host's mount namespace, where a process with
// CAP_SYS_ADMIN gets the host's root back by joining its own namespace.
// The thread first stops sharing its filesystem attributes with the rest
// of the Go process: setns into a mount namespace refuses otherwise.
func joinMountNS(pidfd int) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("join the container's mount namespace: %w", os.NewSyscallError("unshare(CLONE_FS)", err))
	}
	if err := unix.Setns(pidfd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join the container's mount namespace: %w", os.NewSyscallError("setns", err))
	}
	return nil
}
