// Package shim is the per-container supervisor: a helper process, detached
// from the agent, that starts the container's init in the pod's namespaces
// and the container's cgroup, reports the start, copies the workload's
// output into its log, waits for the exit and records it. Killing or
// upgrading the agent leaves it, and its container, running.
package shim

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/attach"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/console"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nsinit"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/oomscore"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
)

// Process names. The agent starts DaemonName cloned with CLONE_PARENT, so
// the daemon is never its child; where the kernel refuses that, it starts
// LauncherName, which only starts the daemon and exits, so the daemon is
// reparented. Both take <run root> <container id> as arguments, which is
// how a GC recognises its own shims in /proc even when a record is lost.
const (
	DaemonName   = "pelagos-shimd"
	LauncherName = "pelagos-shim"
)

// ReadyFD is where the shim reports the start: a Ready JSON object, then
// EOF.
const ReadyFD = 3

// A spare shim daemon is started ahead of need with <run root> and
// SpareSlot as its arguments and reads the container ID from ControlFD;
// the write end closing without one means the agent went away. Once it has
// its container, the shim writes the ID over SpareSlot in its own argv, so
// /proc/PID/cmdline names the container like any shim's.
const (
	ControlFD = 4
	SpareArg  = "spare"
)

// SpareSlot is the argument that marks a spare and reserves room for a
// container ID (at most 64 bytes).
var SpareSlot = SpareArg + strings.Repeat(" ", 64-len(SpareArg))

// IsSpare reports whether a shim argument marks a spare still waiting.
func IsSpare(arg string) bool { return strings.TrimRight(arg, " ") == SpareArg }

// Env keeps the shim's Go runtime small and quiet on the way to the
// workload's start: one P and no collection; once the start is reported
// the shim turns the collector on with a small target (see collect).
var Env = []string{"GOMAXPROCS=1", "GOGC=off", "GOTRACEBACK=none"}

// Ready is the shim's report to the agent: the start record, or why the
// start failed.
type Ready struct {
	Error string        `json:"error,omitempty"`
	State *record.State `json:"state,omitempty"`
}

// LauncherMain starts the shim daemon with the same arguments and
// descriptors and exits at once.
func LauncherMain(args []string) int {
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	nsinit.CloseLeftovers(ReadyFD, ControlFD)
	if len(args) != 3 {
		return 2
	}
	ready := os.NewFile(ReadyFD, "ready")
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 1
	}
	files := []*os.File{devnull, devnull, devnull, ready}
	if IsSpare(args[2]) {
		files = append(files, os.NewFile(ControlFD, "control"))
	}
	proc, err := os.StartProcess("/proc/self/exe", append([]string{DaemonName}, args[1:]...), &os.ProcAttr{
		Dir:   "/",
		Env:   Env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		json.NewEncoder(ready).Encode(Ready{Error: "start shim daemon: " + err.Error()})
		return 1
	}
	// The agent learns the daemon's PID from the launcher's stdout.
	fmt.Fprintln(os.Stdout, proc.Pid)
	return 0
}

// DaemonMain supervises one container: args are the shim's argv.
func DaemonMain(args []string) int {
	// Nothing may ptrace the shim or open its /proc files: it runs as
	// root with every capability, from a sealed copy of the helper.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	// Only what the agent handed over stays open, not what the agent
	// itself inherited.
	nsinit.CloseLeftovers(ReadyFD, ControlFD)
	// Under memory pressure the shim goes just before the agent, as
	// containerd's shims do, and well after the workloads.
	if cur, err := oomscore.Get(0); err == nil {
		oomscore.Set(0, cur+1)
	}
	if len(args) != 3 {
		return 2
	}
	runRoot, id := args[1], args[2]
	var pre *nsinit.Proc
	if IsSpare(id) {
		// A spare: start the init ahead too (in a fresh PID namespace;
		// it joins the pod's namespaces and makes its mount namespace
		// itself once it has its spec), then wait for the agent to hand
		// over a container, or to go away (EOF).
		pre, _ = newInit("/proc/self/exe", nil, unix.CLONE_NEWPID, false, false)
		ctl := os.NewFile(ControlFD, "control")
		b, err := io.ReadAll(io.LimitReader(ctl, 128))
		ctl.Close()
		id = string(b)
		if err != nil || id == "" || len(id) > 64 {
			pre.Discard()
			return 0
		}
		setArg(args, 2, id)
	}
	ready := os.NewFile(ReadyFD, "ready")
	rec, err := record.ReadContainer(filepath.Join(record.ContainersDir(runRoot), id))
	if err != nil {
		pre.Discard()
		return reportFailure(ready, fmt.Errorf("container %s: %w", id, err))
	}
	return run(rec, ready, pre)
}

