package prober

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Update is a change of a container's probe state: the event the reconciler
// consumes. Liveness and startup failures carry Restart: the container must be
// killed (with GracePeriod when the probe sets one) and restarted per the
// pod's restart policy, with Message recorded as the reason.
type Update struct {
	Namespace     string
	Pod           string
	ContainerName string
	ContainerID   string
	Kind          Kind
	Result        Result
	Previous      Result
	Message       string
	Restart       bool
	GracePeriod   *time.Duration
	Time          time.Time
}

func (u Update) String() string {
	return fmt.Sprintf("%s probe of %s/%s container %s: %s -> %s: %s",
		u.Kind, u.Namespace, u.Pod, u.ContainerName, u.Previous, u.Result, u.Message)
}

// Status is what the reconciler needs for a container's status: Started
// (the startup probe passed, or there is none) and Ready (the readiness probe
// passes, or there is none and the container has started).
type Status struct {
	Started bool
	Ready   bool
}

// Options configure a Manager.
type Options struct {
	// Exec runs exec probes; nil makes exec probes fail to register.
	Exec Execer
	// OnUpdate receives every state change. It is called from the probe
	// goroutines and must not block for long (queue the pod key and return).
	OnUpdate func(Update)
	// Registerer, when set, receives the probe counter
	// (pelagos_prober_probe_total).
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Manager runs the probe workers of every running container.
type Manager struct {
	opts    Options
	total   *prometheus.CounterVec
	mu      sync.Mutex
	byID    map[string]*container
	closing bool
}

type container struct {
	// emit orders a container's updates: a state change and its OnUpdate
	// happen together, so a startup success is always reported before the
	// readiness or liveness results it unlocks.
	emit    sync.Mutex
	target  Target
	started bool
	ready   bool
	hasRP   bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	workers []*worker
}

// NewManager returns a manager with no containers.
func NewManager(opts Options) (*Manager, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Manager{opts: opts, byID: map[string]*container{}}
	m.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pelagos_prober_probe_total",
		Help: "Probe attempts by probe type and result, per container.",
	}, []string{"probe_type", "result", "namespace", "pod", "container"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(m.total); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register prober metrics: %w", err)
			}
			m.total = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return m, nil
}

// Probes are a container's three optional probes.
type Probes struct {
	Liveness, Readiness, Startup *Probe
}

// Add starts probing a running container. Adding a container ID that is
// already probed is a no-op, so the reconciler may call it on every pass.
func (m *Manager) Add(t Target, p Probes) error {
	if t.ContainerID == "" {
		return fmt.Errorf("probe %s/%s container %s: no container ID", t.Namespace, t.Pod, t.ContainerName)
	}
	type kp struct {
		kind Kind
		p    *Probe
	}
	var specs []kp
	for _, k := range []kp{{Startup, p.Startup}, {Liveness, p.Liveness}, {Readiness, p.Readiness}} {
		if k.p == nil {
			continue
		}
		np := k.p.Normalize(k.kind)
		if err := np.validate(); err != nil {
			return fmt.Errorf("%s probe of %s/%s container %s: %w", k.kind, t.Namespace, t.Pod, t.ContainerName, err)
		}
		if np.Exec != nil && m.opts.Exec == nil {
			return fmt.Errorf("%s probe of %s/%s container %s: exec probes need an exec runtime", k.kind, t.Namespace, t.Pod, t.ContainerName)
		}
		specs = append(specs, kp{k.kind, &np})
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return errors.New("prober: manager closed")
	}
	if _, ok := m.byID[t.ContainerID]; ok {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &container{target: t, started: p.Startup == nil, hasRP: p.Readiness != nil, cancel: cancel}
	c.ready = !c.hasRP && c.started
	for _, s := range specs {
		w := &worker{m: m, c: c, kind: s.kind, probe: s.p, kick: make(chan struct{}, 1)}
		// Initial results as in the kubelet: liveness assumes success,
		// readiness failure, startup unknown.
		switch s.kind {
		case Liveness:
			w.last = Success
		case Readiness:
			w.last = Failure
		case Startup:
			w.last = Unknown
		}
		w.state = w.last
		c.workers = append(c.workers, w)
	}
	m.byID[t.ContainerID] = c
	for _, w := range c.workers {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			w.run(ctx)
		}()
	}
	return nil
}

// Remove stops the container's probes and waits for running attempts to
// end. Removing an unknown container is a no-op.
func (m *Manager) Remove(containerID string) {
	m.mu.Lock()
	c, ok := m.byID[containerID]
	delete(m.byID, containerID)
	m.mu.Unlock()
	if !ok {
		return
	}
	c.cancel()
	c.wg.Wait()
	m.total.DeletePartialMatch(prometheus.Labels{
		"namespace": c.target.Namespace, "pod": c.target.Pod, "container": c.target.ContainerName,
	})
}

