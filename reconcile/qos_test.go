package reconcile

import (
	"math"
	"testing"

	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// res builds requirements from "name=quantity" pairs: requests first,
// then "|" and limits.
func res(pairs ...string) spec.ResourceRequirements {
	r := spec.ResourceRequirements{}
	list := &r.Requests
	for _, p := range pairs {
		if p == "|" {
			list = &r.Limits
			continue
		}
		if *list == nil {
			*list = spec.ResourceList{}
		}
		for i := range p {
			if p[i] == '=' {
				(*list)[spec.ResourceName(p[:i])] = resource.MustParse(p[i+1:])
			}
		}
	}
	return r
}

func qosPod(inits []spec.ResourceRequirements, ctrs ...spec.ResourceRequirements) *spec.Pod {
	p := &spec.Pod{}
	for i, r := range inits {
		p.Spec.InitContainers = append(p.Spec.InitContainers, spec.Container{Name: "init" + string(rune('a'+i)), Resources: r})
	}
	for i, r := range ctrs {
		p.Spec.Containers = append(p.Spec.Containers, spec.Container{Name: "c" + string(rune('a'+i)), Resources: r})
	}
	spec.SetDefaults(p)
	return p
}

func TestPodQOSClass(t *testing.T) {
	guaranteed := res("|", "cpu=500m", "memory=64Mi") // requests defaulted from limits
	for _, c := range []struct {
		name  string
		pod   *spec.Pod
		class string
	}{
		{"nothing set", qosPod(nil, res()), QOSBestEffort},
		{"only other resources", qosPod(nil, res("ephemeral-storage=1Gi", "|", "ephemeral-storage=2Gi")), QOSBestEffort},
		{"explicit zeros", qosPod(nil, res("cpu=0", "memory=0", "|", "cpu=0", "memory=0")), QOSBestEffort},
		{"limits only", qosPod(nil, guaranteed), QOSGuaranteed},
		{"requests equal limits, other spellings", qosPod(nil, res("cpu=1", "memory=1Gi", "|", "cpu=1000m", "memory=1073741824")), QOSGuaranteed},
		{"every container guaranteed", qosPod([]spec.ResourceRequirements{guaranteed}, guaranteed, guaranteed), QOSGuaranteed},
		{"requests below limits", qosPod(nil, res("cpu=100m", "memory=32Mi", "|", "cpu=500m", "memory=64Mi")), QOSBurstable},
		{"cpu only", qosPod(nil, res("|", "cpu=1")), QOSBurstable},
		{"memory request only", qosPod(nil, res("memory=1Mi")), QOSBurstable},
		{"guaranteed beside best effort", qosPod(nil, guaranteed, res()), QOSBurstable},
		{"best effort init, guaranteed app", qosPod([]spec.ResourceRequirements{res()}, guaranteed), QOSBurstable},
		{"burstable init, guaranteed app", qosPod([]spec.ResourceRequirements{res("memory=1Mi")}, guaranteed), QOSBurstable},
		{"guaranteed init, best effort app", qosPod([]spec.ResourceRequirements{guaranteed}, res()), QOSBurstable},
		// Per container, not summed: the sums would be equal.
		{"mismatches that cancel out", qosPod(nil, res("cpu=1", "memory=1Gi", "|", "cpu=2", "memory=1Gi"),
			res("cpu=2", "memory=1Gi", "|", "cpu=1", "memory=1Gi")), QOSBurstable},
		{"huge equal values", qosPod(nil, res("|", "cpu=1e30", "memory=1e30")), QOSGuaranteed},
	} {
		if got := PodQOSClass(c.pod); got != c.class {
			t.Errorf("%s: %s, want %s", c.name, got, c.class)
		}
	}
}

func TestOOMScoreAdj(t *testing.T) {
	const node = 16 << 30
	q := resource.MustParse
	for _, c := range []struct {
		name    string
		class   string
		request resource.Quantity
		node    int64
		want    int
	}{
		{"guaranteed", QOSGuaranteed, q("1Gi"), node, -997},
		{"best effort", QOSBestEffort, resource.Quantity{}, node, 1000},
		{"burstable without a memory request", QOSBurstable, resource.Quantity{}, node, 999},
		{"burstable, one byte", QOSBurstable, q("1"), node, 999},
		{"burstable, a tenth", QOSBurstable, q("1G"), 10e9, 900},
		{"burstable, a hair under a tenth", QOSBurstable, *resource.NewQuantity(node/10, resource.BinarySI), node, 901},
		{"burstable, 1 GiB of 16", QOSBurstable, q("1Gi"), node, 938},
		{"burstable, all but a little", QOSBurstable, *resource.NewQuantity(node-node/1000, resource.BinarySI), node, 3},
		{"burstable, all of it", QOSBurstable, *resource.NewQuantity(node, resource.BinarySI), node, 3},
		{"burstable, more than the node", QOSBurstable, q("1e30"), node, 3},
		{"burstable, node memory unknown", QOSBurstable, q("1Gi"), 0, 999},
		{"burstable, negative request", QOSBurstable, q("-1Gi"), node, 999},
		// 1000 times the request overflows an int64 here.
		{"burstable, exabyte node", QOSBurstable, q("8e18"), 9e18, 112},
	} {
		if got := OOMScoreAdj(c.class, c.request, c.node); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

func TestSaturatedQuantities(t *testing.T) {
	q := resource.MustParse
	for _, c := range []struct {
		q     resource.Quantity
		scale resource.Scale
		want  int64
	}{
		{q("100m"), resource.Milli, 100},
		{q("1.5"), resource.Milli, 1500},
		{q("0.5m"), resource.Milli, 1}, // rounded up, as Kubernetes does
		{q("1e11"), resource.Milli, 1e14},
		{q("1e13"), resource.Milli, 1e16},
		{q("1e16"), resource.Milli, math.MaxInt64},
		{q("1e30"), 0, math.MaxInt64},
		{q("8Ei"), 0, math.MaxInt64},
		{q("-1e30"), 0, math.MinInt64},
		{q("64Mi"), 0, 64 << 20},
	} {
		got := wholeValue(c.q)
		if c.scale == resource.Milli {
			got = milliValue(c.q)
		}
		if got != c.want {
			t.Errorf("%s at scale %d = %d, want %d", c.q.String(), c.scale, got, c.want)
		}
	}
}

// TestTranslateSetsQoS: the translated pod carries its class and every
// container, init containers included, its OOM score; the API shows the
// class in status.qosClass.
func TestTranslateSetsQoS(t *testing.T) {
	p := qosPod([]spec.ResourceRequirements{res()}, res("memory=1Gi", "|", "memory=2Gi"), res("cpu=1", "|", "cpu=2"))
	p.Metadata.Name = "burst"
	p.Spec.InitContainers[0].Image = "busybox:1.36"
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].Image = "busybox:1.36"
	}
	d, err := Translator{NodeMemory: 16 << 30}.Pod(p, "/m/burst.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.QOSClass != QOSBurstable {
		t.Errorf("class %s", d.QOSClass)
	}
	want := map[string]int{"inita": 999, "ca": 938, "cb": 999}
	for _, c := range append(append([]DesiredContainer{}, d.Init...), d.Containers...) {
		if c.Config.OOMScoreAdj == nil || *c.Config.OOMScoreAdj != want[c.Name] {
			t.Errorf("%s: OOMScoreAdj %v, want %d", c.Name, c.Config.OOMScoreAdj, want[c.Name])
		}
	}
	// The scores arrive at the runtime with each start.
	f := fake.New()
	arrived := map[string]int{}
	f.OnStart(func(cfg *runtime.ContainerConfig) (bool, int) {
		if cfg.OOMScoreAdj != nil {
			arrived[cfg.Name] = *cfg.OOMScoreAdj
		}
		return cfg.Annotations[AnnotationInit] == "true", 0
	})
	r := New(Config{Runtime: f, Images: f, Log: zerolog.Nop()})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	k := runtime.PodKey{Namespace: "default", Name: "burst"}
	got, ok := r.Pod(k)
	if !ok || got.Status.QOSClass != QOSBurstable {
		t.Errorf("status.qosClass before the first pass = %q (known %v)", got.Status.QOSClass, ok)
	}
	syncUntilStable(t, r, k)
	if got, _ := r.Pod(k); got.Status.QOSClass != QOSBurstable {
		t.Errorf("status.qosClass = %q", got.Status.QOSClass)
	}
	for name, adj := range want {
		if arrived[name] != adj {
			t.Errorf("%s started with OOMScoreAdj %d, want %d", name, arrived[name], adj)
		}
	}
}

// TestTranslateSaturates: quantities beyond an int64 become the largest
// limit, never 0 ("no limit") or a wrapped number.
func TestTranslateSaturates(t *testing.T) {
	p := &spec.Pod{}
	p.Metadata.Name = "huge"
	p.Spec.Containers = []spec.Container{{Name: "c", Image: "busybox:1.36",
		Resources: res("cpu=1e13", "memory=1e30", "|", "cpu=1e16", "memory=1e30")}}
	d, err := Translator{}.Pod(p, "/m/huge.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.Resources{CPURequestMilli: 1e16, CPULimitMilli: math.MaxInt64, MemoryRequest: math.MaxInt64, MemoryLimit: math.MaxInt64}
	if got := d.Containers[0].Config.Resources; got != want {
		t.Errorf("resources %+v, want %+v", got, want)
	}
}
