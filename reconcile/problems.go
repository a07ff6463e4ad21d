package reconcile

import (
	"fmt"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// maxSetAside bounds the set-aside records a pod's status lists.
const maxSetAside = 4

// takeProblems reports the records the runtime set aside since the last
// call (runtime.ProblemReporter): a Warning event each — on the pod when
// the record still names it, else on the node — and, for a pod, a line in
// its status until it runs again from a fresh sandbox. The pod is then read
// in full and reconciled as any pod whose objects went away: a new sandbox.
func (r *Reconciler) takeProblems() {
	pr, ok := r.rt.(runtime.ProblemReporter)
	if !ok {
		return
	}
	probs := pr.TakeProblems()
	if len(probs) == 0 {
		return
	}
	for _, p := range probs {
		kind := p.Kind
		if kind == "" {
			kind = "record"
		}
		reason := strings.ToUpper(kind[:1]) + kind[1:] + "RecordCorrupt"
		msg := fmt.Sprintf("%s record %s could not be used (%s); it was set aside as %s and what it named is cleaned up",
			kind, p.ID, p.Reason, p.Path)
		obj := ObjectRef{Kind: "Node", Name: r.cfg.NodeName}
		if p.Pod != nil {
			key := *p.Pod
			obj = podRef(key)
			msg += "; the pod is reconciled from scratch"
			r.mu.Lock()
			m := r.memLocked(key)
			m.setAside = append(m.setAside, p)
			if len(m.setAside) > maxSetAside {
				m.setAside = m.setAside[len(m.setAside)-maxSetAside:]
			}
			r.unsure[key] = true
			r.touchLocked(r.entryLocked(key))
			r.mu.Unlock()
			r.q.Add(key)
		}
		r.events.Record(EventWarning, reason, obj, msg)
	}
}
