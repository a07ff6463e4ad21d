package reconcile

import (
	"cmp"
	"slices"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Pods returns every pod the agent knows (desired, or still present in the
// runtime), sorted by namespace and name, in Kubernetes' Pod shape.
func (r *Reconciler) Pods() []Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := map[runtime.PodKey]bool{}
	for k := range r.desired {
		keys[k] = true
	}
	for k := range r.status {
		keys[k] = true
	}
	out := make([]Pod, 0, len(keys))
	for k := range keys {
		out = append(out, r.podLocked(k))
	}
	slices.SortFunc(out, func(a, b Pod) int {
		return cmp.Or(cmp.Compare(a.Metadata.Namespace, b.Metadata.Namespace), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	return out
}

// Pod returns one pod, and whether the agent knows it.
func (r *Reconciler) Pod(key runtime.PodKey) (Pod, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, d := r.desired[key]
	_, s := r.status[key]
	if !d && !s {
		return Pod{}, false
	}
	return r.podLocked(key), true
}

func (r *Reconciler) podLocked(k runtime.PodKey) Pod {
	p := Pod{APIVersion: "v1", Kind: "Pod", Metadata: ObjectMeta{Name: k.Name, Namespace: k.Namespace}}
	st, ok := r.status[k]
	d := r.desired[k]
	if !ok {
		st = PodStatus{Phase: PhasePending}
		if d != nil {
			st.Pelagos.SourceFile = d.Source
			for _, c := range d.Init {
				st.InitContainerStatuses = append(st.InitContainerStatuses, ContainerStatus{Name: c.Name, Image: c.Config.Image,
					State: ContainerState{Waiting: &StateWaiting{Reason: "PodInitializing"}}})
			}
			for _, c := range d.Containers {
				st.ContainerStatuses = append(st.ContainerStatuses, ContainerStatus{Name: c.Name, Image: c.Config.Image,
					State: ContainerState{Waiting: &StateWaiting{Reason: "ContainerCreating"}}})
			}
		}
		if m := r.mem[k]; m != nil {
			st.Pelagos.LastError = m.lastErr
			st.Pelagos.Stale = m.stale
		}
	} else if m := r.mem[k]; m != nil {
		// Manifest errors may arrive between passes.
		st.Pelagos.LastError = m.lastErr
		st.Pelagos.Stale = m.stale
	}
	if d != nil {
		st.QOSClass = d.QOSClass
	}
	p.Status = st
	if st.StartTime != nil {
		t := *st.StartTime
		p.Metadata.CreationTimestamp = &t
	}
	if d != nil {
		if v, ok := d.Manifest.(interface {
			View() (map[string]string, map[string]string, any)
		}); ok {
			p.Metadata.Labels, p.Metadata.Annotations, p.Spec = v.View()
		}
		if p.Metadata.UID == "" {
			p.Metadata.UID = d.Sandbox.UID
		}
		if d.Owner != nil {
			p.Metadata.OwnerReferences = []OwnerRef{*d.Owner}
		}
	}
	return p
}

// FileErrors returns the errors of the last load that belong to no pod.
func (r *Reconciler) FileErrors() []FileError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.fileErrs)
}

// DirError is why the manifest directory could not be read, or nil.
func (r *Reconciler) DirError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dirErr
}
