package spec

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Pod-level resources (spec.resources, KEP-2837, on by default since
// Kubernetes 1.34): requests and limits of cpu and memory for the pod as a
// whole. The runtime writes the limits to the pod cgroup, which every
// container of the pod sits in, so the containers share them; the requests
// decide the QoS class (reconcile). Defaulting and validation follow the
// API server.

// podLevelResources are the resources spec.resources takes; Kubernetes
// also takes hugepages-<size>, which the runtime cannot limit yet.
var podLevelResources = []ResourceName{ResourceCPU, ResourceMemory}

const hugePagesPrefix = "hugepages-"

// PodLevelResourcesSet reports whether spec.resources asks for cpu or
// memory (Kubernetes' IsPodLevelResourcesSet): then the pod-level values,
// not the containers', decide the QoS class.
func (s *PodSpec) PodLevelResourcesSet() bool {
	if s.Resources == nil {
		return false
	}
	for _, name := range podLevelResources {
		_, req := s.Resources.Requests[name]
		_, lim := s.Resources.Limits[name]
		if req || lim {
			return true
		}
	}
	return false
}

// PodLimit is the pod-level limit of a resource, if spec.resources sets one.
func (s *PodSpec) PodLimit(name ResourceName) (resource.Quantity, bool) {
	if s.Resources == nil {
		return resource.Quantity{}, false
	}
	q, ok := s.Resources.Limits[name]
	return q, ok
}

// aggregateRequests is what the containers of a defaulted pod request
// together, as Kubernetes counts it for scheduling: the app containers and
// native sidecars add up, and an init container, which runs alone beside
// the sidecars started before it, counts only where it needs more.
func aggregateRequests(s *PodSpec) ResourceList {
	sum := ResourceList{}
	add := func(to ResourceList, from ResourceList) {
		for _, name := range podLevelResources {
			if q, ok := from[name]; ok {
				t := to[name]
				t.Add(q)
				to[name] = t
			}
		}
	}
	for i := range s.Containers {
		add(sum, s.Containers[i].Resources.Requests)
	}
	sidecars, initPeak := ResourceList{}, ResourceList{}
	for i := range s.InitContainers {
		c := &s.InitContainers[i]
		running := ResourceList{}
		if c.IsSidecar() {
			add(sum, c.Resources.Requests)
			add(sidecars, c.Resources.Requests)
			add(running, sidecars)
		} else {
			add(running, sidecars)
			add(running, c.Resources.Requests)
		}
		for name, q := range running {
			if peak, ok := initPeak[name]; !ok || q.Cmp(peak) > 0 {
				initPeak[name] = q
			}
		}
	}
	for name, q := range initPeak {
		if cur, ok := sum[name]; !ok || q.Cmp(cur) > 0 {
			sum[name] = q
		}
	}
	return sum
}

// setPodResourceDefaults fills pod-level requests as the API server does,
// once the containers are defaulted, and only when a pod-level limit is
// set: a resource the containers request gets their aggregate as the pod
// request, any other limited resource its limit.
func setPodResourceDefaults(s *PodSpec) {
	r := s.Resources
	if r == nil || len(r.Limits) == 0 {
		return
	}
	fill := func(name ResourceName, q resource.Quantity) {
		if _, ok := r.Requests[name]; ok {
			return
		}
		if r.Requests == nil {
			r.Requests = ResourceList{}
		}
		r.Requests[name] = q.DeepCopy()
	}
	for name, q := range aggregateRequests(s) {
		fill(name, q)
	}
	for _, name := range podLevelResources {
		if q, ok := r.Limits[name]; ok {
			fill(name, q)
		}
	}
}

// validatePodResources checks spec.resources: cpu and memory only, each
// quantity in range, requests within limits, and then, as the API server
// does, the containers within the pod: together they request no more than
// the pod, and none limits a resource above the pod's limit.
func validatePodResources(l *errList, sp fieldPath, s *PodSpec) {
	r := s.Resources
	if r == nil {
		return
	}
	rp := sp.Field("resources")
	before := len(l.errs)
	validateRequirements(l, rp, r, func(qp fieldPath, name ResourceName) bool {
		switch {
		case name == ResourceCPU || name == ResourceMemory:
			return true
		case strings.HasPrefix(string(name), hugePagesPrefix):
			l.unsupported(qp, "pod-level %s is not supported by pelagos-agent: the pod cgroup gets no hugetlb limit; set it on the containers, or delete this line", name)
		default:
			l.add(qp, "resource %q cannot be set for the whole pod: use cpu or memory (or set it on a container)", name)
		}
		return false
	})
	if len(l.errs) > before {
		return // the sums below would compare values already refused
	}
	// A container limited above the pod is the cause to name first: its
	// limit is also its request, which the defaulted pod request adds up.
	over := map[ResourceName]bool{}
	s.eachContainer(func(field string, i int, c *Container) {
		for _, name := range podLevelResources {
			pod, ok := r.Limits[name]
			ctr, set := c.Resources.Limits[name]
			if ok && set && ctr.Cmp(pod) > 0 {
				over[name] = true
				at := sp.Field(field).Index(i).Field("resources").Field("limits").Key(string(name))
				l.add(rp.Field("limits").Key(string(name)), "%s is less than the limit %s of container %q (%s): a container cannot use more than its pod", pod.String(), ctr.String(), c.Name, at)
			}
		}
	})
	ctrs := aggregateRequests(s)
	for _, name := range podLevelResources {
		req, hasReq := r.Requests[name]
		lim, hasLim := r.Limits[name]
		sum, requested := ctrs[name]
		switch {
		case over[name]:
		case hasReq && hasLim && lim.Cmp(req) < 0 && requested && sum.Cmp(req) == 0:
			// Most often a request the API server defaulted to what the
			// containers request: the limit is what to raise.
			l.add(rp.Field("limits").Key(string(name)), "%s is less than the containers request together (%s): raise it, or lower theirs", lim.String(), sum.String())
		case hasReq && hasLim && lim.Cmp(req) < 0:
			l.add(rp.Field("requests").Key(string(name)), "request %s is greater than the limit %s", req.String(), lim.String())
		case hasReq && requested && req.Cmp(sum) < 0:
			l.add(rp.Field("requests").Key(string(name)), "%s is less than the containers request together (%s): raise it, or lower theirs", req.String(), sum.String())
		}
	}
}
