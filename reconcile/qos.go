package reconcile

import (
	"math/big"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pelagos-containers/pelagos-agent/spec"
)

// QoS classes, as Kubernetes names them (core/v1 PodQOSClass).
const (
	QOSGuaranteed = "Guaranteed"
	QOSBurstable  = "Burstable"
	QOSBestEffort = "BestEffort"
)

// OOM score adjustments kubelet gives workloads (pkg/kubelet/qos): a
// Guaranteed pod is killed last, a BestEffort one first; a Burstable one
// in between, lower the more memory it requested, and always above what a
// Guaranteed pod using all the node's memory would score.
const (
	GuaranteedOOMScoreAdj = -997
	BestEffortOOMScoreAdj = 1000
	minBurstableOOMAdj    = 1000 + GuaranteedOOMScoreAdj
	maxBurstableOOMAdj    = BestEffortOOMScoreAdj - 1
)

// PodQOSClass is the pod's QoS class as Kubernetes computes it: every
// container, init containers included, is BestEffort (no CPU or memory
// request or limit), Guaranteed (CPU and memory requests equal to their
// non-zero limits) or Burstable; the pod has the class all its containers
// share, else Burstable. When the pod sets pod-level cpu or memory
// (spec.resources), those alone decide, as in Kubernetes. The pod must be
// defaulted (a limit without a request is also the request).
func PodQOSClass(p *spec.Pod) string {
	if p.Spec.PodLevelResourcesSet() {
		return containerQOS(p.Spec.Resources)
	}
	class := ""
	for _, cs := range [][]spec.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			switch c := containerQOS(&cs[i].Resources); {
			case c == QOSBurstable:
				return QOSBurstable
			case class == "":
				class = c
			case class != c:
				return QOSBurstable
			}
		}
	}
	if class == "" {
		return QOSBestEffort
	}
	return class
}

// containerQOS classifies one container's resources; only CPU and memory
// count, as in Kubernetes.
func containerQOS(r *spec.ResourceRequirements) string {
	if len(r.Requests) == 0 && len(r.Limits) == 0 {
		return QOSBestEffort
	}
	class := ""
	for _, name := range []spec.ResourceName{spec.ResourceCPU, spec.ResourceMemory} {
		req, lim := r.Requests[name], r.Limits[name] // zero when absent
		if !req.Equal(lim) {
			return QOSBurstable
		}
		c := QOSGuaranteed
		if req.IsZero() {
			c = QOSBestEffort
		}
		if class != "" && class != c {
			return QOSBurstable
		}
		class = c
	}
	return class
}

// OOMScoreAdj is a container's oom_score_adj as kubelet's
// GetContainerOOMScoreAdjust sets it: Guaranteed -997, BestEffort 1000,
// Burstable 1000 - 1000*memoryRequest/nodeMemory within [3, 999]. With
// nodeMemory unknown (0), a Burstable container scores as if it requested
// nothing: 999. The arithmetic cannot overflow for any request.
func OOMScoreAdj(class string, memoryRequest resource.Quantity, nodeMemory int64) int {
	switch class {
	case QOSGuaranteed:
		return GuaranteedOOMScoreAdj
	case QOSBestEffort:
		return BestEffortOOMScoreAdj
	}
	if nodeMemory <= 0 || memoryRequest.Sign() <= 0 {
		return maxBurstableOOMAdj
	}
	if memoryRequest.Cmp(*resource.NewQuantity(nodeMemory, resource.BinarySI)) >= 0 {
		return minBurstableOOMAdj
	}
	// The request is below nodeMemory, so it fits an int64; its thousand
	// times may not.
	share := new(big.Int).Mul(big.NewInt(memoryRequest.Value()), big.NewInt(1000))
	share.Quo(share, big.NewInt(nodeMemory))
	return min(max(1000-int(share.Int64()), minBurstableOOMAdj), maxBurstableOOMAdj)
}

// setQoS records the pod's QoS class and gives every container its OOM
// score adjustment (the init applies it), so no workload inherits the
// agent's own low score. With pod-level resources, a Burstable
// container's score follows the pod's memory request.
func setQoS(p *spec.Pod, d *DesiredPod, nodeMemory int64) {
	d.QOSClass = PodQOSClass(p)
	requests := map[string]resource.Quantity{}
	for _, cs := range [][]spec.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			requests[c.Name] = c.Resources.Requests[spec.ResourceMemory]
			if p.Spec.PodLevelResourcesSet() {
				// The pod's memory request is what the node reserved for
				// all of it; a container's own request is part of it.
				requests[c.Name] = p.Spec.Resources.Requests[spec.ResourceMemory]
			}
		}
	}
	for _, dcs := range [][]DesiredContainer{d.Init, d.Containers} {
		for i := range dcs {
			adj := OOMScoreAdj(d.QOSClass, requests[dcs[i].Name], nodeMemory)
			dcs[i].Config.OOMScoreAdj = &adj
		}
	}
}
