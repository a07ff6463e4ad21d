package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Config configures a Reconciler.
type Config struct {
	Runtime runtime.Runtime
	Images  runtime.ImageService
	// Workers bounds how many pods are worked on at once (default 16).
	Workers int
	// Resync is the period of the sandbox listing that compares the
	// runtime with what the reconciler last saw (default 10 s); only pods
	// whose sandboxes differ get a pass.
	Resync time.Duration
	// FullResync is the period of the safety net that lists containers
	// too, replaces everything the reconciler saw by the listing and gives
	// every pod a pass (default 1 min, kubelet's sync period; also at
	// start). It runs on the Resync timer, so it is a multiple of Resync.
	FullResync time.Duration
	// MaxPods bounds the pods that own a sandbox at once (default 110,
	// kubelet's; negative: no bound). Pods beyond it wait, Pending with
	// reason OutOfCapacity, in admission order (AdmissionOrder).
	MaxPods int
	// Backoff is the crash-loop schedule, also used after a failed
	// container creation.
	Backoff BackoffPolicy
	// PullBackoff is the schedule of image pull retries, per image and pod
	// (default kubelet's: 10 s doubling to 5 min).
	PullBackoff BackoffPolicy
	StepBackoff StepBackoff
	// NodeName names the node in events about no pod (default "node").
	NodeName string
	// DryRun prints each plan to DryRunOut and changes nothing.
	DryRun    bool
	DryRunOut io.Writer
	Log       zerolog.Logger
	Events    *Events
	Metrics   Metrics
	Hooks     Hooks
	Now       func() time.Time
}

// Metrics receives what the loop measures; reconcile/metrics implements it
// for Prometheus. Every method must be cheap and safe for concurrent use.
type Metrics interface {
	Pass(d time.Duration, err error)
	Action(kind ActionKind, err error, d time.Duration)
	ImagePull(err error)
	ManifestErrors(n int)
	ChangeToRunning(d time.Duration)
	ChangeToGone(d time.Duration)
}

type noMetrics struct{}

func (noMetrics) Pass(time.Duration, error)               {}
func (noMetrics) Action(ActionKind, error, time.Duration) {}
func (noMetrics) ImagePull(error)                         {}
func (noMetrics) ManifestErrors(int)                      {}
func (noMetrics) ChangeToRunning(time.Duration)           {}
func (noMetrics) ChangeToGone(time.Duration)              {}

// FileError is a problem with one manifest file, as the loader reports it.
type FileError struct {
	File    string
	Pod     *runtime.PodKey // when the error belongs to a pod the file names
	Field   string
	Message string
}

// DesiredSet is one complete load of the manifest directory.
type DesiredSet struct {
	Pods   []*DesiredPod
	Errors []FileError
	// Unavailable means the directory could not be read at all: there is no
	// truth, and every pod stays as it is.
	Unavailable error
	// Changed is when the change that led to this load was seen (for the
	// change-to-running latency); zero means now.
	Changed time.Time
	// Notices are what the load has to say that is not an error: fields
	// accepted with no effect on one node, cluster objects skipped. Each
	// becomes one event the first time a load has it.
	Notices []Notice
}

// Notice is a manifest remark that is not an error (DesiredSet.Notices).
type Notice struct {
	Type    string // EventWarning or EventNormal
	Reason  string // NoEffect, Skipped
	Object  ObjectRef
	Message string // with the file, document, field and line
}

// Reconciler drives the runtime towards the desired pods.
type Reconciler struct {
	cfg     Config
	rt      runtime.Runtime
	images  runtime.ImageService
	log     zerolog.Logger
	events  *Events
	metrics Metrics
	q       *queue

	mu         sync.Mutex
	desired    map[runtime.PodKey]*DesiredPod
	loaded     bool
	dirErr     error
	fileErrs   []FileError
	notices    map[Notice]bool
	mem        map[runtime.PodKey]*podMemory
	status     map[runtime.PodKey]PodStatus
	changedAt  map[runtime.PodKey]time.Time
	ready      bool
	passes     uint64
	lastResync time.Time
	lastFull   time.Time
	// obs is what the reconciler last saw of each pod (cache.go); gen
	// counts its changes; listed is set once a complete listing of the
	// runtime's sandboxes has been taken in.
	obs    map[runtime.PodKey]*podObs
	gen    uint64
	listed bool
	// unsure: keys whose last step failed midway (a create that may have
	// left a half-made sandbox); their next observation lists everything.
	unsure map[runtime.PodKey]bool
	// admitted: pods that hold one of MaxPods places (admission.go);
	// waitPos: the place in line of each pod that waits.
	admitted map[runtime.PodKey]bool
	waitPos  map[runtime.PodKey]int
	// started is closed once start-up recovery has been queued.
	started chan struct{}
}

