package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// The observed-state cache (issue 13). Re-reading the runtime on every pass
// made an idle node cost most of a core: records listed and decoded for
// every pod, every resync. So the reconciler keeps what it last saw of each
// pod and updates it from what changes it:
//
//   - its own results: CreateSandbox and StartContainer return the object,
//     removals drop it, a stop marks the container to be read again;
//   - the runtime's exit events (runtime.ExitWatcher) mark the container to
//     be read again and queue the pod;
//   - the periodic resync lists every sandbox once and compares it with
//     the cache (the pause's identity and state, the set of sandboxes): a
//     pod whose sandboxes differ is read again and queued, the others cost
//     nothing;
//   - every FullResync (and at start) every container is listed too, the
//     cache replaced by the listing, and every pod queued: the safety net
//     for what no event told (an exit event lost, a record deleted under
//     the agent).
//
// A step that failed midway leaves the pod "unsure": its next read lists
// every sandbox, so a half-made one is never missed. Nothing ever trusts
// the cache over a newer reading: every change bumps a generation, and a
// listing that started before a change never overwrites it.

// podObs is what the reconciler last saw of one pod. Objects are shared
// and never modified in place: a change replaces the pointer.
type podObs struct {
	boxes map[string]*runtime.Sandbox
	ctrs  map[string]*runtime.Container
	// stale: read every known sandbox (by ID) and its containers again.
	stale bool
	// reread: containers to read again (exited, stopped).
	reread map[string]bool
	// gen is the reconciler's generation at the last change.
	gen uint64
	// view is the ObservedPod built from boxes and ctrs, kept until they
	// change so an idle pass allocates nothing to observe.
	view *ObservedPod
}

func (e *podObs) dirty() bool { return e.stale || len(e.reread) > 0 }

// snapshot returns the cached ObservedPod, sandboxes and containers in ID
// order.
func (e *podObs) snapshot() ObservedPod {
	if e.view == nil {
		v := ObservedPod{Sandboxes: make([]*runtime.Sandbox, 0, len(e.boxes)), Containers: make([]*runtime.Container, 0, len(e.ctrs))}
		for _, id := range slices.Sorted(maps.Keys(e.boxes)) {
			v.Sandboxes = append(v.Sandboxes, e.boxes[id])
		}
		for _, id := range slices.Sorted(maps.Keys(e.ctrs)) {
			v.Containers = append(v.Containers, e.ctrs[id])
		}
		e.view = &v
	}
	return *e.view
}

// entryLocked returns key's cache entry, creating an empty one. The caller
// holds r.mu.
func (r *Reconciler) entryLocked(key runtime.PodKey) *podObs {
	e := r.obs[key]
	if e == nil {
		e = &podObs{boxes: map[string]*runtime.Sandbox{}, ctrs: map[string]*runtime.Container{}}
		r.obs[key] = e
	}
	return e
}

// touchLocked records a change of e.
func (r *Reconciler) touchLocked(e *podObs) {
	r.gen++
	e.gen = r.gen
	e.view = nil
}

// observe returns what the runtime has for key: from the cache when nothing
// may have changed, otherwise reading only what may have.
func (r *Reconciler) observe(ctx context.Context, key runtime.PodKey) (ObservedPod, error) {
	r.mu.Lock()
	e := r.entryLocked(key)
	full := !r.listed || r.unsure[key]
	if !full && !e.dirty() {
		v := e.snapshot()
		r.mu.Unlock()
		return v, nil
	}
	delete(r.unsure, key)
	stale := e.stale
	reread := e.reread
	e.stale, e.reread = false, nil
	ids := slices.Sorted(maps.Keys(e.boxes))
	r.mu.Unlock()

	var err error
	switch {
	case full:
		err = r.readFull(ctx, key)
	case stale:
		err = r.readStale(ctx, key, ids)
	default:
		var more string
		more, err = r.readContainers(ctx, key, reread)
		if err == nil && more != "" {
			// A container of a sandbox the cache did not know.
			err = r.readStale(ctx, key, append(ids, more))
		}
	}
	r.takeProblems()
	r.mu.Lock()
	defer r.mu.Unlock()
	e = r.entryLocked(key)
	if err != nil {
		// Read again next time, at least as much as this time.
		e.stale = e.stale || stale
		for id := range reread {
			if e.reread == nil {
				e.reread = map[string]bool{}
			}
			e.reread[id] = true
		}
		if full {
			r.unsure[key] = true
		}
		return ObservedPod{}, fmt.Errorf("observe pod %s: %w", key, err)
	}
	if len(e.boxes) > 0 {
		r.admitted[key] = true
	}
	return e.snapshot(), nil
}

