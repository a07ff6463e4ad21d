package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/reexec"
)

// Shim process names. The agent starts ShimName, which only starts
// ShimDaemonName and exits, so the daemon is reparented away from the agent:
// killing or upgrading the agent leaves it (and its container) running.
// Both take <run root> <container id> as arguments, so a GC can recognise
// its own shims in /proc even when a record is lost.
const (
	ShimName       = "pelagos-shim"
	ShimDaemonName = "pelagos-shimd"
)

// shimReadyFD is where the shim reports the start: a shimReady JSON object,
// then EOF.
const shimReadyFD = 3

// A spare shim daemon is started ahead of need with spareArg as its only
// argument and reads "<run root>\x00<container id>" from shimControlFD;
// the write end closing without that means the agent went away.
const (
	shimControlFD = 4
	spareArg      = "spare"
)

func init() {
	reexec.Register(ShimName, shimLauncherMain)
	reexec.Register(ShimDaemonName, shimMain)
}

// shimEnv keeps each shim small: it copies two pipes and waits.
var shimEnv = []string{"GOMAXPROCS=1", "GOGC=20", "GOMEMLIMIT=4MiB", "GOTRACEBACK=none"}

// shimReady is the shim's report to the agent.
type shimReady struct {
	Error string `json:"error,omitempty"`
	PID   int    `json:"pid,omitempty"`
}

// shimLauncherMain starts the shim daemon with the same arguments and
// descriptors and exits at once.
func shimLauncherMain() {
	args := os.Args[1:]
	if len(args) != 2 && !(len(args) == 1 && args[0] == spareArg) {
		os.Exit(2)
	}
	ready := os.NewFile(shimReadyFD, "ready")
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		os.Exit(1)
	}
	files := []*os.File{devnull, devnull, devnull, ready}
	if len(args) == 1 {
		files = append(files, os.NewFile(shimControlFD, "control"))
	}
	_, err = os.StartProcess(reexec.Self, append([]string{ShimDaemonName}, args...), &os.ProcAttr{
		Dir:   "/",
		Env:   shimEnv,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		json.NewEncoder(ready).Encode(shimReady{Error: "start shim daemon: " + err.Error()})
		os.Exit(1)
	}
	os.Exit(0)
}

// shimMain supervises one container: it starts the init in the sandbox's
// namespaces and the container's cgroup, reports the start, logs the
// output, waits for the exit and records it.
func shimMain() {
	args := os.Args[1:]
	var pre *initProc
	if len(args) == 1 && args[0] == spareArg {
		// A spare: start the init ahead too (in fresh mount and PID
		// namespaces; it joins the pod's others itself), then wait for the
		// agent to hand over a container, or to go away (EOF).
		pre, _ = preStartInit()
		ctl := os.NewFile(shimControlFD, "control")
		b, err := io.ReadAll(ctl)
		ctl.Close()
		runRoot, id, ok := strings.Cut(string(b), "\x00")
		if err != nil || !ok {
			pre.discard()
			os.Exit(0)
		}
		args = []string{runRoot, id}
	}
	if len(args) != 2 {
		os.Exit(2)
	}
	ready := os.NewFile(shimReadyFD, "ready")
	dir := filepath.Join(args[0], "containers", args[1])
	rec, err := readContainerRecord(dir)
	if err != nil {
		pre.discard()
		json.NewEncoder(ready).Encode(shimReady{Error: err.Error()})
		os.Exit(1)
	}
	code := runShim(rec, ready, pre)
	os.Exit(code)
}

// preStartInit starts an init for a container not known yet: stdio pipes
// made now, fresh mount and PID namespaces, waiting for its spec.
func preStartInit() (*initProc, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	ip, err := spawnInit(nil, unix.CLONE_NEWNS|unix.CLONE_NEWPID, []*os.File{devnull, outW, errW})
	devnull.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	ip.stdout, ip.stderr = outR, errR
	return ip, nil
}

