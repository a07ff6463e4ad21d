package reconcile

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// DefaultMaxPods is kubelet's default --max-pods.
const DefaultMaxPods = 110

// Admission (issue 12). At most MaxPods pods own a sandbox at once; the
// others wait, owning nothing, with phase Pending and reason OutOfCapacity.
//
// A pod holds its place from admission until everything it owned is gone,
// so a pod being removed still counts. Pods the runtime already has (after
// an agent restart) always keep their place, even over the limit: running
// workloads are never stopped for it. Free places go to waiting pods in
// AdmissionOrder, at once when a place frees (not at the next resync).

// AdmissionOrder is the order in which waiting pods get free places: the
// creation time of the manifest (DesiredPod.Created; unknown first), then
// namespace and name.
func AdmissionOrder(a, b *DesiredPod) int {
	return cmp.Or(a.Created.Compare(b.Created), comparePodKeys(a.Key, b.Key))
}

// admitLocked gives free places to waiting pods in admission order and
// returns the pods to queue: those it admitted, and those whose place in
// line changed (their status says it). Before the first complete listing
// of the runtime it admits nothing: the pods that already run must be
// counted first. The caller holds r.mu.
func (r *Reconciler) admitLocked() []runtime.PodKey {
	before := maps.Clone(r.waitPos)
	clear(r.waitPos)
	if !r.listed {
		return nil
	}
	var waiting []*DesiredPod
	for k, d := range r.desired {
		if !r.admitted[k] {
			waiting = append(waiting, d)
		}
	}
	if len(waiting) == 0 {
		return nil
	}
	slices.SortFunc(waiting, AdmissionOrder)
	var out []runtime.PodKey
	for _, d := range waiting {
		if r.cfg.MaxPods < 0 || len(r.admitted) < r.cfg.MaxPods {
			r.admitted[d.Key] = true
			out = append(out, d.Key)
			continue
		}
		r.waitPos[d.Key] = len(r.waitPos) + 1
		if before[d.Key] != r.waitPos[d.Key] {
			out = append(out, d.Key)
		}
	}
	return out
}

// admit reports whether key holds a place, giving it one if one is free
// and it is next in line; otherwise it returns the wait to report.
func (r *Reconciler) admit(key runtime.PodKey) (Wait, bool) {
	r.mu.Lock()
	if r.admitted[key] {
		r.mu.Unlock()
		return Wait{}, true
	}
	others := r.admitLocked()
	ok := r.admitted[key]
	pos := r.waitPos[key]
	r.mu.Unlock()
	for _, k := range others {
		if k != key {
			r.q.Add(k)
		}
	}
	if ok {
		return Wait{}, true
	}
	return Wait{Reason: "OutOfCapacity", Message: fmt.Sprintf(
		"the node runs its maximum of %d pods (max-pods); this pod is number %d in line and starts when a place frees",
		r.cfg.MaxPods, pos)}, false
}

// recordWaiting is the status and event of a pod waiting for a place: it
// owns nothing, so it is Pending and its containers wait.
func (r *Reconciler) recordWaiting(key runtime.PodKey, d *DesiredPod, w Wait) {
	r.mu.Lock()
	m := r.memLocked(key)
	st := buildStatus(d, ObservedPod{}, nil, m, r.cfg.Now(), r.probing())
	st.Phase, st.Reason, st.Message = PhasePending, w.Reason, w.Message
	for _, list := range [][]ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses} {
		for i := range list {
			list[i].State = ContainerState{Waiting: &StateWaiting{Reason: w.Reason}}
		}
	}
	first := !m.outOfCapacity
	m.outOfCapacity = true
	r.status[key] = st
	r.mu.Unlock()
	if first {
		msg, _, _ := strings.Cut(w.Message, ";")
		r.events.Record(EventWarning, w.Reason, podRef(key), msg+"; the pod waits for a place")
	}
	r.notifyProber(key, nil, nil)
}
