package fake

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// StartContainer implements runtime.Runtime. The sandbox must be ready and
// the image present (EnsureImage or AddImage first); a container name and
// attempt may be used once per sandbox.
func (f *Runtime) StartContainer(ctx context.Context, cfg *runtime.ContainerConfig) (*runtime.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cfg == nil || cfg.Name == "" || cfg.SandboxID == "" || cfg.Image == "" {
		f.calls[OpStartContainer]++
		return nil, fmt.Errorf("start container: name, sandbox and image are required: %w", runtime.ErrInvalidConfig)
	}
	if cfg.ID != "" {
		if c, ok := f.containers[cfg.ID]; ok {
			f.calls[OpStartContainer]++
			if c.SandboxID != cfg.SandboxID || c.Name != cfg.Name {
				return nil, fmt.Errorf("start container %s: held by %s/%s: %w", cfg.ID, c.SandboxID, c.Name, runtime.ErrAlreadyExists)
			}
			return cloneContainer(c), nil
		}
	}
	if fl := f.call(OpStartContainer, cfg.Name); fl != nil {
		return nil, fl.Err
	}
	sb, ok := f.sandboxes[cfg.SandboxID]
	if !ok {
		return nil, fmt.Errorf("start container %s: sandbox %s: %w", cfg.Name, cfg.SandboxID, runtime.ErrNotFound)
	}
	if err := validCallerPaths(cfg); err != nil {
		return nil, fmt.Errorf("start container %s: %w", cfg.Name, err)
	}
	if sb.State != runtime.SandboxReady {
		return nil, fmt.Errorf("start container %s: sandbox %s is not ready (%s): %w", cfg.Name, cfg.SandboxID, sb.Reason, runtime.ErrConflict)
	}
	img, ok := f.lookupImage(cfg.Image)
	if !ok {
		return nil, fmt.Errorf("start container %s: image %s: %w", cfg.Name, cfg.Image, runtime.ErrNotFound)
	}
	var mountIDs []string
	for i, m := range cfg.Mounts {
		if m.Image == "" {
			continue
		}
		mi, ok := f.lookupImage(m.Image)
		if !ok {
			return nil, fmt.Errorf("start container %s: mounts[%d]: image %s: %w", cfg.Name, i, m.Image, runtime.ErrNotFound)
		}
		mountIDs = append(mountIDs, mi.ID)
	}
	for _, c := range f.containers {
		if c.SandboxID == cfg.SandboxID && c.Name == cfg.Name && c.Attempt == cfg.Attempt {
			return nil, fmt.Errorf("start container %s attempt %d in sandbox %s: %w", cfg.Name, cfg.Attempt, cfg.SandboxID, runtime.ErrAlreadyExists)
		}
	}
	id := cfg.ID
	if id == "" {
		id = f.newID("ctr")
	}
	now := f.now()
	c := &runtime.Container{
		ID:          id,
		SandboxID:   cfg.SandboxID,
		Pod:         sb.Pod,
		Name:        cfg.Name,
		Attempt:     cfg.Attempt,
		Image:       cfg.Image,
		ImageID:     img.ID,
		State:       runtime.ContainerRunning,
		PID:         20000 + f.seq,
		CreatedAt:   now,
		StartedAt:   now,
		LogPath:     "/fake/logs/" + cfg.SandboxID + "/" + cfg.Name + "/" + fmt.Sprint(cfg.Attempt) + ".log",
		Labels:      maps.Clone(cfg.Labels),
		Annotations: maps.Clone(cfg.Annotations),
	}
	c.MountImageIDs = mountIDs
	if cfg.LogPath != "" {
		c.LogPath = cfg.LogPath
	}
	f.containers[id] = c
	f.resources[id] = cfg.Resources
	f.consoles[id] = newConsole(cfg)
	if f.onStart != nil {
		if exits, code := f.onStart(cfg); exits {
			f.exit(c, code, "")
		}
	}
	return cloneContainer(c), nil
}

