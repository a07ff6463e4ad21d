// Package workload runs the Deployments, StatefulSets, DaemonSets and Jobs
// of the manifest directory: as Kubernetes' controllers do, it makes pods
// from their templates, scales and rolls them, runs Jobs to completion, and
// keeps each workload's status. It sits between the manifest loads and the
// reconciler: the pods it makes join the Pod manifests in the desired set,
// and every pass the reconciler makes over one of them brings it back here.
//
// The single-node meaning: a Deployment's or StatefulSet's replicas are
// this node's replicas, a DaemonSet is one pod (if its template is meant
// for this node), and a Job's pods all run here. Each kind's logic is a
// function of the workload, what the controller remembers and the pods'
// states (deployment.go, statefulset.go, daemonset.go, job.go); this file
// is the machinery around them.
package workload

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

// Backend is what the controller needs of the reconciler;
// *reconcile.Reconciler implements it.
type Backend interface {
	SetDesired(reconcile.DesiredSet)
	Pod(key runtime.PodKey) (reconcile.Pod, bool)
	Observe(ctx context.Context, key runtime.PodKey) (reconcile.ObservedPod, error)
	Events() *reconcile.Events
}

// Config configures a Controller.
type Config struct {
	// Translator translates the pods the controllers make, as it does Pod
	// manifests; its Node decides which of them are meant for this node.
	Translator reconcile.Translator
	// Store keeps what must survive a restart of the agent: a Job's
	// progress (a finished Job never runs again). Nil keeps it in memory.
	Store Store
	// Backoff is the delay before a Job replaces a failed pod (kubelet's
	// crash-loop schedule by default, as the Job controller's is).
	Backoff reconcile.BackoffPolicy
	Log     zerolog.Logger
	Now     func() time.Time
}

// Controller runs the workloads; see the package comment.
type Controller struct {
	cfg Config
	b   Backend

	mu        sync.Mutex // serialises evaluations and what they publish
	base      reconcile.DesiredSet
	docs      *reconcile.Documents
	docsKey   string
	sources   map[spec.WorkloadKey]*manifest.WorkloadSource
	states    map[spec.WorkloadKey]kindState
	results   map[spec.WorkloadKey]*result
	cache     map[runtime.PodKey]*translated
	published []*reconcile.DesiredPod
	timers    map[spec.WorkloadKey]*time.Timer

	dmu    sync.Mutex // guards dirty and owners; Update must never wait for an evaluation
	dirty  map[spec.WorkloadKey]bool
	owners map[runtime.PodKey]spec.WorkloadKey // generated pods, until each is gone
	kick   chan struct{}
}

// kindState is what one workload's controller remembers between
// evaluations.
type kindState interface {
	eval(w spec.Workload, in *input) *result
}

// input is what an evaluation reads besides the workload and its state.
type input struct {
	now  time.Time
	key  spec.WorkloadKey
	pod  func(name string) podState
	node func(*spec.PodSpec) string // why pods of this spec are not meant for the node; "" if they are
	uid  string                     // the workload's UID
	// fresh is set on the first evaluation after the agent started: pods
	// the runtime still has may be adopted (exists answers).
	fresh  bool
	exists func(name string) bool
	store  Store
	back   reconcile.BackoffPolicy
	log    zerolog.Logger
}

// result is one evaluation's outcome.
type result struct {
	pods   []genPod
	status any
	wake   time.Time // evaluate again then (zero: on the pods' changes only)
	events []event
}

// genPod is one pod a workload wants.
type genPod struct {
	name     string
	pod      *spec.Pod
	hold     *reconcile.Hold
	terminal bool
}

type event struct {
	typ, reason, message string
}

// podState is what the controller reads of one of its pods.
type podState struct {
	known    bool // the reconciler has it, desired or present
	present  bool // it owns a sandbox
	phase    string
	ready    bool
	running  bool // every app container runs
	restarts int
	reason   string
}

// readiness reads the pods' states at most once per evaluation and
// remembers, across evaluations, since when each pod has been ready: a pod
// is available once ready for minReadySeconds.
type readiness struct {
	since map[string]time.Time
	state map[string]podState
}

// begin starts an evaluation: states are read afresh.
func (r *readiness) begin() {
	if r.since == nil {
		r.since = map[string]time.Time{}
	}
	r.state = map[string]podState{}
}

func (r *readiness) look(in *input, name string) podState {
	st, ok := r.state[name]
	if !ok {
		st = in.pod(name)
		r.state[name] = st
		if st.ready {
			if _, seen := r.since[name]; !seen {
				r.since[name] = in.now
			}
		} else {
			delete(r.since, name)
		}
	}
	return st
}