// New returns a Reconciler; Run starts it.
func New(cfg Config) *Reconciler {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 10 * time.Second
	}
	if cfg.FullResync <= 0 {
		cfg.FullResync = DefaultFullResync
	}
	if cfg.MaxPods == 0 {
		cfg.MaxPods = DefaultMaxPods
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "node"
	}
	cfg.Backoff = cfg.Backoff.withDefaults()
	cfg.PullBackoff = cfg.PullBackoff.withDefaults()
	if cfg.StepBackoff.Initial <= 0 {
		cfg.StepBackoff = DefaultStepBackoff
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Events == nil {
		// Events are timed by the reconciler's clock, like its statuses.
		cfg.Events = NewEvents(0, cfg.Log)
		cfg.Events.now = cfg.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.DryRunOut == nil {
		cfg.DryRunOut = io.Discard
	}
	return &Reconciler{
		cfg: cfg, rt: cfg.Runtime, images: cfg.Images, log: cfg.Log, events: cfg.Events, metrics: cfg.Metrics,
		q:       newQueue(),
		desired: map[runtime.PodKey]*DesiredPod{}, mem: map[runtime.PodKey]*podMemory{},
		status: map[runtime.PodKey]PodStatus{}, changedAt: map[runtime.PodKey]time.Time{},
		obs: map[runtime.PodKey]*podObs{}, unsure: map[runtime.PodKey]bool{},
		admitted: map[runtime.PodKey]bool{}, waitPos: map[runtime.PodKey]int{},
		started: make(chan struct{}),
	}
}

// Events returns the event ring.
func (r *Reconciler) Events() *Events { return r.events }

func podRef(key runtime.PodKey) ObjectRef {
	return ObjectRef{Kind: "Pod", Namespace: key.Namespace, Name: key.Name}
}

func containerObj(key runtime.PodKey, name string, init bool) ObjectRef {
	o := podRef(key)
	if init {
		o.FieldPath = "spec.initContainers{" + name + "}"
	} else {
		o.FieldPath = "spec.containers{" + name + "}"
	}
	return o
}

func (r *Reconciler) memLocked(key runtime.PodKey) *podMemory {
	m := r.mem[key]
	if m == nil {
		m = &podMemory{waiting: map[string]string{}, waitingMsg: map[string]string{}, notReady: map[string]bool{}, started: map[string]string{},
			pulls: map[string]Retry{}, starts: map[string]Retry{}, carry: map[string]*runtime.Container{}}
		r.mem[key] = m
	}
	return m
}

// SetDesired replaces the desired state with a new load of the manifests and
// queues every pod whose desired state changed.
//
// Last-known-good: a pod that disappears from a load because its file is
// now broken keeps its previous desired state, marked stale with the error;
// it goes only when its file is gone (or renamed to an ignored name), or
// when the file loads cleanly without it.
func (r *Reconciler) SetDesired(set DesiredSet) {
	now := r.cfg.Now()
	changed := set.Changed
	if changed.IsZero() {
		changed = now
	}
	r.mu.Lock()
	if set.Unavailable != nil {
		first := r.dirErr == nil
		r.dirErr = set.Unavailable
		r.mu.Unlock()
		if first {
			r.events.Record(EventWarning, "ManifestsUnavailable", ObjectRef{Kind: "Node", Name: "manifests"},
				set.Unavailable.Error()+"; keeping every pod as it is")
		}
		return
	}
	recovered := r.dirErr != nil
	r.dirErr = nil
	r.loaded = true
	broken := map[string][]FileError{}
	podErr := map[runtime.PodKey]FileError{}
	for _, fe := range set.Errors {
		broken[fe.File] = append(broken[fe.File], fe)
		if fe.Pod != nil {
			podErr[*fe.Pod] = fe
		}
	}
	next := map[runtime.PodKey]*DesiredPod{}
	for _, p := range set.Pods {
		next[p.Key] = p
	}
	var stale []runtime.PodKey
	for key, old := range r.desired {
		if _, ok := next[key]; ok {
			continue
		}
		_, keyBroken := podErr[key]
		if errs := broken[old.Source]; len(errs) > 0 || keyBroken {
			next[key] = old
			stale = append(stale, key)
		}
	}
	var queue []runtime.PodKey
	for key, p := range next {
		old := r.desired[key]
		if old == p {
			continue
		}
		// A new translation (the file or the documents it reads changed)
		// may change projected volumes, pull secrets and the like without
		// touching a hash: it gets a pass, and its pull and creation
		// back-offs start over, as kubelet's do for a changed pod.
		queue = append(queue, key)
		if m := r.mem[key]; m != nil {
			clear(m.pulls)
			for n, f := range m.starts {
				// Tried again at once; the attempts made still count.
				f.Failures = 0
				m.starts[n] = f
			}
		}
		if old == nil || !sameDesired(old, p) {
			r.changedAt[key] = changed
		}
	}
	for key := range r.desired {
		if _, ok := next[key]; !ok {
			queue = append(queue, key)
			r.changedAt[key] = changed
		}
	}
	// Errors of this load become the pods' last errors; a clean load clears them.
	var newErrs []FileError
	for key := range next {
		m := r.memLocked(key)
		m.stale = slices.Contains(stale, key)
		fe, ok := podErr[key]
		if !ok && m.stale {
			fe, ok = broken[next[key].Source][0], true
		}
		prev := m.lastErr
		if ok {
			m.lastErr = &ManifestErr{File: fe.File, Field: fe.Field, Message: fe.Message, Time: now}
			if prev == nil || prev.Message != fe.Message {
				newErrs = append(newErrs, fe)
			}
		} else if prev != nil && prev.File != "" {
			m.lastErr = nil
		}
	}
	for _, fe := range set.Errors {
		if fe.Pod == nil || next[*fe.Pod] == nil {
			if !slices.ContainsFunc(r.fileErrs, func(o FileError) bool { return o.File == fe.File && o.Message == fe.Message }) {
				newErrs = append(newErrs, fe)
			}
		}
	}
	r.fileErrs = set.Errors
	r.desired = next
	var newNotices []Notice
	notices := make(map[Notice]bool, len(set.Notices))
	for _, n := range set.Notices {
		if !r.notices[n] && !notices[n] {
			newNotices = append(newNotices, n)
		}
		notices[n] = true
	}
	r.notices = notices
	queue = append(queue, r.admitLocked()...)
	r.mu.Unlock()

	r.metrics.ManifestErrors(len(set.Errors))
	if recovered {
		r.events.Record(EventNormal, "ManifestsAvailable", ObjectRef{Kind: "Node", Name: "manifests"}, "manifest directory readable again")
	}
	for _, fe := range newErrs {
		obj := ObjectRef{Kind: "File", Name: fe.File}
		if fe.Pod != nil {
			obj = podRef(*fe.Pod)
		}
		msg := fe.Message
		if fe.Field != "" && !strings.Contains(msg, fe.Field) {
			msg = fe.Field + ": " + msg
		}
		if fe.File != "" && !strings.Contains(msg, fe.File) {
			msg = fe.File + ": " + msg
		}
		r.events.Record(EventWarning, "InvalidManifest", obj, msg)
	}
	for _, n := range newNotices {
		r.events.Record(n.Type, n.Reason, n.Object, n.Message)
	}
	for _, key := range queue {
		r.q.Add(key)
	}
}

func sameDesired(a, b *DesiredPod) bool {
	if a.SandboxHash != b.SandboxHash || a.Source != b.Source || a.Restart != b.Restart ||
		len(a.Init) != len(b.Init) || len(a.Containers) != len(b.Containers) {
		return false
	}
	for i := range a.Init {
		if a.Init[i].Name != b.Init[i].Name || a.Init[i].Hash != b.Init[i].Hash {
			return false
		}
	}
	for i := range a.Containers {
		if a.Containers[i].Name != b.Containers[i].Name || a.Containers[i].Hash != b.Containers[i].Hash {
			return false
		}
	}
	return true
}

// Desired returns the desired pod for key, or nil.
func (r *Reconciler) Desired(key runtime.PodKey) *DesiredPod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.desired[key]
}