// Suspend stops judging a container that is being stopped on purpose: its
// workers keep their state but probe no more, so a probe failing while the
// container shuts down (preStop, SIGTERM) cannot kill it a second time with
// a fresh grace period. It does not wait; Remove still ends the workers.
func (m *Manager) Suspend(containerID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.byID[containerID]; ok {
		for _, w := range c.workers {
			w.onHold = true
		}
	}
}

// Close stops every worker.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closing = true
	ids := make([]string, 0, len(m.byID))
	for id := range m.byID {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	for _, id := range ids {
		m.Remove(id)
	}
}

// Status reports the container's Started and Ready state; ok is false for a
// container the manager does not probe.
func (m *Manager) Status(containerID string) (st Status, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.byID[containerID]
	if !ok {
		return Status{}, false
	}
	return Status{Started: c.started, Ready: c.ready}, true
}

// Containers lists the probed container IDs (for the reconciler's cleanup of
// containers that went away).
func (m *Manager) Containers() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.byID))
	for id := range m.byID {
		ids = append(ids, id)
	}
	return ids
}

type worker struct {
	m     *Manager
	c     *container
	kind  Kind
	probe *Probe
	kick  chan struct{}

	// Guarded by m.mu: the thresholded state, the last raw result and how
	// many attempts in a row returned it.
	state  Result
	last   Result
	streak int
	onHold bool
}

func (w *worker) run(ctx context.Context) {
	// initialDelay counts from the container's start, not from when the
	// agent noticed it (an adopted container may be long past it).
	if d := w.c.target.StartedAt.Add(w.probe.InitialDelay).Sub(w.m.opts.Now()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	tick := time.NewTicker(w.probe.Period)
	defer tick.Stop()
	for {
		if !w.once(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.kick:
		}
	}
}

// once performs one attempt and applies the thresholds; it returns false
// when this worker has nothing more to do.
func (w *worker) once(ctx context.Context) bool {
	m := w.m
	m.mu.Lock()
	started, hold := w.c.started, w.onHold
	m.mu.Unlock()
	switch {
	case hold:
		// After a liveness or startup failure the container is being
		// killed: probing it further would only race the restart.
		return true
	case w.kind == Startup && started:
		return false
	case w.kind != Startup && !started:
		return true
	}

	res, msg, err := Run(ctx, m.opts.Exec, &w.c.target, w.probe)
	if err != nil || ctx.Err() != nil {
		return ctx.Err() == nil
	}
	t := &w.c.target
	m.total.WithLabelValues(string(w.kind), res.String(), t.Namespace, t.Pod, t.ContainerName).Inc()

	w.c.emit.Lock()
	defer w.c.emit.Unlock()
	m.mu.Lock()
	if res == w.last {
		w.streak++
	} else {
		w.last, w.streak = res, 1
	}
	if (res == Failure && w.streak < w.probe.FailureThreshold) || (res == Success && w.streak < w.probe.SuccessThreshold) {
		m.mu.Unlock()
		return true
	}
	prev := w.state
	w.state = res
	restart := false
	var kickOthers bool
	switch w.kind {
	case Startup:
		if res == Success {
			w.c.started = true
			w.c.ready = !w.c.hasRP
			kickOthers = true
		} else {
			restart = true
		}
	case Readiness:
		w.c.ready = res == Success
	case Liveness:
		restart = res == Failure
	}
	if restart {
		w.onHold = true
		w.streak = 0
	}
	changed := prev != res || restart
	var others []*worker
	if kickOthers {
		others = w.c.workers
	}
	m.mu.Unlock()

	if changed && m.opts.OnUpdate != nil {
		u := Update{
			Namespace: t.Namespace, Pod: t.Pod, ContainerName: t.ContainerName, ContainerID: t.ContainerID,
			Kind: w.kind, Result: res, Previous: prev, Message: msg, Restart: restart, Time: m.opts.Now(),
		}
		if restart {
			u.GracePeriod = w.probe.TerminationGracePeriod
			if u.Message == "" {
				u.Message = fmt.Sprintf("%s probe failed %d times", w.kind, w.probe.FailureThreshold)
			}
		}
		m.opts.OnUpdate(u)
	}
	for _, o := range others {
		select {
		case o.kick <- struct{}{}:
		default:
		}
	}
	return !(w.kind == Startup && res == Success)
}