// readFull lists every sandbox (every other pod's entry learns from it
// too) and takes key's from the listing. The first one, before the cache
// holds anything, lists every container as well, as the full resync does,
// so that no pod needs reads of its own afterwards; later ones (a step
// failed midway) read only key's containers.
func (r *Reconciler) readFull(ctx context.Context, key runtime.PodKey) error {
	r.mu.Lock()
	since, first := r.gen, !r.listed
	r.mu.Unlock()
	boxes, err := r.rt.ListSandboxes(ctx)
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	var ctrs, myCtrs []*runtime.Container
	if first {
		if ctrs, err = r.rt.ListContainers(ctx, runtime.ContainerFilter{}); err != nil {
			return fmt.Errorf("list containers: %w", err)
		}
	} else {
		var mine []*runtime.Sandbox
		for _, s := range boxes {
			if s.Pod == key {
				mine = append(mine, s)
			}
		}
		if myCtrs, err = r.containersOf(ctx, mine); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	mine, listed := r.absorbListingLocked(boxes, ctrs, first, since, false, key)
	if first {
		myCtrs = listed
	}
	// This pass is the only one that changes key's objects; marks that
	// exit events left during the listing stay for the next reading.
	r.replaceLocked(key, mine, myCtrs)
	return nil
}

// readStale reads the given sandboxes of key by ID, and their containers.
func (r *Reconciler) readStale(ctx context.Context, key runtime.PodKey, ids []string) error {
	got, err := getEach(ctx, ids, r.rt.GetSandbox, "sandbox")
	if err != nil {
		return err
	}
	var boxes []*runtime.Sandbox
	for _, id := range slices.Sorted(maps.Keys(got)) {
		if s := got[id]; s != nil && s.Pod == key {
			boxes = append(boxes, s)
		}
	}
	ctrs, err := r.containersOf(ctx, boxes)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.replaceLocked(key, boxes, ctrs)
	r.mu.Unlock()
	return nil
}

// readContainers reads the given containers of key again, and their
// sandboxes: an exit may be the sandbox's death (a shared PID namespace
// dies with its pause), which must not stay hidden. It returns the sandbox
// of a container the cache did not know, if any: the caller reads the
// pod's sandboxes then.
func (r *Reconciler) readContainers(ctx context.Context, key runtime.PodKey, ids map[string]bool) (string, error) {
	r.mu.Lock()
	boxIDs := map[string]bool{}
	if e := r.obs[key]; e != nil {
		for id := range ids {
			if c := e.ctrs[id]; c != nil {
				boxIDs[c.SandboxID] = true
			}
		}
	}
	r.mu.Unlock()
	got, err := getEach(ctx, slices.Collect(maps.Keys(ids)), r.rt.GetContainer, "container")
	if err != nil {
		return "", err
	}
	for _, c := range got {
		if c != nil && c.Pod == key {
			boxIDs[c.SandboxID] = true
		}
	}
	boxes, err := getEach(ctx, slices.Collect(maps.Keys(boxIDs)), r.rt.GetSandbox, "sandbox")
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entryLocked(key)
	unknown := ""
	for id, s := range boxes {
		switch {
		case e.boxes[id] == nil:
			// Not one the cache knew: read the pod's sandboxes.
			unknown = id
		case s == nil || s.Pod != key:
			e.dropSandbox(id)
		default:
			e.boxes[id] = s
		}
	}
	for id, c := range got {
		switch {
		case c == nil:
			delete(e.ctrs, id)
		case c.Pod != key:
		case e.boxes[c.SandboxID] != nil:
			e.ctrs[id] = c
		default:
			unknown = c.SandboxID
		}
	}
	r.touchLocked(e)
	return unknown, nil
}

// getEach gets each object by ID, in ID order; one that is gone maps to
// nil.
func getEach[T any](ctx context.Context, ids []string, get func(context.Context, string) (*T, error), kind string) (map[string]*T, error) {
	out := make(map[string]*T, len(ids))
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		o, err := get(ctx, id)
		if err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return nil, fmt.Errorf("get %s %s: %w", kind, id, err)
		}
		out[id] = o
	}
	return out, nil
}

