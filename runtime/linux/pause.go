package linux

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
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

// procID identifies a process across PID reuse: PID plus start time in
// clock ticks since boot (/proc/PID/stat field 22).
type procID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
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
func startPause(s pauseSpec) (procID, error) {
	type result struct {
		p   procID
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
		return procID{}, fmt.Errorf("start pause of sandbox %s: %w", s.id, res.err)
	}
	return res.p, nil
}

// forkPause runs on a locked thread that it moves into new namespaces.
func forkPause(s pauseSpec) (procID, error) {
	flags := s.threadFlags()
	if flags != 0 {
		if err := unix.Unshare(flags); err != nil {
			return procID{}, os.NewSyscallError("unshare", err)
		}
	}
	if flags&unix.CLONE_NEWUTS != 0 {
		if err := unix.Sethostname([]byte(s.hostname)); err != nil {
			return procID{}, fmt.Errorf("set hostname %q: %w", s.hostname, os.NewSyscallError("sethostname", err))
		}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return procID{}, err
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
		return procID{}, err
	}
	go proc.Wait() // reap it should it die while we run; never block on it
	st, err := procStart(proc.Pid)
	if err != nil {
		proc.Kill()
		return procID{}, err
	}
	return procID{PID: proc.Pid, Start: st}, nil
}

// procStat returns a process's state letter and start time.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// comm may hold spaces and parentheses: parse after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat start time: %w", pid, err)
	}
	return fields[0][0], start, nil
}

func procStart(pid int) (uint64, error) {
	_, st, err := procStat(pid)
	return st, err
}

// alive reports whether the process is the one recorded and has not exited
// (a zombie has exited, whatever kill(pid, 0) says).
func (p procID) alive() bool {
	if p.PID <= 0 {
		return false
	}
	state, start, err := procStat(p.PID)
	if err != nil || start != p.Start {
		return false
	}
	return state != 'Z' && state != 'X' && state != 'x'
}

// stop ends the process: SIGTERM, up to grace for it to exit, then
// SIGKILL. A process that is already gone is not an error.
func (p procID) stop(grace time.Duration) error {
	return p.terminate()(grace)
}

// terminate sends SIGTERM and returns the wait for the process's end,
// which KILLs it after grace; the caller can do other work between the
// two. The pidfd pins the process, so a reused PID is never signalled.
func (p procID) terminate() (wait func(grace time.Duration) error) {
	gone := func(time.Duration) error { return nil }
	if p.PID <= 0 {
		return gone
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) || (err != nil && !p.alive()) {
		// Gone, or the PID is now another process's thread (ENOENT).
		return gone
	}
	if err != nil {
		return func(time.Duration) error {
			return fmt.Errorf("stop pid %d: %w", p.PID, os.NewSyscallError("pidfd_open", err))
		}
	}
	// Checked after opening the pidfd: from here on the PID cannot be reused.
	if !p.alive() {
		unix.Close(fd)
		return gone
	}
	signal := func(sig unix.Signal) (bool, error) {
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return true, nil
			}
			return false, fmt.Errorf("stop pid %d: %w", p.PID, os.NewSyscallError("pidfd_send_signal", err))
		}
		return false, nil
	}
	// PID 1 of a PID namespace ignores signals it has no handler for, and
	// a pause still initialising its runtime has none yet: it holds
	// nothing worth a graceful exit, so it gets SIGKILL at once.
	first := unix.SIGTERM
	if !catches(p.PID, unix.SIGTERM) {
		first = unix.SIGKILL
	}
	exited, err := signal(first)
	return func(grace time.Duration) error {
		defer unix.Close(fd)
		if exited || err != nil {
			return err
		}
		if exited, err := waitPidfd(fd, grace); err != nil || exited {
			return err
		}
		if exited, err := signal(unix.SIGKILL); err != nil || exited {
			return err
		}
		if exited, err := waitPidfd(fd, 5*time.Second); err != nil || exited {
			return err
		}
		return fmt.Errorf("stop pid %d: still running after SIGKILL", p.PID)
	}
}

// openVerified returns a pidfd of p, checked against its start time after
// opening: the pidfd then names the recorded process for good, whatever
// happens to the PID.
func openVerified(p procID) (*os.File, error) {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", p.PID, os.NewSyscallError("pidfd_open", err))
	}
	if !p.alive() {
		unix.Close(fd)
		return nil, fmt.Errorf("pid %d: not running", p.PID)
	}
	return os.NewFile(uintptr(fd), "pidfd"), nil
}

// catches reports whether the process has a handler for sig (SigCgt in
// /proc/PID/status).
func catches(pid int, sig unix.Signal) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// waitPidfd waits up to d for the process behind fd to exit.
func waitPidfd(fd int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms < 0 {
			ms = 0
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, os.NewSyscallError("poll", err)
		}
		if n > 0 {
			return true, nil
		}
		return false, nil
	}
}
