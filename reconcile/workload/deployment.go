package workload

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// rollout is the controller of a Deployment (replicas pods) and of a
// DaemonSet (one pod, if its template is meant for this node): the pods of
// the current template, the pods of earlier templates that a rolling
// update still keeps, and how far the update got.
//
// A template change (one that would restart something: see templateHash)
// starts a rollout. RollingUpdate follows Kubernetes' Deployment
// controller with maxSurge pods above replicas and maxUnavailable below:
// new pods are added while the total stays within replicas+maxSurge, old
// ones removed (unavailable ones first) while at least
// replicas-maxUnavailable stay available. Recreate removes every old pod
// and waits for it to be gone before creating new ones. A pod is
// available once it has been ready for minReadySeconds.
//
// One node cannot run two pods that publish the same hostPort: a replica
// whose hostPort another of the workload's pods holds is held with reason
// HostPortConflict. During a rolling update that would leave the new pod
// waiting for the old one for ever (maxUnavailable 0 cannot be kept on
// one node), so then the old pod holding the port goes first.
type rollout struct {
	daemon bool

	hash     string               // the current template
	newCount int                  // current-template pods wanted now
	lastNew  int                  // newCount at the last evaluation, for events
	cur      map[string]*spec.Pod // the current template's pods, as last made
	old      map[string]*genPod   // earlier templates' pods still kept
	gone     map[string]*genPod   // pods removed and not yet gone: they hold their hostPorts
	readiness
	progress time.Time // the last time the rollout moved
	avail    int       // available pods at the last evaluation
	mismatch string    // why a DaemonSet's template is not for this node
}

// rolloutParams are what a Deployment and a DaemonSet say about it.
type rolloutParams struct {
	replicas        int
	recreate        bool
	surge, unavail  int
	minReady        time.Duration
	progressTimeout time.Duration
	name            func(hash string, i int) string
	labels          func(hash string) map[string]string
	mismatch        string // a DaemonSet not meant for this node: why
}

func (r *rollout) params(w spec.Workload, in *input) rolloutParams {
	k := in.key
	switch w := w.(type) {
	case *spec.Deployment:
		s := &w.Spec
		p := rolloutParams{replicas: int(*s.Replicas), minReady: seconds(s.MinReadySeconds),
			progressTimeout: seconds(*s.ProgressDeadlineSeconds)}
		if s.Strategy.Type == spec.RecreateDeploymentStrategyType {
			p.recreate = true
		} else {
			p.surge, _ = spec.ScaledValue(*s.Strategy.RollingUpdate.MaxSurge, p.replicas, true)
			p.unavail, _ = spec.ScaledValue(*s.Strategy.RollingUpdate.MaxUnavailable, p.replicas, false)
		}
		p.name = func(hash string, i int) string {
			return generatedName(k.Name+"-"+hash+"-", suffix(k.Namespace, k.Name, hash, strconv.Itoa(i)))
		}
		p.labels = func(hash string) map[string]string { return map[string]string{"pod-template-hash": hash} }
		return p
	case *spec.DaemonSet:
		s := &w.Spec
		p := rolloutParams{replicas: 1, minReady: seconds(s.MinReadySeconds)}
		ru := s.UpdateStrategy.RollingUpdate
		p.surge, _ = spec.ScaledValue(*ru.MaxSurge, 1, true)
		p.unavail, _ = spec.ScaledValue(*ru.MaxUnavailable, 1, true)
		if why := in.node(&daemonTemplate(w).Spec); why != "" {
			p.replicas, p.mismatch = 0, why
		}
		p.name = func(hash string, _ int) string {
			return generatedName(k.Name+"-", suffix(k.Namespace, k.Name, hash))
		}
		p.labels = func(hash string) map[string]string {
			return map[string]string{"controller-revision-hash": hash, "pod-template-generation": "1"}
		}
		return p
	}
	panic(fmt.Sprintf("workload: rollout of %T", w))
}

func seconds(s int32) time.Duration { return time.Duration(s) * time.Second }

