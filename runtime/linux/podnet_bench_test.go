package linux

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

func medianOf(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPodStartHostPort measures sandbox creation with one published
// hostPort against the same sandbox without ports, interleaved in one run
// so machine noise hits both alike, and reports both medians and their
// ratio; removal likewise. Run it with a fixed count, e.g.
// -benchtime=40x.
func BenchmarkPodStartHostPort(b *testing.B) {
	e := newNetEnv(b)
	r := e.open(b)
	ctx := context.Background()
	cfg := func(name string, port bool) *runtime.SandboxConfig {
		c := &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "bench", Name: name}}
		if port {
			c.Ports = []runtime.PortMapping{{Protocol: runtime.ProtocolTCP, ContainerPort: 80, HostPort: e.hostPort}}
		}
		return c
	}
	// Warm up: the bridge and the table are made once per node, not per pod.
	for _, port := range []bool{false, true} {
		sb, err := r.CreateSandbox(ctx, cfg("warm", port))
		if err != nil {
			b.Fatal(err)
		}
		if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
	}
	var create, remove [2][]time.Duration // [0] no ports, [1] one hostPort
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for v, port := range []bool{false, true} {
			t0 := time.Now()
			sb, err := r.CreateSandbox(ctx, cfg(fmt.Sprintf("b%d-%d", i, v), port))
			t1 := time.Now()
			if err != nil {
				b.Fatal(err)
			}
			if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
				b.Fatal(err)
			}
			create[v] = append(create[v], t1.Sub(t0))
			remove[v] = append(remove[v], time.Since(t1))
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	c0, c1 := medianOf(create[0]), medianOf(create[1])
	r0, r1 := medianOf(remove[0]), medianOf(remove[1])
	b.ReportMetric(ms(c0), "create-noport-ms")
	b.ReportMetric(ms(c1), "create-hostport-ms")
	b.ReportMetric(float64(c1)/float64(c0), "create-ratio")
	b.ReportMetric(ms(r0), "remove-noport-ms")
	b.ReportMetric(ms(r1), "remove-hostport-ms")
	b.ReportMetric(float64(r1)/float64(r0), "remove-ratio")
	b.ReportMetric(0, "ns/op")
	checkNoPodRules(b, r)
}
