package linux

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// selfCPU is this process's user+system CPU time.
func selfCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkListing measures what the reconciler's resyncs cost the runtime
// on a node of 110 pods, each a sandbox with one running container: the
// CPU per pod of ListSandboxes (every resync) and of ListSandboxes plus
// ListContainers (the full resync, every minute), in this process. The
// baseline, in the same rounds, is the least a listing that trusts nothing
// in memory does: read each record file and each live process's
// /proc/PID/stat once. Medians of the rounds (-benchtime 20x: 20 rounds).
//
//	go test -run '^$' -bench BenchmarkListing -benchtime 20x ./runtime/linux/
func BenchmarkListing(b *testing.B) {
	const pods = 110
	e := newCtrEnv(b, nil)
	ctx := context.Background()
	var ids []string
	var pids []int
	for i := range pods {
		sb, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "bench", Name: fmt.Sprintf("l%d", i)}})
		if err != nil {
			b.Fatal(err)
		}
		cfg := e.config("c", "/bin/sleep", "1000")
		cfg.SandboxID = sb.ID
		c, err := e.rt.StartContainer(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, sb.ID)
		pids = append(pids, sb.PausePID, c.PID)
	}
	records, err := filepath.Glob(filepath.Join(e.cfg.RunRoot, "*", "*", "*.json"))
	if err != nil || len(records) < pods {
		b.Fatalf("records under the run root: %d, %v", len(records), err)
	}
	var boxes, full, floor []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := selfCPU(b)
		sbs, err := e.rt.ListSandboxes(ctx)
		if err != nil || len(sbs) != pods+1 {
			b.Fatalf("ListSandboxes: %d, %v", len(sbs), err)
		}
		t1 := selfCPU(b)
		ctrs, err := e.rt.ListContainers(ctx, runtime.ContainerFilter{})
		if err != nil || len(ctrs) != pods {
			b.Fatalf("ListContainers: %d, %v", len(ctrs), err)
		}
		t2 := selfCPU(b)
		for _, f := range records {
			if _, err := os.ReadFile(f); err != nil {
				b.Fatal(err)
			}
		}
		for _, pid := range pids {
			if _, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
				b.Fatal(err)
			}
		}
		t3 := selfCPU(b)
		boxes, full, floor = append(boxes, (t1-t0)/pods), append(full, (t2-t0)/pods), append(floor, (t3-t2)/pods)
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	mb, mf, fl := ctrMedian(boxes), ctrMedian(full), ctrMedian(floor)
	b.ReportMetric(us(mb), "µs-cpu/pod/ListSandboxes")
	b.ReportMetric(us(mf), "µs-cpu/pod/full-listing")
	b.ReportMetric(us(fl), "µs-cpu/pod/floor")
	b.ReportMetric(float64(mf)/float64(fl), "full/floor")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d pods, %d record files: ListSandboxes %.1f µs/pod, + ListContainers %.1f µs/pod; floor (read every record and /proc/PID/stat once) %.1f µs/pod",
		pods, len(records), us(mb), us(mf), us(fl))
	for _, id := range ids {
		if err := e.rt.RemoveSandbox(ctx, id); err != nil {
			b.Error(err)
		}
	}
	e.check(b)
}