// reportFailure reports a start failure to the agent.
func reportFailure(ready *os.File, err error) int {
	json.NewEncoder(ready).Encode(shimReady{Error: err.Error()})
	ready.Close()
	return 1
}

func runShim(rec *containerRecord, ready *os.File, pre *initProc) int {
	self := procID{PID: os.Getpid()}
	self.Start, _ = procStart(self.PID)

	cg, err := cgroups.New(rec.CgroupParent)
	if err != nil {
		pre.discard()
		return reportFailure(ready, err)
	}
	logw, err := crilog.NewWriter(rec.LogPath, crilog.Options{MaxSize: rec.LogMaxSize, MaxFiles: rec.LogMaxFiles, FollowPath: rec.LogFollow})
	if err != nil {
		pre.discard()
		return reportFailure(ready, err)
	}
	spec := &initSpec{Rootfs: &rec.Rootfs, Process: rec.Process}
	ip := pre
	if ip != nil && rec.cloneFlags() == unix.CLONE_NEWNS|unix.CLONE_NEWPID {
		// The pre-started init has the right mount and PID namespaces;
		// it enters the pod's UTS, network and IPC namespaces itself,
		// on the thread that will execve.
		spec.Join = rec.nsJoin()
	} else {
		pre.discard()
		if ip, err = newInit(rec.nsJoin(), rec.cloneFlags()); err != nil {
			closeLogs(logw)
			return reportFailure(ready, err)
		}
	}
	outR, errR := ip.stdout, ip.stderr
	go logw.Copy(crilog.Stdout, outR)
	go logw.Copy(crilog.Stderr, errR)
	proc := ip.proc
	if failure := ip.configure(spec, cg, rec.CgroupRel); failure != nil {
		proc.Kill()
		proc.Wait()
		killCgroup(cg, rec.CgroupRel)
		closeLogs(logw, outR, errR)
		return reportFailure(ready, failure)
	}
	startedAt := time.Now().UTC()
	pstart, _ := procStart(proc.Pid)
	st := &containerStateRecord{Shim: self, Init: procID{PID: proc.Pid, Start: pstart}, StartedAt: startedAt}
	if err := writeJSONAtomic(filepath.Join(rec.Dir, stateFile), st); err != nil {
		proc.Kill()
		proc.Wait()
		killCgroup(cg, rec.CgroupRel)
		closeLogs(logw, outR, errR)
		return reportFailure(ready, err)
	}
	json.NewEncoder(ready).Encode(shimReady{PID: proc.Pid})
	ready.Close()

	ps, werr := proc.Wait()
	finishedAt := time.Now().UTC()
	// The container is its init: what it leaves behind (in a shared PID
	// namespace nothing else would kill it) goes with it.
	killCgroup(cg, rec.CgroupRel)
	closeLogs(logw, outR, errR)

	ex := &exitRecord{ContainerID: rec.ID, SandboxID: rec.SandboxID, Pod: rec.Pod, StartedAt: startedAt, FinishedAt: finishedAt, ExitCode: -1}
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
	if err := writeJSONAtomic(exitPath(rec.RunRoot, rec.ID), ex); err != nil {
		return 1
	}
	return 0
}

// initProc is a started init waiting for its spec.
type initProc struct {
	proc           *os.Process
	specW, errR    *os.File
	stdout, stderr *os.File // read ends of its output, when the shim made them
}

// newInit starts an init with fresh output pipes.
func newInit(join []nsJoin, cloneFlags uintptr) (*initProc, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	ip, err := spawnInit(join, cloneFlags, []*os.File{devnull, outW, errW})
	devnull.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	ip.stdout, ip.stderr = outR, errR
	return ip, nil
}