func (r *rollout) eval(w spec.Workload, in *input) *result {
	p := r.params(w, in)
	if p.surge == 0 && p.unavail == 0 {
		p.unavail = 1 // Kubernetes' rule: a rollout must be able to move
	}
	if r.old == nil {
		r.old, r.gone, r.cur = map[string]*genPod{}, map[string]*genPod{}, map[string]*spec.Pod{}
	}
	res := &result{}
	hash := templateHash(w)
	switch {
	case r.hash == "":
		// First sight (or a restart of the agent): adopt what the current
		// template names.
		r.newCount, r.progress = p.replicas, in.now
	case r.hash != hash:
		// The pods of the template that was current keep the spec they
		// were made with until the rollout removes them.
		for name, pod := range r.cur {
			r.old[name] = &genPod{name: name, pod: pod}
		}
		r.newCount, r.lastNew, r.progress = 0, 0, in.now
		res.events = append(res.events, event{reconcile.EventNormal, "RolloutStarted", "template changed: rolling out " + hash})
	}
	r.hash = hash
	if r.daemon && p.mismatch != r.mismatch {
		r.mismatch = p.mismatch
		if p.mismatch != "" {
			res.events = append(res.events, event{reconcile.EventNormal, reconcile.ReasonNodeMismatch,
				"the DaemonSet runs no pod here: its template is not meant for this node: " + p.mismatch})
		}
	}

	r.begin()
	look := func(name string) podState { return r.look(in, name) }
	available := func(name string) bool { return r.available(in, name, p.minReady) }
	remove := func(name string, why string) {
		g := r.old[name]
		delete(r.old, name)
		r.gone[name] = g
		r.progress = in.now
		res.events = append(res.events, event{reconcile.EventNormal, "SuccessfulDelete", "Deleted pod: " + name + " (" + why + ")"})
	}
	for name := range r.gone {
		if !look(name).known {
			delete(r.gone, name)
		}
	}

	// Pods not meant for this node own nothing: there is no availability
	// to keep, so the old ones go at once.
	notHere := in.node(&spec.TemplatePod(w).Spec) != ""
	if p.recreate || notHere {
		why := "Recreate: every old pod goes first"
		if notHere {
			why = "the template is not meant for this node"
		}
		for _, name := range slices.Sorted(maps.Keys(r.old)) {
			remove(name, why)
		}
		if len(r.gone) == 0 || notHere {
			r.newCount = p.replicas
		}
	} else {
		// Scale the new pods up within replicas + maxSurge.
		if len(r.old) == 0 {
			r.newCount = p.replicas
		} else if total := len(r.old) + r.newCount; total < p.replicas+p.surge {
			r.newCount += min(p.replicas+p.surge-total, p.replicas-r.newCount)
		}
		r.newCount = min(r.newCount, p.replicas)
	}

	if r.newCount != r.lastNew {
		verb := "up"
		if r.newCount < r.lastNew {
			verb = "down"
		}
		res.events = append(res.events, event{reconcile.EventNormal, "ScalingReplicaSet",
			fmt.Sprintf("Scaled %s the pods of template %s from %d to %d", verb, hash, r.lastNew, r.newCount)})
		r.lastNew = r.newCount
	}
	newNames := make([]string, r.newCount)
	cur := map[string]*spec.Pod{}
	for i := range newNames {
		newNames[i] = p.name(hash, i)
		cur[newNames[i]] = r.podOf(w, p, hash, newNames[i])
	}
	r.cur = cur
	if !p.recreate && len(r.old) > 0 {
		newAvail := 0
		for _, n := range newNames {
			if available(n) {
				newAvail++
			}
		}
		minAvail := p.replicas - p.unavail
		// First the old pods that are not available anyway, then
		// available ones while enough stay available.
		budget := len(r.old) + r.newCount - minAvail - (r.newCount - newAvail)
		oldNames := slices.Sorted(maps.Keys(r.old))
		slices.SortStableFunc(oldNames, func(a, b string) int { return cmp.Compare(b2i(available(a)), b2i(available(b))) })
		for _, name := range oldNames {
			if budget <= 0 || available(name) {
				break
			}
			remove(name, "rolling update: an old pod that is not available")
			budget--
		}
		availOld := 0
		for name := range r.old {
			if available(name) {
				availOld++
			}
		}
		for _, name := range slices.Backward(slices.Sorted(maps.Keys(r.old))) {
			if newAvail+availOld <= minAvail {
				break
			}
			remove(name, "rolling update")
			availOld--
		}
	}

	// The pods, old first (they hold their hostPorts), then the new ones;
	// a pod whose hostPort an earlier one holds waits.
	var pods []genPod
	for _, name := range slices.Sorted(maps.Keys(r.old)) {
		pods = append(pods, *r.old[name])
	}
	for _, name := range newNames {
		pods = append(pods, genPod{name: name, pod: cur[name]})
	}
	holders := portHolders(r.gone)
	blockedByOld := ""
	for i := range pods {
		g := &pods[i]
		if in.node(&g.pod.Spec) != "" {
			continue // held as NodeMismatch by the translator: it owns no port
		}
		if holder, port := holders.claim(g.name, g.pod); holder != "" {
			what := "replica"
			if r.old[holder] != nil || r.gone[holder] != nil {
				what = "pod of the previous template"
				if r.old[holder] != nil && blockedByOld == "" {
					blockedByOld = holder
				}
			}
			g.hold = &reconcile.Hold{Reason: reconcile.ReasonHostPortConflict, Message: fmt.Sprintf(
				"hostPort %s is held by %s %s: one node runs one pod per hostPort; run one replica here, or drop the hostPort", port, what, holder)}
		}
	}
	if blockedByOld != "" && !p.recreate && r.old[blockedByOld] != nil {
		// maxUnavailable cannot be kept with a hostPort on one node: the
		// old pod goes, then its replacement starts.
		remove(blockedByOld, "its hostPort is needed by its replacement; one node cannot run both")
		for i := range pods {
			if pods[i].name == blockedByOld {
				pods = slices.Delete(pods, i, i+1)
				break
			}
		}
	}
	res.pods = pods

	// Status.
	ready, avail, updatedAvail := 0, 0, 0
	for _, g := range pods {
		if look(g.name).ready {
			ready++
		}
		if available(g.name) {
			avail++
			if slices.Contains(newNames, g.name) {
				updatedAvail++
			}
		}
	}
	if avail != r.avail {
		r.avail, r.progress = avail, in.now
	}
	complete := len(r.old) == 0 && len(r.gone) == 0 && r.newCount == p.replicas && updatedAvail == p.replicas
	// Pods becoming available after minReadySeconds need a look then.
	for _, g := range pods {
		res.wake = earliest(res.wake, r.availableAt(in, g.name, p.minReady))
	}
	if r.daemon {
		res.status = DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: int32(p.replicas),
			CurrentNumberScheduled: int32(len(pods)), NumberReady: int32(ready), UpdatedNumberScheduled: int32(r.newCount),
			NumberAvailable: int32(avail), NumberUnavailable: int32(max(0, p.replicas-avail))}
		return res
	}
	st := DeploymentStatus{ObservedGeneration: 1, Replicas: int32(len(pods)), UpdatedReplicas: int32(r.newCount),
		ReadyReplicas: int32(ready), AvailableReplicas: int32(avail), UnavailableReplicas: int32(max(0, len(pods)-avail))}
	okAvail := avail >= p.replicas-p.unavail
	st.Conditions = append(st.Conditions, condition("Available", okAvail, map[bool]string{true: "MinimumReplicasAvailable",
		false: "MinimumReplicasUnavailable"}[okAvail], map[bool]string{true: "Deployment has minimum availability.",
		false: "Deployment does not have minimum availability."}[okAvail], r.progress))
	switch {
	case complete:
		st.Conditions = append(st.Conditions, condition("Progressing", true, "NewReplicaSetAvailable", "the pods of template "+hash+" are available", r.progress))
	case in.now.Sub(r.progress) > p.progressTimeout:
		st.Conditions = append(st.Conditions, condition("Progressing", false, "ProgressDeadlineExceeded",
			fmt.Sprintf("the rollout of template %s has made no progress for %s", hash, p.progressTimeout), r.progress))
	default:
		st.Conditions = append(st.Conditions, condition("Progressing", true, "ReplicaSetUpdated", "rolling out template "+hash, r.progress))
		res.wake = earliest(res.wake, r.progress.Add(p.progressTimeout+time.Second))
	}
	res.status = st
	return res
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// podOf is the current template's pod named name.
func (r *rollout) podOf(w spec.Workload, p rolloutParams, hash, name string) *spec.Pod {
	var pod *spec.Pod
	if ds, ok := w.(*spec.DaemonSet); ok {
		pod = podFor(&spec.DaemonSet{Metadata: ds.Metadata, Spec: spec.DaemonSetSpec{Template: *daemonTemplate(ds)}}, name, p.labels(hash))
	} else {
		pod = podFor(w, name, p.labels(hash))
	}
	return pod
}

