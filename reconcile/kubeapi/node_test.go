package kubeapi

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	nodeid "github.com/pelagos-containers/pelagos-agent/spec/node"
)

// fakeHost is a HostSource the test sets.
type fakeHost struct {
	mu   sync.Mutex
	info HostInfo
	err  error
}

func (h *fakeHost) HostInfo(context.Context) (HostInfo, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.info, h.err
}

func (h *fakeHost) set(f func(*HostInfo)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(&h.info)
}

func healthyHost() *fakeHost {
	return &fakeHost{info: HostInfo{InternalIP: "192.0.2.7", CPUs: 4, MemoryBytes: 8 << 30, MemoryAvailable: 4 << 30,
		StorageBytes: 100 << 30, StorageAvailable: 50 << 30, InodesTotal: 1000, InodesFree: 900, PIDsMax: 4096, PIDsInUse: 100,
		KernelVersion: "6.1.0", OSImage: "Debian GNU/Linux 12 (bookworm)", MachineID: "abc", BootTime: time.Unix(1_700_000_000, 0),
		CPUUsageNanos: 1e9, MemoryWorkingSet: 4 << 30}}
}

func conditions(n *corev1.Node) string {
	var out []string
	for _, c := range n.Status.Conditions {
		out = append(out, string(c.Type)+"="+string(c.Status))
	}
	return strings.Join(out, " ")
}

func TestNode(t *testing.T) {
	h := healthyHost()
	id, err := nodeid.New("node1", map[string]string{"site": "lab"}, []nodeid.Taint{{Key: "dedicated", Value: "gpu", Effect: "NoSchedule"}})
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, func(c *Config) { c.Host = h; c.Node = id; c.MaxPods = 20 })
	var n corev1.Node
	e.getJSON("/api/v1/nodes/node1", &n)
	if n.Labels["kubernetes.io/hostname"] != "node1" || n.Labels["kubernetes.io/os"] != "linux" || n.Labels["site"] != "lab" ||
		n.Status.Capacity.Pods().Value() != 20 || n.Status.Allocatable.Cpu().Value() != 4 || n.Status.Capacity.Memory().Value() != 8<<30 ||
		n.Status.NodeInfo.ContainerRuntimeVersion != "pelagos://1.2.3" || n.Status.NodeInfo.KubeletVersion != "v1.2.3" ||
		n.Status.NodeInfo.OSImage != "Debian GNU/Linux 12 (bookworm)" || !n.CreationTimestamp.Equal(&metav1.Time{Time: time.Unix(1_700_000_000, 0)}) {
		t.Errorf("node: %+v", n)
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].ToString() != "dedicated=gpu:NoSchedule" {
		t.Errorf("taints: %+v", n.Spec.Taints)
	}
	if len(n.Status.Addresses) != 2 || n.Status.Addresses[0] != (corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.0.2.7"}) {
		t.Errorf("addresses: %+v", n.Status.Addresses)
	}
	if got := conditions(&n); got != "MemoryPressure=False DiskPressure=False PIDPressure=False Ready=True" {
		t.Errorf("conditions: %s", got)
	}
	// An unchanged node is not a change: the same resource version.
	var again corev1.Node
	e.getJSON("/api/v1/nodes/node1", &again)
	if again.ResourceVersion != n.ResourceVersion {
		t.Errorf("a refresh of an unchanged node changed its version: %s -> %s", n.ResourceVersion, again.ResourceVersion)
	}
	// Pressure, as kubelet's default thresholds see it.
	h.set(func(i *HostInfo) { i.MemoryAvailable, i.StorageAvailable, i.PIDsInUse = 50<<20, 5<<30, 4000 })
	e.getJSON("/api/v1/nodes/node1", &n)
	if got := conditions(&n); got != "MemoryPressure=True DiskPressure=True PIDPressure=True Ready=True" {
		t.Errorf("conditions under pressure: %s", got)
	}
	h.set(func(i *HostInfo) { *i = healthyHost().info; i.InodesFree = 10 })
	e.getJSON("/api/v1/nodes/node1", &n)
	if got := conditions(&n); got != "MemoryPressure=False DiskPressure=True PIDPressure=False Ready=True" {
		t.Errorf("conditions when inodes run out: %s", got)
	}
	h.set(func(i *HostInfo) { *i = healthyHost().info })
	h.err = errors.New("no /proc")
	e.getJSON("/api/v1/nodes/node1", &n)
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && (c.Status != corev1.ConditionFalse || !strings.Contains(c.Message, "no /proc")) {
			t.Errorf("ready when the host cannot be read: %+v", c)
		}
	}
	var tbl metav1.Table
	r := e.get("/api/v1/nodes", "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if err := json.Unmarshal(r.body, &tbl); err != nil || len(tbl.Rows) != 1 || tbl.Rows[0].Cells[1] != "NotReady" {
		t.Errorf("node table: %v %s", err, r.body)
	}
}

// statsRuntime adds usage readings to the fake runtime.
type statsRuntime struct {
	*fake.Runtime
	mu  sync.Mutex
	cpu map[string]uint64
}

func (s *statsRuntime) ContainerStats(_ context.Context, id string) (*runtime.ContainerStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cpu[id] += 50_000_000 // 50 ms of CPU per reading
	return &runtime.ContainerStats{CPUUsageNanos: s.cpu[id], MemoryBytes: 3 << 20}, nil
}