// setArg overwrites argv[i] in place, in the memory /proc/PID/cmdline is
// read from (os.Args strings point there), padding with NULs; v must fit.
func setArg(args []string, i int, v string) {
	if len(v) > len(args[i]) {
		return
	}
	b := unsafe.Slice(unsafe.StringData(args[i]), len(args[i]))
	n := copy(b, v)
	clear(b[n:])
}

func reportFailure(ready *os.File, err error) int {
	json.NewEncoder(ready).Encode(Ready{Error: err.Error()})
	ready.Close()
	return 1
}

// newInit starts an init with fresh stdio: output pipes, and a pipe for
// its input when it takes some (else /dev/null); with a terminal, the init
// makes its stdio itself and only gets the socket it sends the master on.
func newInit(exe string, enter func() error, cloneFlags uintptr, tty, stdin bool) (*nsinit.Proc, error) {
	var theirs []*os.File // the init's ends, closed here once it has them
	defer func() { closeAll(theirs) }()
	p := &nsinit.Proc{} // our ends, moved to the started init's Proc
	fail := func(err error) (*nsinit.Proc, error) {
		closeAll(nil, p.Stdout, p.Stderr, p.Stdin, p.Console)
		return nil, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	theirs = append(theirs, devnull)
	stdio := []*os.File{devnull, devnull, devnull}
	var extra []*os.File
	if tty {
		sock, child, err := console.Pair()
		if err != nil {
			return fail(err)
		}
		p.Console, theirs = sock, append(theirs, child)
		extra = []*os.File{nil, child} // nothing on MountFD
	} else {
		var outW, errW, inR *os.File
		if p.Stdout, outW, err = os.Pipe(); err != nil {
			return fail(err)
		}
		theirs = append(theirs, outW)
		if p.Stderr, errW, err = os.Pipe(); err != nil {
			return fail(err)
		}
		theirs = append(theirs, errW)
		stdio[1], stdio[2] = outW, errW
		if stdin {
			if inR, p.Stdin, err = os.Pipe(); err != nil {
				return fail(err)
			}
			theirs = append(theirs, inR)
			stdio[0] = inR
		}
	}
	ip, err := nsinit.Spawn(exe, enter, cloneFlags, stdio, extra...)
	if err != nil {
		return fail(err)
	}
	ip.Stdout, ip.Stderr, ip.Stdin, ip.Console = p.Stdout, p.Stderr, p.Stdin, p.Console
	return ip, nil
}

// podNamespaces are the pause's namespaces the container joins.
func podNamespaces(rec *record.Container) int {
	f := unix.CLONE_NEWUTS
	if rec.Namespaces.Network == runtime.NamespacePod {
		f |= unix.CLONE_NEWNET
	}
	if rec.Namespaces.IPC == runtime.NamespacePod {
		f |= unix.CLONE_NEWIPC
	}
	if rec.PodPIDNamespace() {
		f |= unix.CLONE_NEWPID
	}
	return f
}

func run(rec *record.Container, ready *os.File, pre *nsinit.Proc) int {
	self, _ := procid.Self()
	cg, err := cgroups.New(rec.CgroupParent)
	if err != nil {
		pre.Discard()
		return reportFailure(ready, err)
	}
	prog, err := rec.Seccomp()
	if err != nil {
		pre.Discard()
		return reportFailure(ready, err)
	}
	logw, err := crilog.NewWriter(rec.LogPath, crilog.Options{MaxSize: rec.LogMaxSize, MaxFiles: rec.LogMaxFiles, FollowPath: rec.LogFollow})
	if err != nil {
		pre.Discard()
		return reportFailure(ready, err)
	}
	// The attach socket exists before the start is reported, so a client
	// can attach as soon as StartContainer returns.
	att, err := newStdio(rec.Dir, &rec.Config)
	if err != nil {
		pre.Discard()
		closeLogs(logw)
		return reportFailure(ready, fmt.Errorf("attach socket: %w", err))
	}
	tty, stdin := rec.Config.TTY, rec.Config.Stdin
	spec := &nsinit.Spec{Rootfs: &rec.Rootfs, Process: rec.Process, Seccomp: prog}
	if tty {
		spec.Console = &nsinit.Console{DevConsole: true}
	}
	join := &nsinit.Join{Pause: rec.Pause, Types: podNamespaces(rec)}
	// Where it can (v1), the init enters its cgroups itself, first thing
	// on its exec thread: no wait for the kernel's global lock.
	if spec.Cgroups, err = cg.ThreadFiles(rec.CgroupRel); err != nil {
		pre.Discard()
		closeLogs(logw)
		return reportFailure(ready, err)
	}
	ip := pre
	if ip != nil && rec.OwnPIDNamespace() && !tty && !stdin {
		// The pre-started init has the right PID namespace and stdio; it
		// enters the pod's other namespaces itself, on the thread that
		// will execve.
		spec.Join = join
	} else {
		pre.Discard()
		var clone uintptr
		if rec.OwnPIDNamespace() {
			clone = unix.CLONE_NEWPID
		}
		if ip, err = newInit("/proc/self/exe", join.Enter, clone, tty, stdin); err != nil {
			att.finish()
			closeLogs(logw)
			return reportFailure(ready, err)
		}
	}
	// outs are what the shim reads the workload's output from: the pipes,
	// or the terminal's master once the init has sent it.
	var outs []*os.File
	if !tty {
		outs = []*os.File{ip.Stdout, ip.Stderr}
		go logw.Copy(crilog.Stdout, io.TeeReader(ip.Stdout, att.output(attach.TypeStdout)))
		go logw.Copy(crilog.Stderr, io.TeeReader(ip.Stderr, att.output(attach.TypeStderr)))
	}
	proc := ip.Process
	fail := func(err error) int {
		proc.Kill()
		proc.Wait()
		KillCgroup(cg, rec.CgroupRel)
		att.finish()
		closeLogs(logw, outs...)
		closeAll(outs, ip.Stdin, ip.Console)
		return reportFailure(ready, err)
	}
	if err := ip.Configure(spec, func(pid int) error {
		if len(spec.Cgroups) > 0 {
			return nil // the init joins them itself
		}
		if err := cg.Join(rec.CgroupRel, pid); err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	if tty {
		// Sent before the execve that Configure saw succeed. The shim
		// holds the master for the container's life, so the workload never
		// meets a hangup or an end of input while nobody is attached; its
		// output (all of it, as with kubelet) is logged as stdout.
		master, err := console.Receive(ip.Console)
		if err != nil {
			return fail(fmt.Errorf("terminal: %w", err))
		}
		ip.Console.Close()
		ip.Console = nil
		outs = []*os.File{master}
		go logw.Copy(crilog.Stdout, io.TeeReader(master, att.output(attach.TypeStdout)))
		var in *os.File
		if stdin {
			in = master
		}
		att.setInput(in, master)
	} else {
		att.setInput(ip.Stdin, nil)
	}
	// The agent may ask for a stop from now on (enforceStops); the
	// handler is in place before the start record says so.
	stops := make(chan os.Signal, 1)
	signal.Notify(stops, unix.SIGUSR1)
	st := &record.State{Version: record.Version, Shim: self, StartedAt: time.Now().UTC(), Stops: true}
	st.Init, _ = procid.Of(proc.Pid)
	st.OOMScoreAdj, _ = oomscore.Get(proc.Pid)
	if want := rec.Process.OOMScoreAdj; want != nil && *want != st.OOMScoreAdj {
		st.OOMScoreNote = fmt.Sprintf("oom_score_adj %d asked for; the kernel kept %d (lowering needs CAP_SYS_RESOURCE)", *want, st.OOMScoreAdj)
	}
	if err := record.WriteJSON(filepath.Join(rec.Dir, record.StateFile), st); err != nil {
		return fail(err)
	}
	json.NewEncoder(ready).Encode(Ready{State: st})
	ready.Close()
	collect()
	go enforceStops(rec, proc, cg, stops)

	ps, werr := proc.Wait()
	finishedAt := time.Now().UTC()
	// The container is its init: what it leaves behind (in a shared PID
	// namespace nothing else would kill it) goes with it.
	KillCgroup(cg, rec.CgroupRel)
	closeLogs(logw, outs...)
	closeAll(outs)
	// Attach clients are told once the record is written, so that the
	// container reads as exited when their session ends.
	defer att.finish()
	ex := &record.Exit{Version: record.Version, ContainerID: rec.ID, SandboxID: rec.SandboxID, Pod: rec.Pod, StartedAt: st.StartedAt, FinishedAt: finishedAt, ExitCode: -1}
	if werr == nil {
		ws := ps.Sys().(syscall.WaitStatus)
		switch {
		case ws.Exited():
			ex.ExitCode = ws.ExitStatus()
		case ws.Signaled():
			ex.ExitCode = 128 + int(ws.Signal())
			ex.Signal = unix.SignalName(ws.Signal())
		}
	}
	ex.Reason = runtime.ReasonError
	if ex.ExitCode == 0 {
		ex.Reason = runtime.ReasonCompleted
	}
	if oom, err := cg.OOMKilled(rec.CgroupRel); err == nil && oom {
		ex.Reason = runtime.ReasonOOMKilled
	}
	if rec.TerminationLog != "" {
		if b, err := readLimited(rec.TerminationLog, 4096); err == nil {
			ex.Message = string(b)
		}
	}
	if ex.Message == "" && ex.ExitCode != 0 && rec.MessageFromLogs {
		// The log writer is closed above, so the tail is complete.
		if b, err := crilog.Tail(rec.LogPath, 80, 2048); err == nil {
			ex.Message = string(b)
		}
	}
	if err := record.WriteJSON(record.ExitPath(rec.RunRoot, rec.ID), ex); err != nil {
		return 1
	}
	return 0
}

// enforceStops carries out the stops the agent asks for (record.Stop):
// each new request's signal to the workload, then at the earliest
// deadline given SIGKILL to every process of the container's cgroup. The
// agent may go away meanwhile (it is stopping, or upgraded): the grace
// period is kept all the same, and the exit is recorded as usual once the
// workload is gone.
func enforceStops(rec *record.Container, proc *os.Process, cg *cgroups.Manager, wake <-chan os.Signal) {
	var last record.Stop
	var deadline time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-wake:
			req, err := rec.ReadStop()
			if err != nil || req == nil || (req.Signal == last.Signal && req.Deadline.Equal(last.Deadline)) {
				continue
			}
			last = *req
			if req.Signal != 0 {
				proc.Signal(unix.Signal(req.Signal))
			}
			if deadline.IsZero() || req.Deadline.Before(deadline) {
				deadline = req.Deadline
				timer.Reset(max(time.Until(deadline), 0))
			}
		case <-timer.C:
			KillCgroup(cg, rec.CgroupRel)
		}
	}
}

// collect turns the collector on once the workload runs: the start left
// some garbage (decoded records, the spec), which one collection returns to
// the kernel; from then on a small growth target keeps the shim's heap
// below a megabyte while it copies logs, and a soft limit bounds what a log
// flood (the writer queues up to 4 MiB) can make it hold.
func collect() {
	debug.SetGCPercent(20)
	debug.SetMemoryLimit(16 << 20)
	debug.FreeOSMemory()
}

// KillTimeout bounds KillCgroup.
const KillTimeout = 10 * time.Second

// KillCgroup SIGKILLs every process of the cgroup until none is left (a
// fork racing with the kill is caught by the next round). A killed process
// leaves the cgroup only once it has exited, which on a loaded machine can
// take a while: the rounds are bounded by time, not by count.
func KillCgroup(cg *cgroups.Manager, rel string) error {
	for deadline := time.Now().Add(KillTimeout); ; {
		pids, err := cg.Procs(rel)
		if err != nil || len(pids) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v left after %s of SIGKILL", cg.Path(rel), pids, KillTimeout)
		}
		for _, p := range pids {
			unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// closeLogs waits a little for the pipes to reach EOF (a daemonised child
// may hold them open), then forces it and flushes the log.
func closeLogs(w *crilog.Writer, pipes ...*os.File) {
	done := make(chan struct{})
	go func() { w.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		for _, p := range pipes {
			p.Close()
		}
		<-done
	}
}

func closeAll(fs []*os.File, more ...*os.File) {
	for _, f := range append(fs, more...) {
		if f != nil {
			f.Close()
		}
	}
}

func readLimited(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}