// daemonTemplate is a DaemonSet's template with the tolerations Kubernetes
// adds to every DaemonSet pod: a node's own conditions (not ready, under
// pressure, cordoned) never keep its daemons off.
func daemonTemplate(ds *spec.DaemonSet) *spec.PodTemplateSpec {
	t := ds.Spec.Template
	t.Spec.Tolerations = slices.Clone(t.Spec.Tolerations)
	for _, tol := range []spec.Toleration{
		{Key: "node.kubernetes.io/not-ready", Operator: spec.TolerationOpExists, Effect: spec.TaintEffectNoExecute},
		{Key: "node.kubernetes.io/unreachable", Operator: spec.TolerationOpExists, Effect: spec.TaintEffectNoExecute},
		{Key: "node.kubernetes.io/disk-pressure", Operator: spec.TolerationOpExists, Effect: spec.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/memory-pressure", Operator: spec.TolerationOpExists, Effect: spec.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/pid-pressure", Operator: spec.TolerationOpExists, Effect: spec.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/unschedulable", Operator: spec.TolerationOpExists, Effect: spec.TaintEffectNoSchedule},
	} {
		if !slices.Contains(t.Spec.Tolerations, tol) {
			t.Spec.Tolerations = append(t.Spec.Tolerations, tol)
		}
	}
	if t.Spec.HostNetwork {
		t.Spec.Tolerations = append(t.Spec.Tolerations, spec.Toleration{Key: "node.kubernetes.io/network-unavailable",
			Operator: spec.TolerationOpExists, Effect: spec.TaintEffectNoSchedule})
	}
	return &t
}

// ports tracks which pod holds each published hostPort.
type ports map[string]string

func portHolders(gone map[string]*genPod) ports {
	h := ports{}
	for _, name := range slices.Sorted(maps.Keys(gone)) {
		if g := gone[name]; g != nil && g.pod != nil {
			h.claim(name, g.pod)
		}
	}
	return h
}

// claim gives the pod its hostPorts, or returns the pod that holds one of
// them and which.
func (h ports) claim(name string, p *spec.Pod) (holder, port string) {
	var mine []string
	for _, c := range p.Spec.Containers {
		for _, pt := range c.Ports {
			if pt.HostPort == 0 {
				continue
			}
			proto := cmp.Or(string(pt.Protocol), "TCP")
			key := fmt.Sprintf("%d/%s", pt.HostPort, proto)
			ip := pt.HostIP
			if ip == "0.0.0.0" || ip == "::" {
				ip = ""
			}
			for k, other := range h {
				// The same address, or a wildcard on either side.
				kk, kip, _ := strings.Cut(k, "@")
				if kk == key && other != name && (kip == ip || kip == "" || ip == "") {
					return other, key
				}
			}
			mine = append(mine, key+"@"+ip)
		}
	}
	for _, k := range mine {
		h[k] = name
	}
	return "", ""
}