func TestMetrics(t *testing.T) {
	h := healthyHost()
	var sr *statsRuntime
	e := newTestEnv(t, func(c *Config) {
		sr = &statsRuntime{Runtime: c.Runtime.(*fake.Runtime), cpu: map[string]uint64{}}
		c.Runtime, c.Host = sr, h
	})
	e.srv.podSampler.minWindow, e.srv.nodeSampler.minWindow = 20*time.Millisecond, 20*time.Millisecond
	e.desire(twoContainerPod)
	e.runningPod("web")
	var pm metricsv1beta1.PodMetrics
	e.getJSON("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web", &pm)
	if pm.Kind != "PodMetrics" || len(pm.Containers) != 2 || pm.Containers[0].Name != "app" || pm.Window.Duration <= 0 ||
		pm.Containers[0].Usage.Cpu().MilliValue() <= 0 || pm.Containers[0].Usage.Memory().Value() != 3<<20 {
		t.Errorf("pod metrics: %+v", pm)
	}
	var l metricsv1beta1.PodMetricsList
	e.getJSON("/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dweb", &l)
	if len(l.Items) != 1 {
		t.Errorf("pod metrics list: %+v", l)
	}
	go func() {
		// The host keeps burning CPU between readings.
		for range 50 {
			h.set(func(i *HostInfo) { i.CPUUsageNanos += 10_000_000 })
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var nm metricsv1beta1.NodeMetrics
	e.getJSON("/apis/metrics.k8s.io/v1beta1/nodes/node1", &nm)
	if nm.Usage.Memory().Value() != 4<<30 || nm.Window.Duration < 20*time.Millisecond {
		t.Errorf("node metrics: %+v", nm)
	}
}

func TestSampler(t *testing.T) {
	clock := time.Unix(1000, 0)
	now := func() time.Time { return clock }
	sm := newSampler(now)
	sm.minWindow = 0
	cpu := map[string]uint64{"a": 1e9}
	read := func(id string) (uint64, bool) { v, ok := cpu[id]; return v, ok }
	if r, _ := sm.rates(context.Background(), []string{"a"}, read); len(r) != 0 {
		t.Errorf("a first reading is no rate: %v", r)
	}
	clock = clock.Add(2 * time.Second)
	cpu["a"] += 1e9 // one second of CPU in two: half a core
	r, _ := sm.rates(context.Background(), []string{"a"}, read)
	if r["a"].nanocores != 5e8 || r["a"].window != 2*time.Second {
		t.Errorf("rate: %+v", r["a"])
	}
	// A counter that went back (a new container with the same ID) starts
	// over instead of reporting nonsense.
	cpu["a"] = 10
	clock = clock.Add(time.Second)
	if r, _ := sm.rates(context.Background(), []string{"a"}, read); len(r) != 0 {
		t.Errorf("a reset counter: %v", r)
	}
	// Forgotten once gone.
	if _, _ = sm.rates(context.Background(), nil, read); len(sm.start) != 0 {
		t.Errorf("kept %v", sm.start)
	}
}

func TestOpenAPI(t *testing.T) {
	e := newTestEnv(t)
	r := e.get("/openapi/v2", "Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
	var doc openapiv2.Document
	if r.hdr.Get("Content-Type") != openAPIV2Proto || proto.Unmarshal(r.body, &doc) != nil {
		t.Fatalf("v2 protobuf: %s", r.hdr.Get("Content-Type"))
	}
	var v2 struct {
		Definitions map[string]struct {
			Type        any
			Description string
			Required    []string
			Properties  map[string]map[string]any
			GVK         []map[string]string `json:"x-kubernetes-group-version-kind"`
		}
	}
	e.getJSON("/openapi/v2", &v2)
	pod := v2.Definitions["io.k8s.api.core.v1.Pod"]
	if !strings.Contains(pod.Description, "Pod is a collection of containers") || len(pod.GVK) != 1 || pod.GVK[0]["kind"] != "Pod" ||
		pod.Properties["metadata"]["$ref"] != "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" {
		t.Errorf("v2 Pod: %+v", pod)
	}
	spec := v2.Definitions["io.k8s.api.core.v1.PodSpec"]
	if spec.Required[0] != "containers" || spec.Properties["containers"]["x-kubernetes-patch-merge-key"] != "name" ||
		spec.Properties["containers"]["x-kubernetes-patch-strategy"] != "merge" {
		t.Errorf("v2 PodSpec: required %v containers %v", spec.Required, spec.Properties["containers"])
	}
	if q := v2.Definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]; q.Type != "string" {
		t.Errorf("Quantity: %+v", q)
	}
	var idx struct {
		Paths map[string]struct{ ServerRelativeURL string }
	}
	e.getJSON("/openapi/v3", &idx)
	core := idx.Paths["api/v1"].ServerRelativeURL
	if !strings.HasPrefix(core, "/openapi/v3/api/v1?hash=") || idx.Paths["apis/events.k8s.io/v1"].ServerRelativeURL == "" {
		t.Fatalf("v3 index: %+v", idx)
	}
	var v3 struct {
		Paths map[string]struct {
			Patch *struct {
				Parameters []struct{ Name, In string }
				GVK        map[string]string `json:"x-kubernetes-group-version-kind"`
			}
		}
		Components struct {
			Schemas map[string]map[string]any
		}
	}
	e.getJSON(core, &v3)
	patch := v3.Paths["/api/v1/namespaces/{namespace}/pods/{name}"].Patch
	found := false
	for _, p := range patch.Parameters {
		found = found || (p.Name == "fieldValidation" && p.In == "query")
	}
	if !found || patch.GVK["kind"] != "Pod" {
		t.Errorf("v3 pod PATCH: %+v", patch)
	}
	meta := v3.Components.Schemas["io.k8s.api.core.v1.Pod"]["properties"].(map[string]any)["metadata"].(map[string]any)
	if meta["allOf"] == nil || meta["description"] == nil {
		t.Errorf("v3 references carry their description through allOf: %v", meta)
	}
}
