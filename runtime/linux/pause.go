package linux

import (
	"fmt"
	"os"
	"os/signal"
	goruntime "runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/reexec"
)

// PauseName is argv[0] of the pause process: the agent binary re-executed
// to hold a sandbox's namespaces.
const PauseName = "pelagos-pause"

// Pause arguments: pelagos-pause <run root> <sandbox id>. They carry no
// meaning for the pause itself; they let GC recognise its own pauses in
// /proc, by run root, even when a crash lost the record.
func init() { reexec.Register(PauseName, pauseMain) }

// pauseEnv keeps the pause small: one P and an aggressive GC; it allocates
// almost nothing after start.
var pauseEnv = []string{"GOMAXPROCS=1", "GOGC=20", "GOTRACEBACK=none"}

// pauseMain is the pause process. It is born inside the sandbox's
// namespaces, hostname already set (see startPause), and only waits: for
// SIGTERM to exit, and, as PID 1 of a shared PID namespace, for orphans to
// reap.
func pauseMain() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGCHLD)
	signal.Ignore(unix.SIGHUP, unix.SIGPIPE, unix.SIGUSR1, unix.SIGUSR2)
	pid1 := os.Getpid() == 1
	if pid1 {
		reapAll() // children orphaned before the handler was installed
	}
	for s := range sigs {
		switch s {
		case unix.SIGCHLD:
			if pid1 {
				reapAll()
			}
		default:
			os.Exit(0)
		}
	}
}

func reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// pauseSpec says which namespaces a new pause gets.
type pauseSpec struct {
	runRoot  string
	id       string
	hostname string
	ns       runtime.NamespaceOptions
}

// threadFlags are the namespaces made on the agent's thread before the
// fork; the pause inherits them. The UTS namespace follows the network, as
// in Kubernetes: a hostNetwork pod has the node's hostname.
func (s pauseSpec) threadFlags() int {
	f := 0
	if s.ns.Network == runtime.NamespacePod {
		f |= unix.CLONE_NEWNET | unix.CLONE_NEWUTS
	}
	if s.ns.IPC == runtime.NamespacePod {
		f |= unix.CLONE_NEWIPC
	}
	return f
}

// startPause makes the sandbox's namespaces and starts the pause inside
// them. The namespaces are made, and the hostname set, on a locked OS
// thread of the agent, and the pause is forked from that thread, so it is
// born inside them: once exec has succeeded (os.StartProcess reports exec
// failures through its close-on-exec pipe) the pause holds the namespaces.
// That is the readiness confirmation, and it does not wait for the Go
// runtime of the re-executed binary to initialise, which costs tens of
// milliseconds for a large binary. With a shared PID namespace the pause
// is cloned into a new one and is its PID 1.
//
// The thread is never unlocked: Go ends it with its goroutine instead of
// reusing a thread that sits in a pod's namespaces. The agent reaps the
// pause if it dies while the agent lives; after the agent exits it is
// reparented, never killed with it (Setsid).
func startPause(s pauseSpec) (procid.ID, error) {
	type result struct {
		p   procid.ID
		err error
	}
	done := make(chan result, 1)
	var run func()
	run = func() {
		goruntime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread: Go cannot end it, so it would stay in the
			// pod's namespaces for good. Hop to another thread.
			goruntime.UnlockOSThread()
			go run()
			return
		}
		p, err := forkPause(s)
		done <- result{p, err}
	}
	go run()
	res := <-done
	if res.err != nil {
		return procid.ID{}, fmt.Errorf("start pause of sandbox %s: %w", s.id, res.err)
	}
	return res.p, nil
}

// forkPause runs on a locked thread that it moves into new namespaces.
func forkPause(s pauseSpec) (procid.ID, error) {
	flags := s.threadFlags()
	if flags != 0 {
		if err := unix.Unshare(flags); err != nil {
			return procid.ID{}, os.NewSyscallError("unshare", err)
		}
	}
	if flags&unix.CLONE_NEWUTS != 0 {
		if err := unix.Sethostname([]byte(s.hostname)); err != nil {
			return procid.ID{}, fmt.Errorf("set hostname %q: %w", s.hostname, os.NewSyscallError("sethostname", err))
		}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return procid.ID{}, err
	}
	defer devnull.Close()
	var clone uintptr
	if s.ns.PID == runtime.NamespacePod {
		clone = unix.CLONE_NEWPID
	}
	proc, err := os.StartProcess(reexec.Self, []string{PauseName, s.runRoot, s.id}, &os.ProcAttr{
		Dir:   "/",
		Env:   pauseEnv,
		Files: []*os.File{devnull, devnull, devnull},
		Sys:   &syscall.SysProcAttr{Cloneflags: clone, Setsid: true},
	})
	if err != nil {
		return procid.ID{}, err
	}
	go proc.Wait() // reap it should it die while we run; never block on it
	id, err := procid.Of(proc.Pid)
	if err != nil {
		proc.Kill()
		return procid.ID{}, err
	}
	return id, nil
}