// Run starts the workers, the resync timer and the exit watch, and blocks
// until ctx ends. Start-up recovery is the first resync: it garbage-collects
// what a crash left half-made, then queues every pod the runtime knows and
// every pod the manifests name, so running pods are adopted as they are.
func (r *Reconciler) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !r.cfg.DryRun {
		if rep, err := r.rt.GC(ctx); err != nil {
			r.log.Warn().Err(err).Msg("start-up garbage collection failed")
		} else if rep != nil {
			for _, line := range rep.Removed {
				r.log.Info().Str("action", "GC").Str("reason", "start-up recovery").Msg(line)
			}
		}
	}
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Go(func() { r.worker(ctx) })
	}
	if w, ok := r.rt.(runtime.ExitWatcher); ok {
		ch, err := w.WatchExits(ctx)
		if err != nil {
			r.log.Warn().Err(err).Msg("container exit watch unavailable; relying on resync")
		} else {
			wg.Go(func() {
				for ev := range ch {
					r.noteExit(ev)
				}
			})
		}
	}
	if err := r.Resync(ctx); err != nil {
		r.log.Warn().Err(err).Msg("initial resync failed")
	}
	r.mu.Lock()
	r.ready = true
	r.mu.Unlock()
	close(r.started)
	t := time.NewTicker(r.cfg.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.q.ShutDown()
			wg.Wait()
			return nil
		case <-t.C:
			if err := r.Resync(ctx); err != nil {
				r.log.Warn().Err(err).Msg("resync failed")
			}
		}
	}
}

// Ready reports whether start-up recovery has been queued and the manifests
// were loaded at least once.
func (r *Reconciler) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready && r.loaded
}

// Started is closed once Run has queued start-up recovery.
func (r *Reconciler) Started() <-chan struct{} { return r.started }

// DefaultFullResync is the period of the full resync: kubelet's default
// sync frequency.
const DefaultFullResync = time.Minute

// Resync lists the runtime's sandboxes once and compares them with what
// the reconciler last saw: only pods whose sandboxes differ get a pass
// (containers change through exit events and the passes' own reads). On
// the first call and every FullResync it lists the containers too,
// replaces the cache by the listing and gives every pod that is desired or
// present a pass: the safety net for anything an event or a comparison
// could miss.
func (r *Reconciler) Resync(ctx context.Context) error {
	r.mu.Lock()
	since := r.gen
	now := r.cfg.Now()
	// The timer is not exact: a tick a little early still counts.
	full := r.lastFull.IsZero() || now.Sub(r.lastFull) >= r.cfg.FullResync-r.cfg.Resync/2
	r.mu.Unlock()
	boxes, err := r.rt.ListSandboxes(ctx)
	if err != nil {
		return fmt.Errorf("resync: list sandboxes: %w", err)
	}
	var ctrs []*runtime.Container
	if full {
		if ctrs, err = r.rt.ListContainers(ctx, runtime.ContainerFilter{}); err != nil {
			return fmt.Errorf("resync: list containers: %w", err)
		}
	}
	r.takeProblems()
	r.mu.Lock()
	r.absorbListingLocked(boxes, ctrs, full, since, full, runtime.PodKey{})
	r.lastResync = now
	var keys []runtime.PodKey
	if full {
		r.lastFull = now
		for k := range r.desired {
			keys = append(keys, k)
		}
		for k := range r.status {
			keys = append(keys, k)
		}
		for _, m := range r.mem {
			m.volumesFor = nil
		}
	} else {
		// A pod loaded before the first listing and not passed since.
		for k := range r.desired {
			if _, ok := r.status[k]; !ok {
				keys = append(keys, k)
			}
		}
	}
	keys = append(keys, r.admitLocked()...)
	r.mu.Unlock()
	slices.SortFunc(keys, comparePodKeys)
	for _, k := range slices.Compact(keys) {
		r.q.Add(k)
	}
	return nil
}

