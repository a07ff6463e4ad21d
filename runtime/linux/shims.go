package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/helperbin"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/shim"
)

// ShimDaemonName is argv[0] of a shim daemon, by which benchmarks and GC
// find them.
const ShimDaemonName = shim.DaemonName

// errShimStart marks a start that the shim or the init reported as failed.
var errShimStart = errors.New("container start failed")

// Spare pool sizing: at least one spare while enabled, at most maxSpares
// (the reconciler's 16 workers start at most 16 containers at once); the
// pool grows with the starts announced by sandboxes being created and when
// a start finds it dry, and shrinks back to one after spareIdle without
// demand.
const (
	maxSpares = 16
	spareIdle = 10 * time.Second
)

// shimPool keeps spare shim daemons started ahead of need. Each spare has
// already started its container init in fresh mount and PID namespaces, so
// a container start through a spare starts no process at all: the shim
// reads the record, the init joins the pod's namespaces and execs.
type shimPool struct {
	mu       sync.Mutex
	enabled  bool
	runRoot  string
	ready    []*spareShim
	starting int
	// expected counts the container starts announced by sandboxes being
	// created.
	expected int
	// grown is how many spares a past batch needed; it decays to 1 when
	// the pool has been idle for spareIdle.
	grown int
	idle  *time.Timer
	warn  func(error)
	// start makes a spare (startSpare; tests replace it).
	start func(runRoot string) (*spareShim, error)
}

// spareShim is a shim daemon waiting for its container.
type spareShim struct {
	ctl   *os.File // write end of its control pipe
	ready *os.File // read end of its ready pipe
	pid   int      // the daemon, or 0 when a launcher started it
}

func (s *spareShim) close() {
	s.ctl.Close()
	s.ready.Close()
}

// EnableSpareShim makes the runtime keep spare shim daemons started ahead
// of need (a long-running agent wants this; a one-shot CLI does not).
// Spares exit when this process does: their control pipes reach EOF.
func (r *Runtime) EnableSpareShim() {
	p := &r.ctr.spares
	p.mu.Lock()
	p.enabled, p.runRoot, p.grown = true, r.cfg.RunRoot, 1
	p.warn = func(err error) { r.log.Warn().Err(err).Msg("start spare shim") }
	if p.start == nil {
		p.start = startSpare
	}
	p.mu.Unlock()
	p.fill()
}

// DisableSpareShim stops keeping spares; the current ones exit.
func (r *Runtime) DisableSpareShim() {
	p := &r.ctr.spares
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enabled = false
	for _, sp := range p.ready {
		sp.close()
	}
	p.ready = nil
	if p.idle != nil {
		p.idle.Stop()
	}
}

// spareReady reports whether a spare is waiting, and its PID (0 when it
// was started through the launcher), for tests and benchmarks.
func (r *Runtime) spareReady() (bool, int) {
	p := &r.ctr.spares
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ready) == 0 {
		return false, 0
	}
	return true, p.ready[0].pid
}

// target is how many spares to keep; p.mu is held.
func (p *shimPool) target() int {
	return min(max(p.expected, p.grown, 1), maxSpares)
}

// expect announces n container starts to come (negative: the sandbox is
// made), so the pool is filled while the sandboxes are being made.
func (p *shimPool) expect(n int) {
	p.mu.Lock()
	p.expected = max(p.expected+n, 0)
	enabled := p.enabled
	p.mu.Unlock()
	if enabled && n > 0 {
		p.fill()
	}
}

// fill starts spares until the pool holds its target, in the background.
func (p *shimPool) fill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled {
		return
	}
	for n := p.target() - len(p.ready) - p.starting; n > 0; n-- {
		p.starting++
		go p.startOne()
	}
	if p.idle == nil {
		p.idle = time.AfterFunc(spareIdle, p.shrink)
	} else {
		p.idle.Reset(spareIdle)
	}
}

func (p *shimPool) startOne() {
	sp, err := p.start(p.runRoot)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting--
	if err != nil {
		p.warn(err)
		return
	}
	if !p.enabled || len(p.ready) >= p.target() {
		sp.close()
		return
	}
	p.ready = append(p.ready, sp)
}

// shrink lets the pool go back to one spare after an idle period.
func (p *shimPool) shrink() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.expected > 0 {
		p.idle.Reset(spareIdle)
		return
	}
	p.grown = 1
	for len(p.ready) > p.target() {
		p.ready[len(p.ready)-1].close()
		p.ready = p.ready[:len(p.ready)-1]
	}
}