func (r *readiness) available(in *input, name string, minReady time.Duration) bool {
	return r.look(in, name).ready && !in.now.Before(r.since[name].Add(minReady))
}

// availableAt is when a ready pod that is not yet available will be; zero
// when there is nothing to wait for.
func (r *readiness) availableAt(in *input, name string, minReady time.Duration) time.Time {
	if t, ok := r.since[name]; ok && r.look(in, name).ready && in.now.Before(t.Add(minReady)) {
		return t.Add(minReady)
	}
	return time.Time{}
}

func stateOf(p reconcile.Pod, ok bool) podState {
	if !ok {
		return podState{}
	}
	st := podState{known: true, present: p.Status.Pelagos.SandboxID != "" || p.Status.Reason == "Terminating",
		phase: p.Status.Phase, reason: p.Status.Reason}
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" && c.Status == "True" {
			st.ready = true
		}
	}
	st.running = len(p.Status.ContainerStatuses) > 0
	for _, c := range p.Status.ContainerStatuses {
		st.restarts += c.RestartCount
		if c.State.Running == nil {
			st.running = false
		}
	}
	for _, c := range p.Status.InitContainerStatuses {
		st.restarts += c.RestartCount
	}
	return st
}

// translated is the translation of a generated pod, reused while its spec
// and the documents it reads are the same: a new DesiredPod would make the
// reconciler pass the pod again and start its back-offs over.
type translated struct {
	digest string
	d      *reconcile.DesiredPod
	err    error
}

// New returns a Controller; Attach gives it the reconciler, Run runs it.
func New(cfg Config) *Controller {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Store == nil {
		cfg.Store = NewMemStore()
	}
	return &Controller{cfg: cfg, sources: map[spec.WorkloadKey]*manifest.WorkloadSource{},
		states: map[spec.WorkloadKey]kindState{}, results: map[spec.WorkloadKey]*result{},
		owners: map[runtime.PodKey]spec.WorkloadKey{}, cache: map[runtime.PodKey]*translated{},
		timers: map[spec.WorkloadKey]*time.Timer{}, dirty: map[spec.WorkloadKey]bool{}, kick: make(chan struct{}, 1)}
}

// Attach sets the reconciler the controller drives. It is separate from
// New because the reconciler's hooks (Chain) need the controller first.
func (c *Controller) Attach(b Backend) { c.b = b }

// Chain makes the controller hear of every reconcile pass, then tells next.
func (c *Controller) Chain(next reconcile.Prober) reconcile.Prober {
	return chained{c, next}
}

type chained struct {
	c    *Controller
	next reconcile.Prober
}

func (ch chained) Update(key runtime.PodKey, pod *reconcile.DesiredPod, running []*runtime.Container) {
	ch.c.Update(key, pod, running)
	if ch.next != nil {
		ch.next.Update(key, pod, running)
	}
}

// Update is told after each pass over a pod; a pod of a workload makes
// that workload be evaluated again. It never blocks on an evaluation.
func (c *Controller) Update(key runtime.PodKey, pod *reconcile.DesiredPod, _ []*runtime.Container) {
	c.dmu.Lock()
	// A pod being removed no longer has a DesiredPod to name its owner:
	// owners remembers it until the removal's last pass.
	owner, ok := c.owners[key]
	if ok {
		c.dirty[owner] = true
		if pod == nil {
			if _, known := c.b.Pod(key); !known {
				delete(c.owners, key)
			}
		}
	}
	c.dmu.Unlock()
	if ok {
		c.poke()
	}
}

func (c *Controller) markDirty(k spec.WorkloadKey) {
	c.dmu.Lock()
	c.dirty[k] = true
	c.dmu.Unlock()
	c.poke()
}

func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// SetManifests takes a load of the manifest directory: set is the Pod
// manifests' translation (Translator.FromSnapshot), snap the load it came
// from. Every workload is evaluated and the whole desired set, generated
// pods included, goes to the reconciler. A workload whose file broke keeps
// its last good version, as a pod does.
func (c *Controller) SetManifests(set reconcile.DesiredSet, snap *manifest.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base = set
	if set.Unavailable != nil || snap == nil {
		c.b.SetDesired(set)
		return
	}
	c.docs, c.docsKey = reconcile.DocumentsOf(snap)
	broken := map[string]bool{}
	for _, fe := range set.Errors {
		broken[fe.File] = true
	}
	next := map[spec.WorkloadKey]*manifest.WorkloadSource{}
	for k, ws := range snap.Workloads {
		next[k] = ws
	}
	for k, old := range c.sources {
		if _, ok := next[k]; !ok && broken[old.File] {
			next[k] = old
		}
	}
	for k := range c.sources {
		if _, ok := next[k]; !ok {
			c.forget(k)
		}
	}
	c.sources = next
	for _, k := range slices.SortedFunc(maps.Keys(next), compareKeys) {
		c.evaluate(k)
	}
	c.publish(true, set.Changed)
}

