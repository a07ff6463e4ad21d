package workload

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// setState is the controller of a StatefulSet: pods <name>-<ordinal>,
// each with the template revision it runs.
//
// OrderedReady (the default) makes pod N only when pods 0..N-1 run and
// are ready, and removes pods from the highest ordinal down, each one only
// once the one before it is gone; Parallel makes and removes them all at
// once. A template change updates the pods in place (same names) from the
// highest ordinal down to the partition, at most maxUnavailable (default
// 1) not running and ready at a time, as Kubernetes' RollingUpdate does.
type setState struct {
	revs      map[string]string    // pod -> the revision it runs
	templates map[string]*spec.Pod // revision -> the template, as a pod
	made      map[string]int       // pod -> ordinal, for the pods made
	removing  map[string]bool      // pods removed and not yet gone
	readiness
	current string // the revision the pods had before the update began
}

func (st *setState) eval(w spec.Workload, in *input) *result {
	sts := w.(*spec.StatefulSet)
	s := &sts.Spec
	if st.revs == nil {
		st.revs, st.templates, st.made, st.removing = map[string]string{}, map[string]*spec.Pod{},
			map[string]int{}, map[string]bool{}
	}
	res := &result{}
	upd := templateHash(w)
	st.templates[upd] = spec.TemplatePod(w)
	n, start := int(*s.Replicas), 0
	if s.Ordinals != nil {
		start = int(s.Ordinals.Start)
	}
	name := func(ord int) string { return sts.Metadata.Name + "-" + strconv.Itoa(ord) }
	if in.fresh {
		// A restarted agent adopts the pods the runtime still has, so it
		// does not tear down a set that runs to make it again in order.
		for ord := start; ord < start+n; ord++ {
			if in.exists(name(ord)) {
				st.made[name(ord)], st.revs[name(ord)] = ord, upd
			}
		}
	}
	if st.current == "" {
		st.current = upd
	}
	ordered := s.PodManagementPolicy != "Parallel"

	st.begin()
	look := func(pod string) podState { return st.look(in, pod) }
	healthy := func(pod string) bool { ps := look(pod); return ps.running && ps.ready }
	for pod := range st.removing {
		if !look(pod).known {
			delete(st.removing, pod)
		}
	}

	// Scale down: the highest ordinals beyond the replicas.
	var extra []string
	for pod, ord := range st.made {
		if ord < start || ord >= start+n {
			extra = append(extra, pod)
		}
	}
	slices.SortFunc(extra, func(a, b string) int { return cmp.Compare(st.made[b], st.made[a]) })
	for _, pod := range extra {
		if ordered && len(st.removing) > 0 {
			break // one at a time, each once the last is gone
		}
		delete(st.made, pod)
		delete(st.revs, pod)
		st.removing[pod] = true
		res.events = append(res.events, event{reconcile.EventNormal, "SuccessfulDelete", "delete Pod " + pod + " in StatefulSet " + sts.Metadata.Name + " successful"})
	}

	// Scale up, in order.
	if len(st.removing) == 0 || !ordered {
		partition := 0
		if ru := s.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
			partition = int(*ru.Partition)
		}
		for ord := start; ord < start+n; ord++ {
			pod := name(ord)
			if _, ok := st.made[pod]; ok {
				if ordered && !healthy(pod) {
					break
				}
				continue
			}
			rev := upd
			if ord-start < partition && st.templates[st.current] != nil {
				rev = st.current
			}
			st.made[pod], st.revs[pod] = ord, rev
			res.events = append(res.events, event{reconcile.EventNormal, "SuccessfulCreate", "create Pod " + pod + " in StatefulSet " + sts.Metadata.Name + " successful"})
			if ordered {
				break // the next one once this one runs and is ready
			}
		}
	}

	// Rolling update: from the highest ordinal down to the partition.
	if len(st.made) == n && len(st.removing) == 0 && s.UpdateStrategy.Type == "RollingUpdate" {
		ru := s.UpdateStrategy.RollingUpdate
		partition, maxUnavail := 0, 1
		if ru != nil && ru.Partition != nil {
			partition = int(*ru.Partition)
		}
		if ru != nil && ru.MaxUnavailable != nil {
			maxUnavail, _ = spec.ScaledValue(*ru.MaxUnavailable, n, false)
			maxUnavail = max(maxUnavail, 1)
		}
		unhealthy := 0
		for pod := range st.made {
			if !healthy(pod) {
				unhealthy++
			}
		}
		for ord := start + n - 1; ord >= start+partition; ord-- {
			pod := name(ord)
			if st.revs[pod] == upd {
				continue
			}
			if unhealthy >= maxUnavail {
				break
			}
			st.revs[pod] = upd
			unhealthy++
			res.events = append(res.events, event{reconcile.EventNormal, "SuccessfulUpdate", fmt.Sprintf("update Pod %s in StatefulSet %s to revision %s", pod, sts.Metadata.Name, upd)})
		}
	}

	// The pods, each from its revision's template.
	minReady := seconds(s.MinReadySeconds)
	pods := slices.Sorted(maps.Keys(st.made))
	slices.SortFunc(pods, func(a, b string) int { return cmp.Compare(st.made[a], st.made[b]) })
	used := map[string]bool{}
	ready, avail, updated, current := 0, 0, 0, 0
	for _, pod := range pods {
		rev := st.revs[pod]
		if st.templates[rev] == nil {
			rev = upd
		}
		used[rev] = true
		res.pods = append(res.pods, genPod{name: pod, pod: stsPod(st.templates[rev], sts, pod, st.made[pod], rev)})
		if look(pod).ready {
			ready++
		}
		if st.available(in, pod, minReady) {
			avail++
		}
		res.wake = earliest(res.wake, st.availableAt(in, pod, minReady))
		if rev == upd {
			updated++
		}
		if rev == st.current {
			current++
		}
	}
	if updated == len(pods) && len(pods) == n {
		st.current = upd
		current = updated
	}
	for rev := range st.templates {
		if !used[rev] && rev != upd && rev != st.current {
			delete(st.templates, rev)
		}
	}
	res.status = StatefulSetStatus{ObservedGeneration: 1, Replicas: int32(len(pods)), ReadyReplicas: int32(ready),
		CurrentReplicas: int32(current), UpdatedReplicas: int32(updated), AvailableReplicas: int32(avail),
		CurrentRevision: sts.Metadata.Name + "-" + st.current, UpdateRevision: sts.Metadata.Name + "-" + upd}
	return res
}

// stsPod is the StatefulSet's pod at ordinal ord of template revision rev:
// named <set>-<ord>, its host name its name and its subdomain the set's
// serviceName, as Kubernetes makes them.
func stsPod(tmpl *spec.Pod, sts *spec.StatefulSet, name string, ord int, rev string) *spec.Pod {
	p := tmpl.DeepCopy()
	p.Metadata.Name = name
	labels := maps.Clone(p.Metadata.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels["controller-revision-hash"] = sts.Metadata.Name + "-" + rev
	labels["statefulset.kubernetes.io/pod-name"] = name
	labels["apps.kubernetes.io/pod-index"] = strconv.Itoa(ord)
	p.Metadata.Labels = labels
	if !p.Spec.HostNetwork {
		if p.Spec.Hostname == "" {
			p.Spec.Hostname = name
		}
		if p.Spec.Subdomain == "" {
			p.Spec.Subdomain = sts.Spec.ServiceName
		}
	}
	return p
}