// take returns a spare, or nil when the pool is dry (then it grows for the
// next batch). The caller calls fill once its start is reported, so that
// the refill does not compete with the start.
func (p *shimPool) take() *spareShim {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled {
		return nil
	}
	if len(p.ready) == 0 {
		p.grown = min(max(p.grown*2, p.expected), maxSpares)
		return nil
	}
	sp := p.ready[0]
	p.ready = p.ready[1:]
	return sp
}

func startSpare(runRoot string) (*spareShim, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		readyR.Close()
		readyW.Close()
		return nil, err
	}
	pid, err := spawnShim([]string{runRoot, shim.SpareSlot}, readyW, ctlR)
	readyW.Close()
	ctlR.Close()
	if err != nil {
		readyR.Close()
		ctlW.Close()
		return nil, err
	}
	return &spareShim{ctl: ctlW, ready: readyR, pid: pid}, nil
}

// spawnShim starts the shim daemon (the sealed helper) with args. The
// daemon must not be the agent's child, and whoever becomes its parent
// must reap it when it exits. When the agent's parent is init (systemd
// runs it, or a container's init), the daemon is cloned with CLONE_PARENT:
// a child of init, at the cost of one process start. Otherwise the agent's
// parent may never reap a child it did not start (a test harness, a
// supervisor that waits only for its own child): each exited shim would
// stay a zombie holding a PID. So the launcher starts the daemon and
// exits, and the daemon is reparented to init (or the nearest subreaper),
// which reaps it, as containerd's and conmon's double fork do. The
// launcher is also the way where the kernel refuses CLONE_PARENT (the
// agent is PID 1 of its namespace).
func spawnShim(args []string, ready, ctl *os.File) (int, error) {
	exe, err := helperbin.Path(helperbin.Helper)
	if err != nil {
		return 0, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	files := []*os.File{devnull, devnull, devnull, ready}
	if ctl != nil {
		files = append(files, ctl)
	}
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   shim.Env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_PARENT},
	}
	if parentReaps() {
		proc, err := os.StartProcess(exe, append([]string{shim.DaemonName}, args...), attr)
		if err == nil {
			// Not our child: never waited for here.
			pid := proc.Pid
			return pid, proc.Release()
		}
	}
	// The launcher prints the daemon's PID on its stdout.
	pidR, pidW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer pidR.Close()
	attr.Files = append([]*os.File{devnull, pidW}, files[2:]...)
	attr.Sys = &syscall.SysProcAttr{Setsid: true}
	proc, err := os.StartProcess(exe, append([]string{shim.LauncherName}, args...), attr)
	pidW.Close()
	if err != nil {
		return 0, err
	}
	// The launcher exits as soon as the daemon runs; reaping it here keeps
	// the daemon out of our process tree.
	if _, err := proc.Wait(); err != nil {
		return 0, err
	}
	out, _ := io.ReadAll(io.LimitReader(pidR, 32))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return pid, nil // 0: it failed, and says so on the ready pipe
}

// parentReaps reports whether the agent's parent is init of its PID
// namespace, which reaps every child it is given. Read at each spawn: an
// agent whose parent died has been reparented since.
func parentReaps() bool { return os.Getppid() == 1 }

// startShim has a shim daemon start the container and waits for its
// report: the workload's start record, or the step that failed.
func (r *Runtime) startShim(rec *record.Container) (*record.State, error) {
	var rd *os.File
	if sp := r.ctr.spares.take(); sp != nil {
		_, err := sp.ctl.WriteString(rec.ID)
		sp.ctl.Close()
		if err == nil {
			rd = sp.ready
		} else {
			sp.ready.Close() // the spare is gone: start one the usual way
		}
	}
	if rd == nil {
		var wr *os.File
		var err error
		if rd, wr, err = os.Pipe(); err != nil {
			return nil, err
		}
		_, err = spawnShim([]string{rec.RunRoot, rec.ID}, wr, nil)
		wr.Close()
		if err != nil {
			rd.Close()
			return nil, fmt.Errorf("start shim: %w", err)
		}
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("start shim: %w: the shim exited without a report", errShimStart)
	}
	var rep shim.Ready
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("%w: %s", errShimStart, rep.Error)
	}
	if rep.State == nil {
		return nil, fmt.Errorf("start shim: %w: the report has no start record", errShimStart)
	}
	return rep.State, nil
}