func (r *Reconciler) worker(ctx context.Context) {
	for {
		key, ok := r.q.Get()
		if !ok {
			return
		}
		r.pass(ctx, key)
		r.q.Done(key)
	}
}

// pass runs one Sync and schedules what follows: a retry with backoff after
// a failure, a check after a backoff ends, or an immediate re-check after
// changes (the next pass must find nothing to do).
func (r *Reconciler) pass(ctx context.Context, key runtime.PodKey) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error().Str("pod", key.String()).Interface("panic", p).Msg("reconcile pass panicked; retrying with backoff")
			r.cacheUnsure(key)
			r.retry(key)
		}
	}()
	plan, err := r.Sync(ctx, key)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		r.retry(key)
		return
	}
	r.mu.Lock()
	if m := r.mem[key]; m != nil {
		m.failures = 0
	}
	r.mu.Unlock()
	if !plan.Empty() && !r.cfg.DryRun {
		r.q.Add(key)
	}
	if plan.RequeueAfter > 0 {
		r.q.AddAfter(key, plan.RequeueAfter)
	}
}

func (r *Reconciler) retry(key runtime.PodKey) {
	r.mu.Lock()
	m := r.memLocked(key)
	m.failures++
	d := r.cfg.StepBackoff.Delay(m.failures)
	r.mu.Unlock()
	r.q.AddAfter(key, d)
}

// Observe reads what the runtime has for key now, bypassing (and leaving
// alone) the reconciler's cache: for the API and for tests.
func (r *Reconciler) Observe(ctx context.Context, key runtime.PodKey) (ObservedPod, error) {
	var obs ObservedPod
	r.mu.Lock()
	known := r.listed && !r.unsure[key]
	var ids []string
	if e := r.obs[key]; e != nil {
		ids = slices.Sorted(maps.Keys(e.boxes))
	}
	r.mu.Unlock()
	if !known {
		all, err := r.rt.ListSandboxes(ctx)
		if err != nil {
			return obs, fmt.Errorf("observe pod %s: list sandboxes: %w", key, err)
		}
		for _, s := range all {
			if s.Pod == key {
				obs.Sandboxes = append(obs.Sandboxes, s)
			}
		}
	} else {
		got, err := getEach(ctx, ids, r.rt.GetSandbox, "sandbox")
		if err != nil {
			return obs, fmt.Errorf("observe pod %s: %w", key, err)
		}
		for _, id := range ids {
			if s := got[id]; s != nil {
				obs.Sandboxes = append(obs.Sandboxes, s)
			}
		}
	}
	cs, err := r.containersOf(ctx, obs.Sandboxes)
	if err != nil {
		return obs, fmt.Errorf("observe pod %s: %w", key, err)
	}
	obs.Containers = cs
	return obs, nil
}

// Plan computes the plan for key without applying it.
func (r *Reconciler) Plan(ctx context.Context, key runtime.PodKey) (Plan, error) {
	d := r.Desired(key)
	obs, err := r.Observe(ctx, key)
	if err != nil {
		return Plan{Key: key}, err
	}
	p := Diff(d, obs, r.diffOptions(key))
	p.Key = key
	return p, nil
}

// diffOptions gathers what Diff needs besides the two states, copying what
// the pod's memory holds (SetDesired may reset it while Diff runs).
func (r *Reconciler) diffOptions(key runtime.PodKey) DiffOptions {
	opt := DiffOptions{Now: r.cfg.Now(), Backoff: r.cfg.Backoff, PullBackoff: r.cfg.PullBackoff}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.mem[key]; m != nil {
		if len(m.carry) > 0 {
			opt.Carried = maps.Clone(m.carry)
		}
		if len(m.pulls) > 0 {
			opt.Pulls = maps.Clone(m.pulls)
		}
		if len(m.starts) > 0 {
			opt.Starts = maps.Clone(m.starts)
		}
		if len(m.started) > 0 {
			opt.Started = maps.Clone(m.started)
		}
	}
	opt.Probing = r.probing()
	return opt
}

// probing reports whether a prober judges containers (and so reports
// startup probes through SetStarted).
func (r *Reconciler) probing() bool { return r.cfg.Hooks.Prober != nil }

