package reconcile

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// withPodRes sets pod-level resources on a pod built by qosPod and
// defaults it again, as the API server would.
func withPodRes(p *spec.Pod, r spec.ResourceRequirements) *spec.Pod {
	p.Spec.Resources = &r
	spec.SetDefaults(p)
	return p
}

// TestPodQOSClassPodLevel: pod-level cpu or memory decide the class
// alone, whatever the containers say (Kubernetes' ComputePodQOS).
func TestPodQOSClassPodLevel(t *testing.T) {
	guaranteed := res("|", "cpu=500m", "memory=64Mi")
	for _, c := range []struct {
		name  string
		pod   *spec.Pod
		class string
	}{
		{"pod limits, containers without", withPodRes(qosPod(nil, res(), res()), res("|", "cpu=1", "memory=200Mi")), QOSGuaranteed},
		{"the docs' example", withPodRes(qosPod(nil, res("cpu=500m", "memory=50Mi", "|", "cpu=500m", "memory=100Mi"), res()),
			res("cpu=1", "memory=100Mi", "|", "cpu=1", "memory=200Mi")), QOSBurstable},
		{"pod guaranteed, containers burstable", withPodRes(qosPod(nil, res("memory=10Mi")),
			res("cpu=1", "memory=1Gi", "|", "cpu=1", "memory=1Gi")), QOSGuaranteed},
		// The pod's memory request defaults to the containers' 10Mi.
		{"pod limits, containers request less", withPodRes(qosPod(nil, res("memory=10Mi")), res("|", "cpu=1", "memory=1Gi")), QOSBurstable},
		{"pod memory only, containers guaranteed", withPodRes(qosPod(nil, guaranteed), res("|", "memory=1Gi")), QOSBurstable},
		{"pod requests only", withPodRes(qosPod(nil, guaranteed), res("cpu=1", "memory=1Gi")), QOSBurstable},
		{"empty pod-level: the containers decide", withPodRes(qosPod(nil, guaranteed), res()), QOSGuaranteed},
	} {
		if got := PodQOSClass(c.pod); got != c.class {
			t.Errorf("%s: %s, want %s", c.name, got, c.class)
		}
	}
}

// TestTranslatePodLevelResources: the sandbox carries the pod's limits to
// the runtime, the class and OOM scores follow the pod level, and the
// fake runtime holds the limits the sandbox was made with.
func TestTranslatePodLevelResources(t *testing.T) {
	p := withPodRes(qosPod(nil, res("memory=1Gi", "|", "memory=2Gi"), res()), res("cpu=500m", "memory=4Gi", "|", "cpu=2", "memory=8Gi"))
	p.Metadata.Name = "podres"
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].Image = "busybox:1.36"
	}
	d, err := Translator{NodeMemory: 16 << 30}.Pod(p, "/m/podres.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.Resources{CPURequestMilli: 500, CPULimitMilli: 2000, MemoryRequest: 4 << 30, MemoryLimit: 8 << 30}
	if diff := cmp.Diff(want, d.Sandbox.Resources); diff != "" {
		t.Errorf("sandbox resources (-want +got):\n%s", diff)
	}
	if d.QOSClass != QOSBurstable {
		t.Errorf("class %s", d.QOSClass)
	}
	// 1000 - 1000*4/16: the pod's request, for every container.
	for _, c := range d.Containers {
		if c.Config.OOMScoreAdj == nil || *c.Config.OOMScoreAdj != 750 {
			t.Errorf("%s: OOMScoreAdj %v, want 750", c.Name, c.Config.OOMScoreAdj)
		}
	}
	f := fake.New()
	r := New(Config{Runtime: f, Images: f, Log: zerolog.Nop()})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	k := runtime.PodKey{Namespace: "default", Name: "podres"}
	syncUntilStable(t, r, k)
	got, _ := r.Pod(k)
	if got.Status.QOSClass != QOSBurstable {
		t.Errorf("status.qosClass = %q", got.Status.QOSClass)
	}
	sbs, _ := f.ListSandboxes(t.Context())
	if len(sbs) != 1 {
		t.Fatalf("%d sandboxes", len(sbs))
	}
	if pr, _ := f.PodResources(sbs[0].ID); pr != want {
		t.Errorf("the runtime got pod resources %+v, want %+v", pr, want)
	}
}

const podLevelDownwardPod = `apiVersion: v1
kind: Pod
metadata: {name: plr}
spec:
  resources:
    limits: {cpu: "2", memory: 256Mi}
  containers:
  - name: app
    image: busybox:1.36
    env:
    - name: MEM_MI
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    - name: CPU_LIMIT
      valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    - name: OWN_MEM_MI
      valueFrom: {resourceFieldRef: {containerName: limited, resource: limits.memory, divisor: 1Mi}}
    - name: STORAGE_GI
      valueFrom: {resourceFieldRef: {resource: limits.ephemeral-storage, divisor: 1Gi}}
  - name: limited
    image: busybox:1.36
    resources:
      limits: {memory: 64Mi}
`

// TestDownwardPodLevelLimit: a container without its own limit reads the
// pod-level one, not the node's; one with its own limit reads its own; a
// resource the pod does not limit is still the node's.
func TestDownwardPodLevelLimit(t *testing.T) {
	tr := Translator{NodeName: "node1", NodeCPUMilli: 4000, NodeMemory: 8 << 30, NodeEphemeralStorage: 100 << 30}
	set := loadWith(t, tr, podLevelDownwardPod)
	if len(set.Errors) > 0 || len(set.Pods) != 1 {
		t.Fatalf("errors %v, pods %d", set.Errors, len(set.Pods))
	}
	env := map[string]string{}
	for _, e := range set.Pods[0].Containers[0].Config.Env {
		env[e.Name] = e.Value
	}
	want := map[string]string{"MEM_MI": "256", "CPU_LIMIT": "2", "OWN_MEM_MI": "64", "STORAGE_GI": "100"}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("resourceFieldRef env (-want +got):\n%s", diff)
	}
}