func (r *Reconciler) containersOf(ctx context.Context, boxes []*runtime.Sandbox) ([]*runtime.Container, error) {
	var out []*runtime.Container
	for _, s := range boxes {
		cs, err := r.rt.ListContainers(ctx, runtime.ContainerFilter{SandboxID: s.ID})
		if err != nil {
			return nil, fmt.Errorf("list containers of sandbox %s: %w", s.ID, err)
		}
		out = append(out, cs...)
	}
	return out, nil
}

// replaceLocked makes boxes and ctrs the whole truth about key.
func (r *Reconciler) replaceLocked(key runtime.PodKey, boxes []*runtime.Sandbox, ctrs []*runtime.Container) {
	e := r.entryLocked(key)
	clear(e.boxes)
	clear(e.ctrs)
	for _, s := range boxes {
		e.boxes[s.ID] = s
	}
	for _, c := range ctrs {
		if e.boxes[c.SandboxID] != nil {
			e.ctrs[c.ID] = c
		}
	}
	r.touchLocked(e)
}

// staleLocked makes key's next pass read its sandboxes (the known ones and
// those of a listing) and their containers, and queues it.
func (r *Reconciler) staleLocked(key runtime.PodKey, listed []*runtime.Sandbox) {
	e := r.entryLocked(key)
	for _, s := range listed {
		if e.boxes[s.ID] == nil {
			e.boxes[s.ID] = s
		}
	}
	e.stale = true
	r.touchLocked(e)
	r.q.Add(key)
}

// absorbListingLocked compares a complete listing of sandboxes, begun at
// generation since, with the cache, and of containers too when withCtrs is
// set. An entry whose sandboxes differ, or which changed during the listing
// (the listing may be older), is read again on a queued pass. With the
// containers listed, an entry that differs in anything is replaced by the
// listing instead, the fresher truth, and its pod queued; with all set (the
// full resync) every entry is replaced and every pod queued. Every pod that
// owns a sandbox is admitted. The pod skip is left to the caller, who gets
// its part of the listing.
func (r *Reconciler) absorbListingLocked(boxes []*runtime.Sandbox, ctrs []*runtime.Container, withCtrs bool, since uint64, all bool, skip runtime.PodKey) ([]*runtime.Sandbox, []*runtime.Container) {
	owner := map[string]runtime.PodKey{}
	byKey := map[runtime.PodKey][]*runtime.Sandbox{}
	for _, s := range boxes {
		owner[s.ID] = s.Pod
		byKey[s.Pod] = append(byKey[s.Pod], s)
		r.admitted[s.Pod] = true
	}
	ctrsBy := map[runtime.PodKey][]*runtime.Container{}
	for _, c := range ctrs {
		// Containers of a sandbox not listed are orphans: GC's, not a pod's.
		if key, ok := owner[c.SandboxID]; ok {
			ctrsBy[key] = append(ctrsBy[key], c)
		}
	}
	check := func(key runtime.PodKey) {
		e := r.obs[key]
		lb, lc := byKey[key], ctrsBy[key]
		switch {
		case key == skip:
		case e != nil && e.gen > since:
			r.staleLocked(key, lb)
		case e == nil && len(lb) == 0:
		case !withCtrs:
			if e == nil || !sameSandboxes(e.boxes, lb) {
				r.staleLocked(key, lb)
			}
		case e == nil || all || e.dirty() || r.unsure[key] || !sameSandboxes(e.boxes, lb) || !sameContainers(e.ctrs, lc):
			r.replaceLocked(key, lb, lc)
			e = r.obs[key]
			e.stale, e.reread = false, nil
			delete(r.unsure, key)
			r.q.Add(key)
		}
	}
	for key := range byKey {
		check(key)
	}
	for key := range r.obs {
		if _, ok := byKey[key]; !ok {
			check(key)
		}
	}
	r.listed = true
	return byKey[skip], ctrsBy[skip]
}