// Sync is one reconcile pass for key: observe, diff, apply, record status.
func (r *Reconciler) Sync(ctx context.Context, key runtime.PodKey) (Plan, error) {
	start := time.Now()
	r.mu.Lock()
	r.passes++
	r.mu.Unlock()
	d := r.Desired(key)
	obs, err := r.observe(ctx, key)
	if err != nil {
		r.metrics.Pass(time.Since(start), err)
		r.log.Warn().Str("pod", key.String()).Err(err).Msg("observe failed")
		return Plan{Key: key}, err
	}
	if d != nil && d.Hold != nil {
		return r.syncHeld(ctx, key, d, obs, start)
	}
	if d != nil && len(obs.Sandboxes) == 0 {
		if w, ok := r.admit(key); !ok {
			plan := Plan{Key: key, Waits: []Wait{w}}
			if r.cfg.DryRun {
				fmt.Fprint(r.cfg.DryRunOut, plan.String())
			}
			r.recordWaiting(key, d, w)
			r.metrics.Pass(time.Since(start), nil)
			return plan, nil
		}
	}
	plan := Diff(d, obs, r.diffOptions(key))
	plan.Key = key
	if r.cfg.DryRun {
		if !plan.Empty() || len(plan.Waits) > 0 {
			fmt.Fprint(r.cfg.DryRunOut, plan.String())
		}
		r.recordStatus(key, d, obs, &plan)
		r.metrics.Pass(time.Since(start), nil)
		return plan, nil
	}
	if d == nil && !plan.Empty() {
		// Removal may wait out grace periods: show the pod as terminating
		// meanwhile rather than letting it vanish from the API.
		r.mu.Lock()
		r.status[key] = buildStatus(nil, obs, &plan, r.mem[key], r.cfg.Now(), r.probing())
		r.mu.Unlock()
	}
	applyErr := r.apply(ctx, d, obs, &plan)
	if !plan.Empty() {
		// The cache holds the steps' results; a stop's outcome is read now.
		if obs2, err := r.observe(ctx, key); err == nil {
			obs = obs2
		}
	}
	r.recordStatus(key, d, obs, &plan)
	r.metrics.Pass(time.Since(start), applyErr)
	if applyErr != nil {
		r.mu.Lock()
		m := r.memLocked(key)
		if m.lastErr == nil || m.lastErr.File == "" {
			m.lastErr = &ManifestErr{Message: applyErr.Error(), Time: r.cfg.Now()}
		}
		r.mu.Unlock()
		r.log.Warn().Str("pod", key.String()).Err(applyErr).Dur("duration", time.Since(start)).Msg("reconcile failed")
	}
	return plan, applyErr
}

// recordStatus stores the pod's status, tells the prober, and measures the
// change-to-running/gone latency.
func (r *Reconciler) recordStatus(key runtime.PodKey, d *DesiredPod, obs ObservedPod, plan *Plan) {
	r.mu.Lock()
	m := r.mem[key]
	if d == nil && len(obs.Sandboxes) == 0 && len(obs.Containers) == 0 {
		if _, known := r.status[key]; known {
			defer r.events.Record(EventNormal, "Removed", podRef(key), "Pod removed: its containers and sandbox are gone")
		}
		// Everything the reconciler held about the pod goes with it, and
		// its place goes to the next pod in line.
		delete(r.status, key)
		delete(r.mem, key)
		delete(r.obs, key)
		delete(r.unsure, key)
		delete(r.admitted, key)
		admitted := r.admitLocked()
		t, timed := r.changedAt[key]
		delete(r.changedAt, key)
		r.mu.Unlock()
		for _, k := range admitted {
			r.q.Add(k)
		}
		if timed {
			r.metrics.ChangeToGone(time.Since(t))
		}
		r.notifyProber(key, nil, nil)
		return
	}
	st := buildStatus(d, obs, plan, m, r.cfg.Now(), r.probing())
	if m != nil {
		m.outOfCapacity = false
		m.held = ""
		// A container that runs in the current sandbox carries its own
		// count from now on.
		for _, c := range obs.Containers {
			if c.SandboxID == st.Pelagos.SandboxID {
				delete(m.carry, c.Name)
			}
		}
		if len(m.setAside) > 0 && st.Phase == PhaseRunning && allRunning(st) && !slices.ContainsFunc(m.setAside,
			func(p runtime.RecordProblem) bool { return p.Kind == "sandbox" && p.ID == st.Pelagos.SandboxID }) {
			m.setAside = nil
			st.Pelagos.SetAside = nil
		}
	}
	r.status[key] = st
	var lat time.Duration
	if t, ok := r.changedAt[key]; ok && d != nil && allRunning(st) {
		delete(r.changedAt, key)
		lat = time.Since(t)
	}
	r.mu.Unlock()
	if lat > 0 {
		r.metrics.ChangeToRunning(lat)
	}
	var running []*runtime.Container
	for _, c := range obs.Containers {
		if c.State == runtime.ContainerRunning && c.SandboxID == st.Pelagos.SandboxID {
			running = append(running, c)
		}
	}
	r.notifyProber(key, d, running)
}

func (r *Reconciler) notifyProber(key runtime.PodKey, d *DesiredPod, running []*runtime.Container) {
	if r.cfg.Hooks.Prober != nil {
		r.cfg.Hooks.Prober.Update(key, d, running)
	}
}

func allRunning(st PodStatus) bool {
	if st.Phase == PhaseSucceeded {
		return true
	}
	if len(st.ContainerStatuses) == 0 {
		return false
	}
	for _, c := range st.ContainerStatuses {
		if c.State.Running == nil {
			return false
		}
	}
	return true
}

// SetReady records a readiness result for a container (from a prober).
func (r *Reconciler) SetReady(key runtime.PodKey, container string, ready bool) {
	r.mu.Lock()
	m := r.memLocked(key)
	changed := m.notReady[container] == ready
	m.notReady[container] = !ready
	r.mu.Unlock()
	if changed {
		r.q.Add(key)
	}
}

// SetStarted records that the startup probe of a container's attempt id
// passed (from a prober): a native sidecar then lets the next init
// container start, and status shows it started.
func (r *Reconciler) SetStarted(key runtime.PodKey, container, id string) {
	r.mu.Lock()
	m := r.memLocked(key)
	changed := m.started[container] != id
	m.started[container] = id
	r.mu.Unlock()
	if changed {
		r.q.Add(key)
	}
}