// forget drops a workload whose manifest is gone: its pods leave the
// desired set (and are removed), and a Job's record goes, so the same Job
// added again runs again.
func (c *Controller) forget(k spec.WorkloadKey) {
	delete(c.states, k)
	delete(c.results, k)
	if t := c.timers[k]; t != nil {
		t.Stop()
		delete(c.timers, k)
	}
	if k.Kind == spec.KindJob {
		if err := c.cfg.Store.Delete(storeKey(k)); err != nil {
			c.cfg.Log.Warn().Err(err).Str("workload", k.String()).Msg("cannot forget the Job's record")
		}
	}
}

// Run evaluates the workloads whose pods changed, and those whose timers
// ran out, until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			c.mu.Lock()
			for _, t := range c.timers {
				t.Stop()
			}
			c.mu.Unlock()
			return
		case <-c.kick:
		}
		c.dmu.Lock()
		dirty := c.dirty
		c.dirty = map[spec.WorkloadKey]bool{}
		c.dmu.Unlock()
		c.mu.Lock()
		for _, k := range slices.SortedFunc(maps.Keys(dirty), compareKeys) {
			if c.sources[k] != nil {
				c.evaluate(k)
			}
		}
		c.publish(false, time.Time{})
		c.mu.Unlock()
	}
}

func compareKeys(a, b spec.WorkloadKey) int {
	switch {
	case a.String() < b.String():
		return -1
	case a.String() > b.String():
		return 1
	}
	return 0
}

// evaluate runs one workload's controller. Called with c.mu held.
func (c *Controller) evaluate(k spec.WorkloadKey) {
	ws := c.sources[k]
	st := c.states[k]
	fresh := st == nil
	if fresh {
		st = newState(k.Kind)
		c.states[k] = st
	}
	in := &input{
		now: c.cfg.Now(), key: k, fresh: fresh, store: c.cfg.Store, back: c.cfg.Backoff,
		log: c.cfg.Log.With().Str("workload", k.String()).Logger(),
		pod: func(name string) podState {
			return stateOf(c.b.Pod(runtime.PodKey{Namespace: k.Namespace, Name: name}))
		},
		node: func(s *spec.PodSpec) string {
			if n := c.cfg.Translator.Node; n != nil {
				if m := n.Match(s); m != nil {
					return m.Message
				}
			}
			return ""
		},
		uid: c.workloadUID(k),
		exists: func(name string) bool {
			obs, err := c.b.Observe(context.Background(), runtime.PodKey{Namespace: k.Namespace, Name: name})
			return err == nil && len(obs.Sandboxes) > 0
		},
	}
	res := st.eval(ws.Workload, in)
	c.results[k] = res
	obj := reconcile.ObjectRef{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name}
	for _, ev := range res.events {
		c.b.Events().Record(ev.typ, ev.reason, obj, ev.message)
	}
	if t := c.timers[k]; t != nil {
		t.Stop()
		delete(c.timers, k)
	}
	if !res.wake.IsZero() {
		c.timers[k] = time.AfterFunc(max(res.wake.Sub(in.now), time.Millisecond), func() { c.markDirty(k) })
	}
}

func newState(kind string) kindState {
	switch kind {
	case spec.KindDeployment:
		return &rollout{}
	case spec.KindDaemonSet:
		return &rollout{daemon: true}
	case spec.KindStatefulSet:
		return &setState{}
	case spec.KindJob:
		return &jobRun{}
	}
	panic("workload: no controller for kind " + kind)
}

