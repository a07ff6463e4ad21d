package linux

import (
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/helperbin"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/oomscore"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
)

// PauseName is argv[0] of the pause process (cmd/pelagos-pause, run from
// its sealed copy). Its arguments, <run root> <sandbox id>, carry no
// meaning for the pause itself; they let GC recognise its own pauses in
// /proc, by run root, even when a crash lost the record.
const PauseName = string(helperbin.Pause)

// pauseSteps names what a pause that exited before it was locked down
// failed at, by exit status (cmd/pelagos-pause's exit* constants).
var pauseSteps = map[int]string{
	10: "close the descriptors it inherited", 11: "fchdir to its empty root", 12: "chroot into its empty root",
	13: "close its root descriptor", 14: "drop the capability bounding set", 15: "clear its ambient capabilities",
	16: "capset to no capability", 17: "prctl(PR_SET_DUMPABLE, 0)", 18: "prctl(PR_SET_NO_NEW_PRIVS, 1)",
	19: "block every signal", 20: "install its seccomp filter", 21: "close the readiness pipe",
}

// pauseOOMScoreAdj is the pause's oom_score_adj, kubelet's for pod
// infrastructure: the pause holds the pod together and uses no memory.
const pauseOOMScoreAdj = -998

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

// emptyRoot is the pause's root directory: an empty, read-only tmpfs made
// once per process with the new mount API and attached nowhere, so there
// is no host mount to see or to clean up. Pauses chroot into it through
// the descriptor; it lives as long as one of them does.
var emptyRoot = sync.OnceValues(func() (*os.File, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("pause root: %w", os.NewSyscallError("fsopen", err))
	}
	defer unix.Close(fsfd)
	for k, v := range map[string]string{"mode": "0555", "size": "4k", "nr_inodes": "1"} {
		if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
			return nil, fmt.Errorf("pause root: %s=%s: %w", k, v, os.NewSyscallError("fsconfig", err))
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("pause root: %w", os.NewSyscallError("fsconfig(CREATE)", err))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, fmt.Errorf("pause root: %w", os.NewSyscallError("fsmount", err))
	}
	return os.NewFile(uintptr(mfd), "pause-root"), nil
})

// startPause makes the sandbox's namespaces and starts the pause inside
// them. The namespaces are made, and the hostname set, on a locked OS
// thread of the agent, and the pause is forked from that thread, so it is
// born inside them (ADR 0003). The pause then locks itself down and closes
// its readiness pipe: EOF with the pause alive means it holds the
// namespaces and can do nothing else. With a shared PID namespace the
// pause is cloned into a new one and is its PID 1.
//
// The thread is never unlocked: Go ends it with its goroutine instead of
// reusing a thread that sits in a pod's namespaces. The agent reaps the
// pause if it dies while the agent lives; after the agent exits it is
// reparented, never killed with it (Setsid).
func startPause(s pauseSpec) (procid.ID, error) {
	exe, err := helperbin.Path(helperbin.Pause)
	if err != nil {
		return procid.ID{}, fmt.Errorf("start pause of sandbox %s: %w", s.id, err)
	}
	root, err := emptyRoot()
	if err != nil {
		return procid.ID{}, fmt.Errorf("start pause of sandbox %s: %w", s.id, err)
	}
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
		p, err := forkPause(s, exe, root)
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
func forkPause(s pauseSpec, exe string, root *os.File) (procid.ID, error) {
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
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return procid.ID{}, err
	}
	defer readyR.Close()
	var clone uintptr
	if s.ns.PID == runtime.NamespacePod {
		clone = unix.CLONE_NEWPID
	}
	proc, err := os.StartProcess(exe, []string{PauseName, s.runRoot, s.id}, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{},
		Files: []*os.File{devnull, devnull, devnull, root, readyW},
		Sys:   &syscall.SysProcAttr{Cloneflags: clone, Setsid: true},
	})
	readyW.Close()
	if err != nil {
		return procid.ID{}, err
	}
	// EOF: the pause closed the pipe, its last step, or is exiting.
	io.Copy(io.Discard, readyR)
	if err := awaitLockedDown(proc.Pid); err != nil {
		proc.Kill()
		proc.Wait()
		return procid.ID{}, err
	}
	go proc.Wait() // reap it should it die while we run; never block on it
	id, err := procid.Of(proc.Pid)
	if err != nil {
		proc.Kill()
		return procid.ID{}, err
	}
	oomscore.Set(proc.Pid, pauseOOMScoreAdj)
	return id, nil
}

// awaitLockedDown tells a pause that closed its readiness pipe and now
// sleeps in its wait loop from one that is exiting: a dying process closes
// its descriptors before it can be reaped, so EOF alone does not say
// which. It returns why the pause failed, if it did.
func awaitLockedDown(pid int) error {
	for i := 0; ; i++ {
		var ws unix.WaitStatus
		if wpid, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); wpid == pid {
			return pauseFailure(ws)
		}
		if state, _, err := procid.Stat(pid); err == nil && state == 'S' {
			return nil
		}
		if i == 10000 {
			return fmt.Errorf("the pause neither waits nor exits after closing its readiness pipe")
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// pauseFailure says why a pause exited before it was locked down.
func pauseFailure(ws unix.WaitStatus) error {
	switch {
	case ws.Signaled():
		return fmt.Errorf("the pause was killed by %s while locking itself down", ws.Signal())
	case pauseSteps[ws.ExitStatus()] != "":
		return fmt.Errorf("the pause could not %s (exit status %d)", pauseSteps[ws.ExitStatus()], ws.ExitStatus())
	default:
		return fmt.Errorf("the pause exited with status %d while locking itself down", ws.ExitStatus())
	}
}
