package linux

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// BenchmarkSandboxObserveVeth measures what checking each sandbox's host
// veth (it exists and is a port of the bridge) adds to a listing of 50
// sandboxes, against the listing itself and the other ways to ask, in the
// same run: one readlink in sysfs per sandbox (what observe does), one
// netlink request per sandbox (LinkByName), and one link dump per listing
// (LinkList). Medians per listing of 50, interleaved rounds.
func BenchmarkSandboxObserveVeth(b *testing.B) {
	e := newTestEnv(b)
	r := e.open(b)
	ctx := context.Background()
	const n = 50
	var veths []string
	for i := range n {
		sb, err := r.CreateSandbox(ctx, podConfig(fmt.Sprintf("obs%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		veths = append(veths, sb.VethHost)
	}
	brIdx, err := r.bridge()
	if err != nil {
		b.Fatal(err)
	}
	var list, sysfs, perLink, dump []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		sbs, err := r.ListSandboxes(ctx)
		if err != nil || len(sbs) != n {
			b.Fatalf("list: %d, %v", len(sbs), err)
		}
		t1 := time.Now()
		for _, v := range veths {
			if why := r.vethProblem(v); why != "" {
				b.Fatal(why)
			}
		}
		t2 := time.Now()
		for _, v := range veths {
			l, err := netlink.LinkByName(v)
			if err != nil || l.Attrs().MasterIndex != brIdx {
				b.Fatalf("veth %s: %v", v, err)
			}
		}
		t3 := time.Now()
		links, err := netlink.LinkList()
		if err != nil {
			b.Fatal(err)
		}
		ports := map[string]bool{}
		for _, l := range links {
			if l.Attrs().MasterIndex == brIdx {
				ports[l.Attrs().Name] = true
			}
		}
		for _, v := range veths {
			if !ports[v] {
				b.Fatalf("veth %s not in the dump", v)
			}
		}
		t4 := time.Now()
		list, sysfs, perLink, dump = append(list, t1.Sub(t0)), append(sysfs, t2.Sub(t1)), append(perLink, t3.Sub(t2)), append(dump, t4.Sub(t3))
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	ml, ms, mp, md := sbMedian(list), sbMedian(sysfs), sbMedian(perLink), sbMedian(dump)
	b.ReportMetric(us(ml), "list50-us")
	b.ReportMetric(us(ms), "check-sysfs50-us")
	b.ReportMetric(us(mp), "check-netlink50-us")
	b.ReportMetric(us(md), "check-dump-us")
	b.ReportMetric(float64(ms)/float64(ml), "sysfs/list")
	b.ReportMetric(float64(mp)/float64(ms), "netlink/sysfs")
	b.ReportMetric(float64(md)/float64(ms), "dump/sysfs")
	b.ReportMetric(0, "ns/op")
	for _, sb := range must(r.ListSandboxes(ctx)) {
		r.RemoveSandbox(ctx, sb.ID)
	}
	e.check(b)
}
