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
	if len(args) == 1 && args[0] == spareArg {
		// A spare: wait for the agent to hand over a container, or for
		// the agent to go (EOF), in which case there is nothing to do.
		ctl := os.NewFile(shimControlFD, "control")
		b, err := io.ReadAll(ctl)
		ctl.Close()
		runRoot, id, ok := strings.Cut(string(b), "\x00")
		if err != nil || !ok {
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
		json.NewEncoder(ready).Encode(shimReady{Error: err.Error()})
		os.Exit(1)
	}
	code := runShim(rec, ready)
	os.Exit(code)
}

// reportFailure reports a start failure to the agent.
func reportFailure(ready *os.File, err error) int {
	json.NewEncoder(ready).Encode(shimReady{Error: err.Error()})
	ready.Close()
	return 1
}

func runShim(rec *containerRecord, ready *os.File) int {
	self := procID{PID: os.Getpid()}
	self.Start, _ = procStart(self.PID)

	cg, err := cgroups.New(rec.CgroupParent)
	if err != nil {
		return reportFailure(ready, err)
	}
	logw, err := crilog.NewWriter(rec.LogPath, crilog.Options{MaxSize: rec.LogMaxSize, MaxFiles: rec.LogMaxFiles})
	if err != nil {
		return reportFailure(ready, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return reportFailure(ready, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return reportFailure(ready, err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return reportFailure(ready, err)
	}
	spec := &initSpec{Rootfs: &rec.Rootfs, Process: rec.Process}
	proc, failure := startInit(spec, rec.nsJoin(), rec.cloneFlags(), cg, rec.CgroupRel, []*os.File{devnull, outW, errW})
	outW.Close()
	errW.Close()
	devnull.Close()
	go logw.Copy(crilog.Stdout, outR)
	go logw.Copy(crilog.Stderr, errR)
	if failure != nil {
		if proc != nil {
			proc.Wait()
		}
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
	if err := writeJSONAtomic(exitPath(rec.RunRoot, rec.ID), ex); err != nil {
		return 1
	}
	return 0
}

// startInit starts the init on a thread that has joined the sandbox's
// namespaces, puts it in the cgroup, then sends it its spec and waits for
// the execve. The thread is never unlocked: it dies with its goroutine, so
// no other goroutine ever runs in the sandbox's namespaces by accident.
func startInit(spec *initSpec, join []nsJoin, cloneFlags uintptr, cg *cgroups.Manager, cgRel string, stdio []*os.File) (*os.Process, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer specR.Close()
	defer specW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer errR.Close()
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
	errW.Close()
	if s.err != nil {
		return nil, fmt.Errorf("start container init: %w", s.err)
	}
	if err := cg.Join(cgRel, s.proc.Pid); err != nil {
		s.proc.Kill()
		return s.proc, fmt.Errorf("join cgroup: %w", err)
	}
	if err := json.NewEncoder(specW).Encode(spec); err != nil {
		s.proc.Kill()
		return s.proc, fmt.Errorf("send spec to container init: %w", err)
	}
	specW.Close()
	msg, _ := io.ReadAll(errR)
	if len(msg) > 0 {
		return s.proc, fmt.Errorf("container init: %s", msg)
	}
	return s.proc, nil
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