// Kill stops a running container (a liveness failure, a failed hook); the
// restart policy decides what follows.
func (r *Reconciler) Kill(ctx context.Context, key runtime.PodKey, containerID, reason string, grace time.Duration) error {
	// The runtime's errors name the operation and the container.
	c, err := r.rt.GetContainer(ctx, containerID)
	if err != nil {
		return fmt.Errorf("pod %s: %w", key, err)
	}
	r.events.Record(EventNormal, "Killing", containerObj(key, c.Name, false), "Stopping container "+c.Name+": "+reason)
	// As the kubelet does, a probe kill runs the preStop hook too, and
	// the hook's time comes out of the grace (issue 8).
	if r.cfg.Hooks.PreStop != nil && c.State == runtime.ContainerRunning {
		deadline := time.Now().Add(grace)
		hctx, cancel := context.WithDeadline(ctx, deadline)
		if err := r.cfg.Hooks.PreStop(hctx, r.Desired(key), c); err != nil {
			r.events.Record(EventWarning, "FailedPreStopHook", containerObj(key, c.Name, false), err.Error())
		}
		cancel()
		grace = max(0, time.Until(deadline))
	}
	err = r.rt.StopContainer(ctx, containerID, grace)
	r.cacheReread(key, containerID)
	r.q.Add(key)
	if err != nil {
		return fmt.Errorf("pod %s: %w", key, err)
	}
	return nil
}

// apply carries out a plan and records each step's result in the cache.
// Steps that do not depend on each other keep going after a failure (one
// bad image must not hold back the others); the first error is returned so
// the pod is retried with backoff. A step that failed midway may have left
// something half-made: the pod's next reading lists everything.
func (r *Reconciler) apply(ctx context.Context, d *DesiredPod, obs ObservedPod, plan *Plan) error {
	key := plan.Key
	var errs []error
	unsure := false
	boxID := ""
	var box *runtime.Sandbox
	for _, s := range obs.Sandboxes {
		if s.State == runtime.SandboxReady && d != nil && s.Hash() == d.SandboxHash {
			box = s
		}
	}
	// ConfigMap and Secret edits reach a running sandbox's projected
	// volumes (lifecycle.go).
	if err := r.syncVolumes(ctx, d, box); err != nil {
		errs = append(errs, err)
	}
	failedContainer := map[string]bool{}
	pulled := map[string]error{}
	ctrs := map[string]*runtime.Container{}
	for _, c := range obs.Containers {
		ctrs[c.ID] = c
	}
	boxes := map[string]*runtime.Sandbox{}
	for _, s := range obs.Sandboxes {
		boxes[s.ID] = s
	}
	acts := plan.Actions
	// stopsBegan: when this plan's first stop began. A later wave (the
	// sidecars, after the app) gets what is left of the pod's grace
	// period, and at least sidecarMinGrace of it.
	var stopsBegan time.Time
	for i := 0; i < len(acts); i++ {
		if err := ctx.Err(); err != nil {
			// The agent is stopping: what was begun is abandoned, not
			// forced (a removal would kill what a stop left running).
			errs = append(errs, fmt.Errorf("pod %s: %w", key, err))
			break
		}
		a := acts[i]
		// Stops of one pod run together: the pod's grace period bounds
		// the whole teardown, not each container's in turn. Only a later
		// wave waits for the one before it.
		if a.Kind == ActStopContainer {
			j := i
			for j < len(acts) && acts[j].Kind == ActStopContainer && acts[j].Wave == a.Wave {
				j++
			}
			if stopsBegan.IsZero() {
				stopsBegan = time.Now()
			}
			var wg sync.WaitGroup
			var emu sync.Mutex
			for _, s := range acts[i:j] {
				if s.Wave > 0 {
					s.Grace = max(s.Grace-time.Since(stopsBegan), min(s.Grace, sidecarMinGrace))
				}
				wg.Go(func() {
					if err := r.stop(ctx, d, key, ctrs[s.ContainerID], s); err != nil {
						emu.Lock()
						errs = append(errs, err)
						unsure = true
						emu.Unlock()
					}
				})
			}
			wg.Wait()
			i = j - 1
			continue
		}
		t0 := time.Now()
		var err error
		// The runtime's errors already name the operation and the object
		// ("remove sandbox X: ..."): the pass adds only the pod.
		switch a.Kind {
		case ActRemoveContainer:
			err = r.rt.RemoveContainer(ctx, a.ContainerID)
			if err != nil {
				err = fmt.Errorf("pod %s: %w", key, err)
				// The runtime removed what it could and keeps the rest
				// with its record; the pass is retried with back-off.
				r.events.Record(EventWarning, "FailedKillPod", podRef(key), err.Error())
				unsure = true
			} else {
				r.cacheDropContainer(key, a.ContainerID)
			}
		case ActRemoveSandbox:
			err = r.rt.RemoveSandbox(ctx, a.SandboxID)
			if err != nil {
				err = fmt.Errorf("pod %s: %w", key, err)
				r.events.Record(EventWarning, "FailedKillPod", podRef(key), err.Error())
				unsure = true
				break
			}
			r.cacheDropSandbox(key, a.SandboxID)
			if d != nil {
				if s := boxes[a.SandboxID]; s != nil && s.State != runtime.SandboxReady {
					r.rememberCarry(key, s, obs.Containers)
				}
				r.events.Record(EventNormal, "SandboxChanged", podRef(key), "Pod sandbox "+a.SandboxID+" removed: "+a.Reason)
			}
		case ActCreateSandbox:
			cfg := d.Sandbox
			cfg.Pod = key
			cfg.Annotations = maps.Clone(cfg.Annotations)
			if cfg.Annotations == nil {
				cfg.Annotations = map[string]string{}
			}
			cfg.Annotations[runtime.AnnotationSandboxHash] = d.SandboxHash
			cfg.Annotations[runtime.AnnotationSourceFile] = d.Source
			cfg.Annotations[AnnotationGracePeriod] = strconv.Itoa(int(d.Grace / time.Second))
			box, err = r.rt.CreateSandbox(ctx, &cfg)
			if err != nil {
				r.events.Record(EventWarning, "FailedCreatePodSandBox", podRef(key), "Failed to create pod sandbox: "+err.Error())
				err = fmt.Errorf("pod %s: %w", key, err)
				// Nothing else of this pod can happen without its sandbox.
				r.logAction(key, a, time.Since(t0), err)
				r.metrics.Action(a.Kind, err, time.Since(t0))
				r.cacheUnsure(key)
				return errors.Join(append(errs, err)...)
			}
			r.cacheSandbox(key, box)
		case ActPullImage:
			err = r.pull(ctx, d, a, pulled)
			if err != nil {
				failedContainer[a.Container] = true
			}
		case ActStartContainer:
			if failedContainer[a.Container] {
				continue
			}
			if a.SandboxID != "" {
				boxID = a.SandboxID
			} else if box != nil {
				boxID = box.ID
			}
			err = r.start(ctx, d, boxID, a)
			if err != nil {
				unsure = true
			}
		}
		r.logAction(key, a, time.Since(t0), err)
		r.metrics.Action(a.Kind, err, time.Since(t0))
		if err != nil {
			errs = append(errs, err)
		}
	}
	if unsure {
		r.cacheUnsure(key)
	}
	return errors.Join(errs...)
}

