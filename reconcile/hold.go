package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Held pods (DesiredPod.Hold). A pod of a manifest directory shared by
// many nodes that is meant for another node, or a workload's pod that its
// controller holds back, is desired but owns nothing: no sandbox, no
// place among MaxPods. A pass removes what it still has (a label changed
// by a restart with new flags, a manifest edited to another node) and
// then shows it Pending with the hold's reason and message, the way an
// OutOfCapacity pod is shown. When the hold goes, the pod is an ordinary
// desired pod again and starts.

// syncHeld is Sync for a held pod.
func (r *Reconciler) syncHeld(ctx context.Context, key runtime.PodKey, d *DesiredPod, obs ObservedPod, start time.Time) (Plan, error) {
	plan := Diff(d, obs, r.diffOptions(key))
	plan.Key = key
	if r.cfg.DryRun {
		fmt.Fprint(r.cfg.DryRunOut, plan.String())
		r.recordHeld(key, d, obs, &plan)
		r.metrics.Pass(time.Since(start), nil)
		return plan, nil
	}
	var err error
	if !plan.Empty() {
		r.mu.Lock()
		r.status[key] = buildStatus(nil, obs, &plan, r.mem[key], r.cfg.Now(), r.probing())
		r.mu.Unlock()
		// As a removal: the pod's hooks and grace come from what runs.
		err = r.apply(ctx, nil, obs, &plan)
		if obs2, oerr := r.observe(ctx, key); oerr == nil {
			obs = obs2
		}
	}
	r.recordHeld(key, d, obs, &plan)
	r.metrics.Pass(time.Since(start), err)
	if err != nil {
		r.log.Warn().Str("pod", key.String()).Err(err).Msg("removing a held pod failed")
	}
	return plan, err
}

// recordHeld stores the status of a held pod: Terminating while it still
// owns something, then Pending with the hold's reason, its place among
// MaxPods given up. The first pass of a hold (or of a new message) records
// an event: Normal for a pod meant for another node, which is no error.
func (r *Reconciler) recordHeld(key runtime.PodKey, d *DesiredPod, obs ObservedPod, plan *Plan) {
	h := d.Hold
	r.mu.Lock()
	m := r.memLocked(key)
	if len(obs.Sandboxes) > 0 || len(obs.Containers) > 0 {
		r.status[key] = buildStatus(nil, obs, plan, m, r.cfg.Now(), r.probing())
		r.mu.Unlock()
		r.notifyProber(key, nil, nil)
		return
	}
	st := buildStatus(d, ObservedPod{}, nil, m, r.cfg.Now(), r.probing())
	st.Phase, st.Reason, st.Message = PhasePending, h.Reason, h.Message
	for _, list := range [][]ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses} {
		for i := range list {
			list[i].State = ContainerState{Waiting: &StateWaiting{Reason: h.Reason}}
			list[i].LastState = ContainerState{}
			list[i].RestartCount = 0
		}
	}
	st.Conditions = []PodCondition{{Type: "PodScheduled", Status: "False", Reason: h.Reason}}
	first := m.held != h.Reason+": "+h.Message
	m.held = h.Reason + ": " + h.Message
	r.status[key] = st
	var admitted []runtime.PodKey
	if r.admitted[key] {
		delete(r.admitted, key)
		admitted = r.admitLocked()
	}
	delete(r.changedAt, key)
	r.mu.Unlock()
	for _, k := range admitted {
		r.q.Add(k)
	}
	if first {
		typ := EventNormal
		if h.Reason != ReasonNodeMismatch {
			typ = EventWarning
		}
		r.events.Record(typ, h.Reason, podRef(key), h.Message)
	}
	r.notifyProber(key, nil, nil)
}