// discard ends an init that will not be used.
func (ip *initProc) discard() {
	if ip == nil {
		return
	}
	ip.proc.Kill()
	ip.proc.Wait()
	for _, f := range []*os.File{ip.specW, ip.errR, ip.stdout, ip.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// spawnInit starts the init on a thread that has joined the given
// namespaces. The thread is never unlocked: it dies with its goroutine, so
// no other goroutine ever runs in the sandbox's namespaces by accident.
func spawnInit(join []nsJoin, cloneFlags uintptr, stdio []*os.File) (*initProc, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer specR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		specW.Close()
		return nil, err
	}
	defer errW.Close()
	type started struct {
		proc *os.Process
		err  error
	}
	ch := make(chan started, 1)
	go func() {
		goruntime.LockOSThread()
		// Deliberately no UnlockOSThread: see above.
		for _, j := range join {
			if err := j.enter(); err != nil {
				ch <- started{err: err}
				return
			}
		}
		files := append(append([]*os.File{}, stdio...), specR, errW)
		p, err := os.StartProcess(reexec.Self, []string{InitName}, &os.ProcAttr{
			Dir:   "/",
			Env:   initEnv,
			Files: files,
			Sys:   &syscall.SysProcAttr{Cloneflags: cloneFlags},
		})
		ch <- started{proc: p, err: err}
	}()
	s := <-ch
	if s.err != nil {
		specW.Close()
		errR.Close()
		return nil, fmt.Errorf("start container init: %w", s.err)
	}
	return &initProc{proc: s.proc, specW: specW, errR: errR}, nil
}

// configure puts the init in the cgroup, sends its spec and waits for the
// execve (EOF on the error pipe) or the failure it reports.
func (ip *initProc) configure(spec *initSpec, cg *cgroups.Manager, cgRel string) error {
	defer ip.errR.Close()
	defer ip.specW.Close()
	if err := cg.Join(cgRel, ip.proc.Pid); err != nil {
		return fmt.Errorf("join cgroup: %w", err)
	}
	if err := json.NewEncoder(ip.specW).Encode(spec); err != nil {
		return fmt.Errorf("send spec to container init: %w", err)
	}
	ip.specW.Close()
	msg, _ := io.ReadAll(ip.errR)
	if len(msg) > 0 {
		return fmt.Errorf("container init: %s", msg)
	}
	return nil
}

// startInit starts an init with the given stdio and configures it; used by
// exec, whose output goes to the caller.
func startInit(spec *initSpec, join []nsJoin, cloneFlags uintptr, cg *cgroups.Manager, cgRel string, stdio []*os.File) (*os.Process, error) {
	ip, err := spawnInit(join, cloneFlags, stdio)
	if err != nil {
		return nil, err
	}
	if err := ip.configure(spec, cg, cgRel); err != nil {
		ip.proc.Kill()
		return ip.proc, err
	}
	return ip.proc, nil
}

// nsJoin is a namespace a thread enters before starting the init.
type nsJoin struct {
	Path string
	Type int
}

func (j nsJoin) enter() error {
	fd, err := unix.Open(j.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open namespace", Path: j.Path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, j.Type); err != nil {
		return &os.PathError{Op: "setns", Path: j.Path, Err: err}
	}
	return nil
}

// killCgroup SIGKILLs every process of the cgroup until none is left (a
// fork racing with the kill is caught by the next round), bounded.
func killCgroup(cg *cgroups.Manager, rel string) error {
	for range 100 {
		pids, err := cg.Procs(rel)
		if err != nil || len(pids) == 0 {
			return err
		}
		for _, p := range pids {
			unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("cgroup %s: processes left after 100 SIGKILL rounds", cg.Path(rel))
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

func readLimited(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// writeJSONAtomic writes v to path through a temporary file and a rename,
// so a reader sees the old record or the new one, never a torn one. There
// is no fsync: these records live under the run root, which a reboot wipes
// anyway, and a crashed process cannot lose a completed write.
func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := path + ".tmp." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// errShimStart marks a start that the shim or the init reported as failed.
var errShimStart = errors.New("container start failed")