// validCallerPaths checks the log path and host-path mounts a caller may
// give, as runtime/linux does (where the host path must also exist).
func validCallerPaths(cfg *runtime.ContainerConfig) error {
	if cfg.LogPath != "" && (!filepath.IsAbs(cfg.LogPath) || filepath.Clean(cfg.LogPath) != cfg.LogPath) {
		return fmt.Errorf("logPath %q: not an absolute, clean path: %w", cfg.LogPath, runtime.ErrInvalidConfig)
	}
	for i, m := range cfg.Mounts {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("mounts[%d]: %w", i, err)
		}
		if m.HostPath != "" && !filepath.IsAbs(m.HostPath) {
			return fmt.Errorf("mounts[%d]: hostPath %q must be absolute: %w", i, m.HostPath, runtime.ErrInvalidConfig)
		}
	}
	return nil
}

// Exit simulates the container's process exiting with code.
func (f *Runtime) Exit(id string, code int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return fmt.Errorf("exit container %s: %w", id, runtime.ErrNotFound)
	}
	if c.State == runtime.ContainerRunning {
		f.exit(c, code, "")
	}
	return nil
}

// OOMKill simulates the kernel's OOM killer ending the container.
func (f *Runtime) OOMKill(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return fmt.Errorf("oom-kill container %s: %w", id, runtime.ErrNotFound)
	}
	if c.State == runtime.ContainerRunning {
		f.exit(c, 137, "SIGKILL")
		c.Reason = runtime.ReasonOOMKilled
	}
	return nil
}

// exit records the end of a running container and notifies watchers. The
// caller holds f.mu.
func (f *Runtime) exit(c *runtime.Container, code int, signal string) {
	c.State = runtime.ContainerExited
	c.ExitCode = code
	c.Signal = signal
	c.PID = 0
	c.FinishedAt = f.now()
	f.endConsole(c.ID)
	c.Reason = runtime.ReasonCompleted
	if code != 0 {
		c.Reason = runtime.ReasonError
	}
	ev := runtime.ExitEvent{ContainerID: c.ID, SandboxID: c.SandboxID, Pod: c.Pod}
	for _, w := range f.watchers {
		// A full channel drops the event: watchers are a latency aid and
		// the reconciler's resync is the safety net, as with the real one.
		select {
		case w <- ev:
		default:
		}
	}
}

// StopContainer implements runtime.Runtime: a running container exits
// with StopExitCode.
func (f *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpStopContainer, id); fl != nil {
		return fl.Err
	}
	c, ok := f.containers[id]
	if !ok {
		return nil // stopping what is gone succeeds, as in runtime/linux
	}
	if c.State == runtime.ContainerRunning || c.State == runtime.ContainerCreated {
		f.exit(c, StopExitCode, "SIGTERM")
	}
	return nil
}

// RemoveContainer implements runtime.Runtime.
func (f *Runtime) RemoveContainer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpRemoveContainer, id); fl != nil {
		return fl.Err
	}
	f.forget(id)
	return nil
}

// forget drops a container and releases its attached clients. The caller
// holds f.mu.
func (f *Runtime) forget(id string) {
	f.endConsole(id)
	delete(f.consoles, id)
	delete(f.sizes, id)
	delete(f.containers, id)
	delete(f.resources, id)
}

// UpdateContainerResources implements runtime.ResourceUpdater: non-zero
// fields replace the running container's limits.
func (f *Runtime) UpdateContainerResources(ctx context.Context, id string, res runtime.Resources) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return fmt.Errorf("update container %s: %w", id, runtime.ErrNotFound)
	}
	if c.State != runtime.ContainerRunning {
		return fmt.Errorf("update container %s: container is %s: %w", id, c.State, runtime.ErrConflict)
	}
	cur := f.resources[id]
	for _, p := range []struct {
		cur *int64
		v   int64
	}{
		{&cur.MemoryLimit, res.MemoryLimit}, {&cur.MemoryRequest, res.MemoryRequest},
		{&cur.CPULimitMilli, res.CPULimitMilli}, {&cur.CPURequestMilli, res.CPURequestMilli},
		{&cur.PidsLimit, res.PidsLimit},
	} {
		if p.v != 0 {
			*p.cur = p.v
		}
	}
	f.resources[id] = cur
	return nil
}

