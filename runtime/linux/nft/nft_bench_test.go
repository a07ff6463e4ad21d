package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// BenchmarkPublish measures what one hostPort adds to a pod's start and
// removal: AddPod and RemovePod (one netlink transaction each) on a node
// (inside a test namespace) that already holds 50 other published pods,
// next to Check, the read-only conflict test every pod start does, as the
// baseline. Reports medians; run with e.g. -benchtime=200x.
func BenchmarkPublish(b *testing.B) {
	n := newNode(b)
	pod := netip.MustParseAddr(n.ip("204", 2))
	for i := 0; i < 50; i++ {
		maps, err := n.mgr.Mappings(pod, []runtime.PortMapping{{ContainerPort: 80, HostPort: int32(10000 + i)}})
		if err != nil {
			b.Fatal(err)
		}
		if err := n.mgr.AddPod(fmt.Sprintf("other%d", i), maps); err != nil {
			b.Fatal(err)
		}
	}
	maps, err := n.mgr.Mappings(pod, []runtime.PortMapping{{ContainerPort: 80, HostPort: 8080}})
	if err != nil {
		b.Fatal(err)
	}
	var check, add, remove []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := n.mgr.Check("bench", maps); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := n.mgr.AddPod("bench", maps); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := n.mgr.RemovePod("bench"); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		check, add, remove = append(check, t1.Sub(t0)), append(add, t2.Sub(t1)), append(remove, t3.Sub(t2))
	}
	b.StopTimer()
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Nanoseconds()) / 1e3
	}
	c, a, r := med(check), med(add), med(remove)
	b.ReportMetric(c, "check-µs")
	b.ReportMetric(a, "addpod-µs")
	b.ReportMetric(r, "removepod-µs")
	b.ReportMetric(a/c, "add/check")
	b.ReportMetric(0, "ns/op")
}
