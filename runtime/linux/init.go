package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/caps"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/reexec"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/rootfs"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/seccomp"
)

// InitName is argv[0] of the container init: the binary re-executed inside
// the container's new mount (and PID) namespace to build the rootfs, drop
// privileges and execve the workload. The same entry, given a chroot PID
// instead of a rootfs, starts exec'd processes in a running container.
const InitName = "pelagos-init"

// File descriptors of the init: the spec arrives on 3 (the shim writes it
// only after placing the init in its cgroups), and 4 carries a failure
// message back; it is close-on-exec, so EOF without a message means the
// workload's execve succeeded.
const (
	initSpecFD = 3
	initErrFD  = 4
)

func init() { reexec.Register(InitName, initMain) }

// processSpec is what the init applies before execve.
type processSpec struct {
	Args       []string         `json:"args"`
	Env        []string         `json:"env"`
	Cwd        string           `json:"cwd"`
	User       identity         `json:"user"`
	Caps       []string         `json:"caps"`
	NoNewPrivs bool             `json:"noNewPrivs"`
	Seccomp    *seccomp.Program `json:"seccomp,omitempty"`
}

// initSpec is the message on initSpecFD.
type initSpec struct {
	// Rootfs is set for a container's first process.
	Rootfs *rootfs.Spec `json:"rootfs,omitempty"`
	// ChrootPID is set for exec: the container's init PID (host view),
	// whose root the process enters through /proc/<pid>/root.
	ChrootPID int `json:"chrootPID,omitempty"`
	// Join lists namespaces the init enters itself, on the thread that
	// will execve (a pre-started init joins the pod's UTS, network and IPC
	// namespaces this way; the workload inherits that thread's).
	Join    []nsJoin    `json:"join,omitempty"`
	Process processSpec `json:"process"`
}

// initEnv keeps the helper's own Go runtime small; the workload gets only
// the environment in its spec.
var initEnv = []string{"GOMAXPROCS=1", "GOGC=off", "GOTRACEBACK=none"}

func initMain() {
	// Capabilities and seccomp are per thread: everything from here to
	// execve happens on this one, which is never unlocked.
	goruntime.LockOSThread()
	errPipe := os.NewFile(initErrFD, "init-errors")
	fail := func(step string, err error) {
		fmt.Fprintf(errPipe, "%s: %v", step, err)
		code := 125 // podman's status for a failure of the runtime itself
		var ce *commandError
		if errors.As(err, &ce) {
			code = ce.code
		}
		os.Exit(code)
	}
	var spec initSpec
	specPipe := os.NewFile(initSpecFD, "init-spec")
	if err := json.NewDecoder(specPipe).Decode(&spec); err != nil {
		fail("read spec", err)
	}
	specPipe.Close()
	if err := runInit(&spec); err != nil {
		fail("start", err)
	}
}

// runInit prepares the process and execs; it only returns on failure.
func runInit(spec *initSpec) error {
	p := &spec.Process
	for _, j := range spec.Join {
		if err := j.enter(); err != nil {
			return err
		}
	}
	switch {
	case spec.Rootfs != nil:
		if err := rootfs.Setup(spec.Rootfs); err != nil {
			return err
		}
	case spec.ChrootPID > 0:
		root := "/proc/" + strconv.Itoa(spec.ChrootPID) + "/root"
		if err := unix.Chroot(root); err != nil {
			return fmt.Errorf("chroot into container: %w", &os.PathError{Op: "chroot", Path: root, Err: err})
		}
	default:
		return errors.New("spec has neither a rootfs nor a container to enter")
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if spec.Rootfs != nil {
		// Like runc: a missing working directory is created (as root, before
		// privileges drop), then owned by the user when it is new.
		if _, err := os.Stat(cwd); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(cwd, 0o755); err != nil && !spec.Rootfs.ReadOnly {
				return fmt.Errorf("workingDir %s: %w", cwd, err)
			}
			_ = os.Chown(cwd, int(p.User.UID), int(p.User.GID))
		}
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("workingDir: %w", &os.PathError{Op: "chdir", Path: cwd, Err: err})
	}
	argv0, err := lookPath(p.Args[0], p.Env)
	if err != nil {
		return &commandError{code: 127, err: err}
	}
	// Every descriptor but 0, 1, 2 closes at execve, including the error
	// pipe: its EOF tells the shim the execve worked.
	if err := cloexecFrom(3); err != nil {
		return err
	}
	// Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
	// while we still have it. With no_new_privs, load it last, so the
	// filter does not have to allow the set-up calls.
	if p.Seccomp != nil && !p.NoNewPrivs {
		if err := seccomp.Load(p.Seccomp); err != nil {
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
		if p.Seccomp != nil {
			if err := seccomp.Load(p.Seccomp); err != nil {
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

// commandError is the command itself failing to run: the init exits with
// a shell's status for it (127 not found, 126 not executable), which exec
// reports as the command's own, as a shell or crun would.
type commandError struct {
	code int
	err  error
}

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// lookPath finds the executable with the container's PATH, as the
// container would.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := defaultPath
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
	return "", fmt.Errorf("exec %q: %w in PATH %s", name, exec.ErrNotFound, path)
}

// cloexecFrom marks every open descriptor >= lowest close-on-exec.
func cloexecFrom(lowest int) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		// After pivot_root /proc is the container's: same view of us.
		return fmt.Errorf("list fds: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < lowest {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}