// publish translates the workloads' pods and hands the whole desired set to
// the reconciler: always after a load (force), else only when the pods
// changed. Called with c.mu held.
func (c *Controller) publish(force bool, changed time.Time) {
	set := c.base
	set.Pods = slices.Clone(set.Pods)
	set.Errors = slices.Clone(set.Errors)
	if !changed.IsZero() {
		set.Changed = changed
	}
	taken := map[runtime.PodKey]string{}
	for _, d := range set.Pods {
		taken[d.Key] = d.Source
	}
	var gen []*reconcile.DesiredPod
	cache := map[runtime.PodKey]*translated{}
	for _, k := range slices.SortedFunc(maps.Keys(c.results), compareKeys) {
		ws := c.sources[k]
		for _, g := range c.results[k].pods {
			key := runtime.PodKey{Namespace: k.Namespace, Name: g.name}
			if src, dup := taken[key]; dup {
				set.Errors = append(set.Errors, reconcile.FileError{File: ws.File, Message: "pod " + key.String() +
					" of " + k.String() + " is also defined by " + src + ", which wins; this replica is not run"})
				continue
			}
			taken[key] = ws.File
			c.dmu.Lock()
			c.owners[key] = k
			c.dmu.Unlock()
			tr := c.translate(k, ws, g)
			cache[key] = tr
			if tr.err != nil {
				set.Errors = append(set.Errors, reconcile.FileError{File: ws.File, Pod: &key, Message: tr.err.Error()})
				continue
			}
			gen = append(gen, tr.d)
		}
	}
	c.cache = cache
	if force || !slices.Equal(gen, c.published) {
		c.published = gen
		set.Pods = append(set.Pods, gen...)
		c.b.SetDesired(set)
	}
}

// translate turns a generated pod into a DesiredPod, reusing the last one
// while nothing it depends on changed.
func (c *Controller) translate(k spec.WorkloadKey, ws *manifest.WorkloadSource, g genPod) *translated {
	key := runtime.PodKey{Namespace: k.Namespace, Name: g.name}
	digest := specHash(struct {
		Pod      *spec.Pod
		Hold     *reconcile.Hold
		Terminal bool
		File     string
		Docs     string
	}{g.pod, g.hold, g.terminal, ws.File, c.docsKey})
	if t := c.cache[key]; t != nil && t.digest == digest {
		return t
	}
	d, err := c.cfg.Translator.Pod(g.pod, ws.File, c.docs)
	if err != nil {
		return &translated{digest: digest, err: err}
	}
	if d.Hold == nil {
		d.Hold = g.hold
	}
	d.Terminal = g.terminal
	d.Owner = &reconcile.OwnerRef{APIVersion: apiVersionOf(k.Kind), Kind: k.Kind, Name: k.Name, UID: c.workloadUID(k), Controller: true}
	if c.cfg.Translator.FileTime != nil {
		d.Created = c.cfg.Translator.FileTime(ws.File)
	}
	return &translated{digest: digest, d: d}
}

func apiVersionOf(kind string) string {
	if kind == spec.KindJob {
		return spec.APIVersionBatch
	}
	return spec.APIVersionApps
}

// workloadUID is stable for a workload's name on this node: its pods'
// owner reference and a Job's controller-uid label.
func (c *Controller) workloadUID(k spec.WorkloadKey) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("pelagos://"+c.cfg.Translator.NodeName+"/"+k.Kind+"/"+k.Namespace+"/"+k.Name)).String()
}

// PodKeys lists every pod of the last desired set: the Pod manifests'
// and the workloads'.
func (c *Controller) PodKeys() []runtime.PodKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []runtime.PodKey
	for _, d := range c.base.Pods {
		out = append(out, d.Key)
	}
	for _, d := range c.published {
		out = append(out, d.Key)
	}
	return out
}

// Workloads returns every workload with its status, sorted by kind,
// namespace and name.
func (c *Controller) Workloads() []Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Object
	for _, k := range slices.SortedFunc(maps.Keys(c.sources), compareKeys) {
		ws := c.sources[k]
		m := ws.Workload.Meta()
		o := Object{APIVersion: apiVersionOf(k.Kind), Kind: k.Kind,
			Metadata: Meta{Name: m.Name, Namespace: m.Namespace, UID: c.workloadUID(k), Labels: m.Labels, Annotations: m.Annotations, Generation: 1},
			Spec:     specOf(ws.Workload)}
		if c.cfg.Translator.FileTime != nil {
			o.Metadata.CreationTimestamp = c.cfg.Translator.FileTime(ws.File)
		}
		if r := c.results[k]; r != nil {
			o.Status = r.status
		}
		out = append(out, o)
	}
	return out
}

func specOf(w spec.Workload) any {
	switch w := w.(type) {
	case *spec.Deployment:
		return w.Spec
	case *spec.StatefulSet:
		return w.Spec
	case *spec.DaemonSet:
		return w.Spec
	case *spec.Job:
		return w.Spec
	}
	return nil
}

// podFor copies the workload's template into the pod named name, with the
// labels its controller adds.
func podFor(w spec.Workload, name string, labels map[string]string) *spec.Pod {
	p := spec.TemplatePod(w)
	p.Metadata.Name = name
	l := maps.Clone(p.Metadata.Labels)
	if l == nil {
		l = map[string]string{}
	}
	maps.Copy(l, labels)
	p.Metadata.Labels = l
	return p
}