// sidecarMinGrace is the least time a sidecar gets between SIGTERM and
// SIGKILL when the app containers before it used up the pod's grace
// period: the kubelet's minimum grace period.
const sidecarMinGrace = 2 * time.Second

// rememberCarry keeps, after a dead sandbox of a pod that stays is removed,
// the last container of each name: restart counts and the crash-loop
// back-off continue in the next sandbox, as kubelet's do across sandbox
// recreation. It lives in the agent's memory until a container of that name
// runs in a new sandbox (whose annotations then carry it).
func (r *Reconciler) rememberCarry(key runtime.PodKey, s *runtime.Sandbox, cs []*runtime.Container) {
	var mine []*runtime.Container
	for _, c := range cs {
		if c.SandboxID == s.ID {
			mine = append(mine, c)
		}
	}
	from := carryFrom(mine, s, r.cfg.Now())
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.memLocked(key)
	mergeCarry(m.carry, from)
}

func (r *Reconciler) logAction(key runtime.PodKey, a Action, d time.Duration, err error) {
	ev := r.log.Info()
	if err != nil {
		ev = r.log.Warn().Err(err)
	}
	ev = ev.Str("pod", key.String()).Str("action", string(a.Kind)).Str("reason", a.Reason).Dur("duration", d)
	if a.Container != "" {
		ev = ev.Str("container", a.Container)
	}
	if a.ContainerID != "" {
		ev = ev.Str("id", a.ContainerID)
	}
	if a.SandboxID != "" {
		ev = ev.Str("sandbox", a.SandboxID)
	}
	ev.Msg("reconcile")
}

func (r *Reconciler) stop(ctx context.Context, d *DesiredPod, key runtime.PodKey, c *runtime.Container, a Action) error {
	t0 := time.Now()
	grace := a.Grace
	if c != nil && r.cfg.Hooks.PreStop != nil && c.State == runtime.ContainerRunning {
		deadline := t0.Add(grace)
		hctx, cancel := context.WithDeadline(ctx, deadline)
		if err := r.cfg.Hooks.PreStop(hctx, d, c); err != nil {
			r.events.Record(EventWarning, "FailedPreStopHook", containerObj(key, a.Container, false), err.Error())
		}
		cancel()
		grace = max(0, time.Until(deadline))
	}
	r.events.Record(EventNormal, "Killing", containerObj(key, a.Container, false), "Stopping container "+a.Container+": "+a.Reason)
	err := r.rt.StopContainer(ctx, a.ContainerID, grace)
	// The stop's outcome (exit code, time) is read on the pass's next look.
	r.cacheReread(key, a.ContainerID)
	if err != nil {
		err = fmt.Errorf("pod %s: %w", key, err)
	}
	r.logAction(key, a, time.Since(t0), err)
	r.metrics.Action(a.Kind, err, time.Since(t0))
	return err
}

func (r *Reconciler) findContainer(d *DesiredPod, name string) *DesiredContainer {
	for i := range d.Init {
		if d.Init[i].Name == name {
			return &d.Init[i]
		}
	}
	for i := range d.Containers {
		if d.Containers[i].Name == name {
			return &d.Containers[i]
		}
	}
	return nil
}

// pull ensures a container's image and the images of the image volumes
// it mounts, each once per reference and pass. A failure starts (or
// extends) that image's pull back-off for this pod; a success ends it.
func (r *Reconciler) pull(ctx context.Context, d *DesiredPod, a Action, pulled map[string]error) error {
	dc := r.findContainer(d, a.Container)
	if dc == nil {
		return fmt.Errorf("pod %s: pull for unknown container %s", d.Key, a.Container)
	}
	var err error
	var msg string
	for _, im := range append([]VolumeImage{{Ref: dc.Config.Image, PullPolicy: dc.PullPolicy}}, dc.VolumeImages...) {
		if err = r.ensureImage(ctx, d, dc, im, pulled); err != nil {
			msg = pullFailed(im, err)
			break
		}
	}
	r.mu.Lock()
	m := r.memLocked(d.Key)
	if err != nil {
		m.waiting[dc.Name] = "ErrImagePull"
		m.waitingMsg[dc.Name] = msg
	} else {
		delete(m.waiting, dc.Name)
		delete(m.waitingMsg, dc.Name)
	}
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("pod %s: %w", d.Key, err)
	}
	return nil
}

