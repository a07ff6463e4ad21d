package fake

import (
	"fmt"
	"maps"
	"slices"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// corruption is damage done to a record that the runtime has not read yet.
type corruption struct {
	reason   string
	podKnown bool
}

// CorruptRecord damages the record of a sandbox or container (kind
// "sandbox" or "container"), as a truncated or garbage file would. Nothing
// changes until the runtime next reads it (a listing, or a Get of that
// object): then the record is set aside, reported through TakeProblems, and
// the object leaves the runtime's view. What the record named is cleaned
// up, as runtime/linux's GC does from the live kernel objects: a sandbox
// goes with its containers. podKnown false models a record too damaged to
// tell whose it was.
func (f *Runtime) CorruptRecord(kind, id, reason string, podKnown bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch kind {
	case "sandbox":
		if _, ok := f.sandboxes[id]; !ok {
			return fmt.Errorf("corrupt sandbox record %s: %w", id, runtime.ErrNotFound)
		}
	case "container":
		if _, ok := f.containers[id]; !ok {
			return fmt.Errorf("corrupt container record %s: %w", id, runtime.ErrNotFound)
		}
	default:
		return fmt.Errorf("corrupt record of kind %q: want sandbox or container: %w", kind, runtime.ErrInvalidConfig)
	}
	f.corrupt[kind+"/"+id] = corruption{reason: reason, podKnown: podKnown}
	return nil
}

// TakeProblems implements runtime.ProblemReporter.
func (f *Runtime) TakeProblems() []runtime.RecordProblem {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.problems
	f.problems = nil
	return out
}

// findCorruption sets aside the damaged records of kind a read meets: the
// one named id, or every one when id is empty (a listing). The caller
// holds f.mu.
func (f *Runtime) findCorruption(kind, id string) {
	for _, k := range slices.Sorted(maps.Keys(f.corrupt)) {
		if k != kind+"/"+id && (id != "" || k[:len(kind)+1] != kind+"/") {
			continue
		}
		damage := f.corrupt[k]
		delete(f.corrupt, k)
		oid := k[len(kind)+1:]
		var pod *runtime.PodKey
		switch kind {
		case "sandbox":
			sb := f.sandboxes[oid]
			if sb == nil {
				continue
			}
			p := sb.Pod
			pod = &p
			for cid, c := range f.containers {
				if c.SandboxID == oid {
					delete(f.containers, cid)
				}
			}
			delete(f.sandboxes, oid)
			delete(f.podRes, oid)
		case "container":
			c := f.containers[oid]
			if c == nil {
				continue
			}
			p := c.Pod
			pod = &p
			delete(f.containers, oid)
		}
		if !damage.podKnown {
			pod = nil
		}
		f.problems = append(f.problems, runtime.RecordProblem{Kind: kind, ID: oid, Pod: pod,
			Path: "/fake/run/records/" + oid + "." + kind + ".json.corrupt", Reason: damage.reason, Time: f.now()})
	}
}