// Resources returns the limits in force for a container, as started or
// last updated.
func (f *Runtime) Resources(id string) (runtime.Resources, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.resources[id]
	return r, ok
}

// GetContainer implements runtime.Runtime.
func (f *Runtime) GetContainer(ctx context.Context, id string) (*runtime.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpGetContainer, id); fl != nil {
		return nil, fl.Err
	}
	f.findCorruption("container", id)
	c, ok := f.containers[id]
	if !ok {
		return nil, fmt.Errorf("get container %s: %w", id, runtime.ErrNotFound)
	}
	f.reads++
	return cloneContainer(c), nil
}

// ListContainers implements runtime.Runtime; the result is ordered by ID.
func (f *Runtime) ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]*runtime.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpListContainers, filter.SandboxID); fl != nil {
		return nil, fl.Err
	}
	f.findCorruption("container", "")
	var out []*runtime.Container
	for _, c := range f.sortedContainers() {
		if filter.SandboxID == "" || c.SandboxID == filter.SandboxID {
			out = append(out, cloneContainer(c))
		}
	}
	f.reads += len(out)
	return out, nil
}

// Exec implements runtime.Runtime for running containers: the OnExec hook
// plays the process. With TTY the hook talks to a terminal: the client's
// keystrokes are echoed, CR reaches the process as NL, ^D on an empty
// line ends its input, its NL leaves as CR LF, and window sizes are
// recorded (TermSize). When ctx ends first, Exec returns its error, as the
// real runtime does after killing the process.
func (f *Runtime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	f.mu.Lock()
	if fl := f.call(OpExec, id); fl != nil {
		f.mu.Unlock()
		return -1, fl.Err
	}
	c, ok := f.containers[id]
	if !ok {
		f.mu.Unlock()
		return -1, fmt.Errorf("exec in container %s: %w", id, runtime.ErrNotFound)
	}
	if c.State != runtime.ContainerRunning {
		f.mu.Unlock()
		return -1, fmt.Errorf("exec in container %s: container is %s: %w", id, c.State, runtime.ErrConflict)
	}
	hook := f.onExec
	f.mu.Unlock()
	if hook == nil {
		return 0, nil
	}
	// Like a process the runtime kills when ctx ends, the hook may not
	// write once Exec has returned.
	var g gate
	opts.Stdout, opts.Stderr = g.wrap(opts.Stdout), g.wrap(opts.Stderr)
	if opts.TTY {
		var done func()
		opts, done = f.withTerminal(id, opts)
		defer done()
	}
	exited := make(chan int, 1)
	go func() { exited <- hook(id, opts) }()
	select {
	case code := <-exited:
		return code, nil
	case <-ctx.Done():
		g.shut()
		return -1, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	}
}

// gate passes writes on until shut, then drops them.
type gate struct {
	mu     sync.Mutex
	closed bool
}

func (g *gate) wrap(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	return writerFunc(func(p []byte) (int, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closed {
			return 0, io.ErrClosedPipe
		}
		return w.Write(p)
	})
}

func (g *gate) shut() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// WatchExits implements runtime.ExitWatcher. Events are buffered; when the
// buffer is full further events are dropped.
func (f *Runtime) WatchExits(ctx context.Context) (<-chan runtime.ExitEvent, error) {
	ch := make(chan runtime.ExitEvent, 256)
	f.mu.Lock()
	f.watchers = append(f.watchers, ch)
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, w := range f.watchers {
			if w == ch {
				f.watchers = append(f.watchers[:i], f.watchers[i+1:]...)
				break
			}
		}
		close(ch)
	}()
	return ch, nil
}

func (f *Runtime) sortedContainers() []*runtime.Container {
	out := make([]*runtime.Container, 0, len(f.containers))
	for _, c := range f.containers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func cloneContainer(c *runtime.Container) *runtime.Container {
	d := *c
	d.Labels = maps.Clone(c.Labels)
	d.Annotations = maps.Clone(c.Annotations)
	d.MountImageIDs = slices.Clone(c.MountImageIDs)
	return &d
}
