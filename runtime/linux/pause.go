package linux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
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
const pauseReadyFD = 3

func init() { reexec.Register(PauseName, pauseMain) }

// pauseEnv keeps the pause small: one P, an aggressive GC and no
// background scavenger delay; it allocates almost nothing after start.
var pauseEnv = []string{"GOMAXPROCS=1", "GOGC=20", "GOMEMLIMIT=4MiB", "GOTRACEBACK=none"}

// pauseMain is the pause process. It is born inside the sandbox's new
// namespaces (clone flags set by the agent), sets the pod hostname, reports
// readiness by writing "ok" to fd 3 and closing it, and then only waits: for
// SIGTERM to exit, and, as PID 1 of a shared PID namespace, for orphans to
// reap.
func pauseMain() {
	ready := os.NewFile(pauseReadyFD, "ready")
	fail := func(format string, args ...any) {
		fmt.Fprintf(ready, format, args...)
		os.Exit(1)
	}
	if h := os.Getenv("PELAGOS_PAUSE_HOSTNAME"); h != "" {
		if err := unix.Sethostname([]byte(h)); err != nil {
			fail("pause: set hostname %q: %v", h, err)
		}
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGCHLD)
	signal.Ignore(unix.SIGHUP, unix.SIGPIPE, unix.SIGUSR1, unix.SIGUSR2)
	if _, err := ready.WriteString("ok"); err != nil {
		os.Exit(1)
	}
	ready.Close()
	pid1 := os.Getpid() == 1
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

func (s pauseSpec) cloneFlags() uintptr {
	var f uintptr = unix.CLONE_NEWUTS
	if s.ns.Network == runtime.NamespacePod {
		f |= unix.CLONE_NEWNET
	}
	if s.ns.IPC == runtime.NamespacePod {
		f |= unix.CLONE_NEWIPC
	}
	if s.ns.PID == runtime.NamespacePod {
		f |= unix.CLONE_NEWPID
	}
	return f
}

// procID identifies a process across PID reuse: PID plus start time in
// clock ticks since boot (/proc/PID/stat field 22).
type procID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// startPause starts the pause in its namespaces and returns once it is
// ready. The agent reaps it if it dies while the agent lives; after the
// agent exits it is reparented, never killed with it (Setsid).
func startPause(s pauseSpec) (procID, error) {
	rd, wr, err := os.Pipe()
	if err != nil {
		return procID{}, fmt.Errorf("start pause of sandbox %s: %w", s.id, err)
	}
	defer rd.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		wr.Close()
		return procID{}, fmt.Errorf("start pause of sandbox %s: %w", s.id, err)
	}
	defer devnull.Close()
	env := append(append([]string{}, pauseEnv...), "PELAGOS_PAUSE_HOSTNAME="+s.hostname)
	proc, err := os.StartProcess(reexec.Self, []string{PauseName, s.runRoot, s.id}, &os.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []*os.File{devnull, devnull, devnull, wr},
		Sys: &syscall.SysProcAttr{
			Cloneflags: s.cloneFlags(),
			Setsid:     true,
		},
	})
	wr.Close()
	if err != nil {
		return procID{}, fmt.Errorf("start pause of sandbox %s: %w", s.id, err)
	}
	go proc.Wait() // reap it should it die while we run; never block on it
	msg, err := io.ReadAll(rd)
	if err != nil || string(msg) != "ok" {
		proc.Kill()
		if len(msg) == 0 {
			msg = []byte("exited before reporting readiness")
		}
		return procID{}, fmt.Errorf("start pause of sandbox %s: %s", s.id, bytes.TrimSpace(msg))
	}
	st, err := procStart(proc.Pid)
	if err != nil {
		proc.Kill()
		return procID{}, fmt.Errorf("start pause of sandbox %s: %w", s.id, err)
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
// SIGKILL. The pidfd pins the process, so a reused PID is never signalled.
// A process that is already gone is not an error.
func (p procID) stop(grace time.Duration) error {
	if p.PID <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop pid %d: %w", p.PID, os.NewSyscallError("pidfd_open", err))
	}
	defer unix.Close(fd)
	// Checked after opening the pidfd: from here on the PID cannot be reused.
	if !p.alive() {
		return nil
	}
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGKILL} {
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return nil
			}
			return fmt.Errorf("stop pid %d: %w", p.PID, os.NewSyscallError("pidfd_send_signal", err))
		}
		wait := grace
		if sig == unix.SIGKILL {
			wait = 5 * time.Second
		}
		if exited, err := waitPidfd(fd, wait); err != nil || exited {
			return err
		}
	}
	return fmt.Errorf("stop pid %d: still running after SIGKILL", p.PID)
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
