package kubeapi

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Annotations the agent adds to the Pods it serves: facts only this agent
// knows (kubelet adds kubernetes.io/config.* to static pods the same way).
// They are never written back to a manifest.
const (
	AnnotationSourceFile = runtime.AnnotationSourceFile // the manifest file
	AnnotationSandboxID  = "pelagos.io/sandbox-id"
	AnnotationNetNS      = "pelagos.io/netns"
	AnnotationPausePID   = "pelagos.io/pause-pid"
	// AnnotationLastError is the pod's last error as JSON
	// ({"file","field","message","time"}).
	AnnotationLastError = "pelagos.io/last-error"
	// AnnotationStale is "true" while the manifest is broken and the pod
	// runs its last good version.
	AnnotationStale = "pelagos.io/stale"
)

var agentAnnotations = []string{AnnotationSourceFile, AnnotationSandboxID, AnnotationNetNS, AnnotationPausePID, AnnotationLastError, AnnotationStale}

// podMeta is what the facade remembers about a pod between refreshes so
// that its identity stays put: the UID, when it was first seen (its age
// until it has a sandbox) and when its manifest went away.
type podMeta struct {
	uid       types.UID
	firstSeen time.Time
	deletedAt time.Time
}

// pods keeps the pod collection up to date with the reconciler.
type pods struct {
	s    *Server
	coll *collection

	mu    sync.Mutex
	metas map[runtime.PodKey]*podMeta
}

func newPods(s *Server) *pods {
	return &pods{s: s, coll: newCollection(s.vs), metas: map[runtime.PodKey]*podMeta{}}
}

// refreshAll brings every pod up to date (before a list or a watch).
func (p *pods) refreshAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.s.cfg.Backend.Pods()
	objs := make([]object, 0, len(list))
	seen := map[runtime.PodKey]bool{}
	for _, rp := range list {
		key := runtime.PodKey{Namespace: rp.Metadata.Namespace, Name: rp.Metadata.Name}
		seen[key] = true
		objs = append(objs, p.buildLocked(key, rp))
	}
	for k := range p.metas {
		if !seen[k] {
			delete(p.metas, k)
		}
	}
	p.coll.replace(objs)
}

// refresh brings one pod up to date (after a pass for it).
func (p *pods) refresh(key runtime.PodKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rp, ok := p.s.cfg.Backend.Pod(key)
	if !ok {
		delete(p.metas, key)
		p.coll.remove(key.Namespace, key.Name)
		return
	}
	p.coll.set(p.buildLocked(key, rp))
}

// uid is the pod's identity: derived from the node, the pod's name and its
// sandbox-level hash, as kubelet derives a static pod's UID from its
// manifest. A change that recreates the pod makes a new UID; a restart of
// the agent keeps it.
func (p *pods) uidLocked(key runtime.PodKey, m *podMeta, sandboxID string) types.UID {
	seed := ""
	if d := p.s.cfg.Backend.Desired(key); d != nil {
		seed = d.SandboxHash
	}
	if seed == "" {
		if m.uid != "" {
			return m.uid
		}
		seed = sandboxID
	}
	return types.UID(uuid.NewSHA1(uuid.NameSpaceURL, []byte("pelagos://"+p.s.cfg.NodeName+"/pods/"+key.String()+"/"+seed)).String())
}

func (p *pods) buildLocked(key runtime.PodKey, rp reconcile.Pod) *corev1.Pod {
	now := p.s.now()
	m := p.metas[key]
	if m == nil {
		m = &podMeta{firstSeen: now}
		p.metas[key] = m
	}
	pod, err := toKubePod(rp)
	if err != nil {
		// The reconciler's types are core/v1's shape; failing to convert
		// is a bug, shown on the object rather than hiding the pod.
		pod = &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodUnknown, Message: err.Error()}}
	}
	pod.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
	pod.Name, pod.Namespace = key.Name, key.Namespace
	m.uid = p.uidLocked(key, m, rp.Status.Pelagos.SandboxID)
	pod.UID = m.uid
	switch {
	case rp.Metadata.CreationTimestamp != nil:
		pod.CreationTimestamp = metav1.NewTime(*rp.Metadata.CreationTimestamp)
	default:
		pod.CreationTimestamp = metav1.NewTime(m.firstSeen)
	}
	if p.s.cfg.Backend.Desired(key) == nil {
		// The manifest is gone and the pod is being torn down: that is
		// what a deletion timestamp means to every client. The reconciler
		// no longer has its spec; the last one served stands, with its
		// containers no longer ready.
		if prev, ok := p.coll.get(key.Namespace, key.Name); ok && len(pod.Spec.Containers) == 0 {
			old := prev.(*corev1.Pod)
			pod.Spec = *old.Spec.DeepCopy()
			if len(pod.Status.ContainerStatuses) == 0 {
				pod.Status.InitContainerStatuses = slices.Clone(old.Status.InitContainerStatuses)
				pod.Status.ContainerStatuses = slices.Clone(old.Status.ContainerStatuses)
				for i := range pod.Status.ContainerStatuses {
					pod.Status.ContainerStatuses[i].Ready = false
				}
			}
		}
		if m.deletedAt.IsZero() {
			m.deletedAt = now
		}
		t := metav1.NewTime(m.deletedAt)
		pod.DeletionTimestamp = &t
		grace := int64(30)
		if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = *pod.Spec.TerminationGracePeriodSeconds
		}
		pod.DeletionGracePeriodSeconds = &grace
	} else {
		m.deletedAt = time.Time{}
	}
	p.s.completePod(pod, rp)
	return pod
}