// ensureImage pulls one image of dc (as its policy says) unless this pass
// did already, and keeps the pod's pull back-off of the reference.
func (r *Reconciler) ensureImage(ctx context.Context, d *DesiredPod, dc *DesiredContainer, im VolumeImage, pulled map[string]error) error {
	if err, done := pulled[im.Ref]; done {
		return err
	}
	_, err := r.images.EnsureImage(ctx, im.Ref, runtime.PullOptions{Policy: im.PullPolicy, Auth: d.PullAuth})
	r.metrics.ImagePull(err)
	if err != nil {
		r.events.Record(EventWarning, "Failed", containerObj(d.Key, dc.Name, dc.Init), pullFailed(im, err))
	}
	pulled[im.Ref] = err
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.memLocked(d.Key)
	if err != nil && ctx.Err() == nil {
		f := m.pulls[im.Ref]
		f.Failures++
		f.Last = r.cfg.Now()
		f.Reason, f.Message = "ErrImagePull", err.Error()
		m.pulls[im.Ref] = f
	} else if err == nil {
		delete(m.pulls, im.Ref)
	}
	return err
}

// pullFailed is kubelet's message for a failed pull, in the event and the
// container's waiting state, naming the image volume when the image is
// one's. The image store's error names what it pulled (its canonical
// name), so the reference is not repeated around it.
func pullFailed(im VolumeImage, err error) string {
	if im.Volume != "" {
		return fmt.Sprintf("Failed to pull image %q for image volume %q: %v", im.Ref, im.Volume, err)
	}
	return fmt.Sprintf("Failed to pull image %q: %v", im.Ref, err)
}

// start creates and starts one container. A failed creation is retried on
// the container back-off schedule (Diff holds it back meanwhile), and each
// try uses the next attempt number, so RESTARTS counts them as kubelet's
// does; ErrInvalidConfig, which no retry can fix, shows as
// CreateContainerConfigError.
func (r *Reconciler) start(ctx context.Context, d *DesiredPod, boxID string, a Action) error {
	dc := r.findContainer(d, a.Container)
	if dc == nil {
		return fmt.Errorf("pod %s: start unknown container %s", d.Key, a.Container)
	}
	obj := containerObj(d.Key, dc.Name, dc.Init)
	cfg := dc.Config
	cfg.SandboxID = boxID
	cfg.Name = dc.Name
	cfg.Attempt = a.Attempt
	cfg.Annotations = maps.Clone(cfg.Annotations)
	if cfg.Annotations == nil {
		cfg.Annotations = map[string]string{}
	}
	cfg.Annotations[runtime.AnnotationContainerHash] = dc.Hash
	cfg.Annotations[runtime.AnnotationSourceFile] = d.Source
	cfg.Annotations[AnnotationCrashCount] = strconv.Itoa(a.CrashCount)
	if dc.Init {
		cfg.Annotations[AnnotationInit] = "true"
	}
	if dc.Sidecar {
		cfg.Annotations[AnnotationSidecar] = strconv.Itoa(slices.IndexFunc(d.Init, func(c DesiredContainer) bool { return c.Name == dc.Name }))
	}
	// status.podIP env values wait for the sandbox's address (lifecycle.go).
	c, err := (*runtime.Container)(nil), r.fillPodIP(ctx, boxID, &cfg)
	if err == nil {
		c, err = r.rt.StartContainer(ctx, &cfg)
	}
	r.mu.Lock()
	m := r.memLocked(d.Key)
	if err != nil {
		reason := "CreateContainerError"
		if errors.Is(err, runtime.ErrInvalidConfig) {
			reason = "CreateContainerConfigError"
		}
		m.waiting[dc.Name] = reason
		m.waitingMsg[dc.Name] = err.Error()
		if ctx.Err() == nil {
			f := m.starts[dc.Name]
			if f.Hash != dc.Hash {
				f = Retry{Hash: dc.Hash}
			}
			f.Failures++
			f.Last = r.cfg.Now()
			f.Reason, f.Message, f.Attempt = reason, err.Error(), a.Attempt
			m.starts[dc.Name] = f
		}
	} else {
		delete(m.waiting, dc.Name)
		delete(m.waitingMsg, dc.Name)
		delete(m.starts, dc.Name)
	}
	r.mu.Unlock()
	if err != nil {
		r.events.Record(EventWarning, "Failed", obj, "Error: "+err.Error())
		return fmt.Errorf("pod %s: %w", d.Key, err)
	}
	r.cacheContainer(d.Key, c)
	if a.CrashCount > 0 {
		r.events.Record(EventWarning, "BackOff", obj, fmt.Sprintf("Restarted container %s after back-off (restart %d)", dc.Name, a.Attempt))
	}
	r.events.Record(EventNormal, "Started", obj, "Started container "+dc.Name)
	if r.cfg.Hooks.PostStart != nil {
		if herr := r.cfg.Hooks.PostStart(ctx, d, dc, c); herr != nil {
			r.events.Record(EventWarning, "FailedPostStartHook", obj, herr.Error())
			serr := r.rt.StopContainer(ctx, c.ID, d.Grace)
			r.cacheReread(d.Key, c.ID)
			if serr != nil {
				return fmt.Errorf("pod %s: stop container %s after failed postStart: %w", d.Key, dc.Name, serr)
			}
		}
	}
	return nil
}