// sameSandboxes reports whether the cached sandboxes match a listing in
// everything a pass looks at.
func sameSandboxes(cached map[string]*runtime.Sandbox, listed []*runtime.Sandbox) bool {
	if len(cached) != len(listed) {
		return false
	}
	for _, s := range listed {
		c := cached[s.ID]
		if c == nil || c.State != s.State || c.Reason != s.Reason || c.PausePID != s.PausePID || c.IP != s.IP ||
			c.NetNSName != s.NetNSName || c.Hash() != s.Hash() || !c.CreatedAt.Equal(s.CreatedAt) {
			return false
		}
	}
	return true
}

// sameContainers reports whether the cached containers match a listing in
// everything a pass or a status looks at.
func sameContainers(cached map[string]*runtime.Container, listed []*runtime.Container) bool {
	if len(cached) != len(listed) {
		return false
	}
	for _, l := range listed {
		c := cached[l.ID]
		if c == nil || c.State != l.State || c.PID != l.PID || c.ExitCode != l.ExitCode || c.Signal != l.Signal ||
			c.Reason != l.Reason || c.Message != l.Message || c.Attempt != l.Attempt || c.SandboxID != l.SandboxID ||
			c.ImageID != l.ImageID || c.Hash() != l.Hash() || !c.StartedAt.Equal(l.StartedAt) || !c.FinishedAt.Equal(l.FinishedAt) {
			return false
		}
	}
	return true
}

// The results of the reconciler's own steps.

// cacheUpdate applies a change to key's entry.
func (r *Reconciler) cacheUpdate(key runtime.PodKey, change func(e *podObs)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entryLocked(key)
	change(e)
	r.touchLocked(e)
}

func (r *Reconciler) cacheSandbox(key runtime.PodKey, s *runtime.Sandbox) {
	r.cacheUpdate(key, func(e *podObs) { e.boxes[s.ID] = s })
}

func (r *Reconciler) cacheDropSandbox(key runtime.PodKey, id string) {
	r.cacheUpdate(key, func(e *podObs) { e.dropSandbox(id) })
}

func (r *Reconciler) cacheContainer(key runtime.PodKey, c *runtime.Container) {
	r.cacheUpdate(key, func(e *podObs) {
		if e.boxes[c.SandboxID] == nil {
			e.stale = true // a sandbox the cache missed: read the pod
		} else {
			e.ctrs[c.ID] = c
		}
	})
}

func (r *Reconciler) cacheDropContainer(key runtime.PodKey, id string) {
	r.cacheUpdate(key, func(e *podObs) {
		delete(e.ctrs, id)
		delete(e.reread, id)
	})
}

// dropSandbox forgets a sandbox and its containers.
func (e *podObs) dropSandbox(id string) {
	delete(e.boxes, id)
	for cid, c := range e.ctrs {
		if c.SandboxID == id {
			delete(e.ctrs, cid)
			delete(e.reread, cid)
		}
	}
}

// cacheReread marks a container whose new state the call that changed it
// does not return (a stop, an exit event).
func (r *Reconciler) cacheReread(key runtime.PodKey, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rereadLocked(key, id)
}

func (r *Reconciler) rereadLocked(key runtime.PodKey, id string) {
	e := r.obs[key]
	if e == nil {
		// A pod the cache does not know: list everything for it.
		r.unsure[key] = true
		e = r.entryLocked(key)
	}
	if e.reread == nil {
		e.reread = map[string]bool{}
	}
	e.reread[id] = true
	r.touchLocked(e)
}

// cacheUnsure makes key's next read list every sandbox: a step failed
// midway and may have left a half-made one.
func (r *Reconciler) cacheUnsure(key runtime.PodKey) {
	r.cacheUpdate(key, func(*podObs) { r.unsure[key] = true })
}

// noteExit handles a runtime exit event: the container is read again on the
// pod's next pass, which it queues.
func (r *Reconciler) noteExit(ev runtime.ExitEvent) {
	r.cacheReread(ev.Pod, ev.ContainerID)
	r.q.Add(ev.Pod)
}

func comparePodKeys(a, b runtime.PodKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}