// toKubePod converts the reconciler's pod through JSON: its types follow
// core/v1's field names, so every field either side knows survives, and
// fields added to the reconciler's status later appear without a change
// here. The agent's own status block becomes annotations.
func toKubePod(rp reconcile.Pod) (*corev1.Pod, error) {
	b, err := json.Marshal(rp)
	if err != nil {
		return nil, fmt.Errorf("encode pod %s/%s: %w", rp.Metadata.Namespace, rp.Metadata.Name, err)
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(b, pod); err != nil {
		return nil, fmt.Errorf("decode pod %s/%s as core/v1: %w", rp.Metadata.Namespace, rp.Metadata.Name, err)
	}
	ag := rp.Status.Pelagos
	set := func(k, v string) {
		if v == "" {
			return
		}
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[k] = v
	}
	set(AnnotationSourceFile, ag.SourceFile)
	set(AnnotationSandboxID, ag.SandboxID)
	set(AnnotationNetNS, ag.NetNS)
	if ag.PausePID != 0 {
		set(AnnotationPausePID, strconv.Itoa(ag.PausePID))
	}
	if ag.LastError != nil {
		b, _ := json.Marshal(ag.LastError)
		set(AnnotationLastError, string(b))
	}
	if ag.Stale {
		set(AnnotationStale, "true")
	}
	return pod, nil
}

// AgentStatus reads back the agent's status block from a served Pod's
// annotations (for the CLI, which prints it).
func AgentStatus(annotations map[string]string) reconcile.AgentPodStatus {
	var ag reconcile.AgentPodStatus
	ag.SourceFile = annotations[AnnotationSourceFile]
	ag.SandboxID = annotations[AnnotationSandboxID]
	ag.NetNS = annotations[AnnotationNetNS]
	ag.PausePID, _ = strconv.Atoi(annotations[AnnotationPausePID])
	if s := annotations[AnnotationLastError]; s != "" {
		var e reconcile.ManifestErr
		if json.Unmarshal([]byte(s), &e) == nil {
			ag.LastError = &e
		}
	}
	ag.Stale = annotations[AnnotationStale] == "true"
	return ag
}

// IsAgentAnnotation reports whether an annotation is one the agent adds.
func IsAgentAnnotation(k string) bool {
	for _, a := range agentAnnotations {
		if a == k {
			return true
		}
	}
	return false
}

// completePod fills what the reconciler does not model but every client
// expects: the node, the host IP, the QoS class and the PodScheduled
// condition.
func (s *Server) completePod(pod *corev1.Pod, rp reconcile.Pod) {
	if rp.Status.Reason == reconcile.ReasonNodeMismatch {
		// Meant for another node: not bound to this one (its nodeName,
		// if any, names the other node), and never scheduled here.
		for i, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				pod.Status.Conditions[i].Reason, pod.Status.Conditions[i].Message = "Unschedulable", rp.Status.Message
			}
		}
		return
	}
	pod.Spec.NodeName = s.cfg.NodeName
	if ip := s.node.internalIP(); ip != "" {
		pod.Status.HostIP = ip
		pod.Status.HostIPs = []corev1.HostIP{{IP: ip}}
		if pod.Spec.HostNetwork && pod.Status.PodIP == "" && rp.Status.Pelagos.SandboxID != "" {
			pod.Status.PodIP = ip
			pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		}
	}
	if pod.Status.QOSClass == "" {
		pod.Status.QOSClass = qosClass(&pod.Spec)
	}
	scheduled := false
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			scheduled = true
		}
	}
	if !scheduled {
		// Every pod of this node is on it from the moment its manifest is.
		pod.Status.Conditions = append([]corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue,
			LastTransitionTime: pod.CreationTimestamp}}, pod.Status.Conditions...)
	}
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].LastTransitionTime.IsZero() {
			pod.Status.Conditions[i].LastTransitionTime = pod.CreationTimestamp
		}
	}
}

// qosClass is Kubernetes' rule: Guaranteed when every container limits cpu
// and memory and requests what it limits, BestEffort when no container
// asks for anything, Burstable otherwise; with pod-level resources, the
// pod's requests and limits alone.
func qosClass(spec *corev1.PodSpec) corev1.PodQOSClass {
	any, guaranteed := false, true
	check := func(cs []corev1.Container) {
		for _, c := range cs {
			if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
				any = true
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				lim, ok := c.Resources.Limits[r]
				if !ok || lim.IsZero() {
					guaranteed = false
					continue
				}
				if req, ok := c.Resources.Requests[r]; ok && req.Cmp(lim) != 0 {
					guaranteed = false
				}
			}
		}
	}
	if r := spec.Resources; r != nil && podLevelSet(r) {
		// Pod-level cpu or memory decide alone, as in Kubernetes.
		check([]corev1.Container{{Resources: *r}})
	} else {
		check(spec.InitContainers)
		check(spec.Containers)
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// podLevelSet reports whether pod-level resources name cpu or memory.
func podLevelSet(r *corev1.ResourceRequirements) bool {
	for _, l := range []corev1.ResourceList{r.Requests, r.Limits} {
		if _, ok := l[corev1.ResourceCPU]; ok {
			return true
		}
		if _, ok := l[corev1.ResourceMemory]; ok {
			return true
		}
	}
	return false
}

// uidFor is the UID the pod has (or would have), for events about it.
func (p *pods) uidFor(key runtime.PodKey) types.UID {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.metas[key]
	if m == nil {
		m = &podMeta{}
	}
	return p.uidLocked(key, m, "")
}
