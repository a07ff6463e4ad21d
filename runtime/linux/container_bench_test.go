package linux

import (
	"context"
	"fmt"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func ctrMedian(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ctrMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkContainer measures, in one existing sandbox, "StartContainer
// until the workload runs" and "stop + remove", next to a bare
// unshare(mnt+pid)+exec of the same binary measured in the same run, and
// reports the shim's proportional memory.
//
//	go test -run '^$' -bench BenchmarkContainer -benchtime 30x ./runtime/linux/
func BenchmarkContainer(b *testing.B) {
	e := newCtrEnv(b, nil)
	ctx := context.Background()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		b.Fatal("unshare(1) is needed for the baseline")
	}
	spareRT := openRuntime(b, &e.cfg)
	spareRT.SetImageStore(e.store)
	spareRT.EnableSpareShim()
	defer spareRT.DisableSpareShim()
	var start, spareStart, stop, base []time.Duration
	var pss, priv []int
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		c, err := e.rt.StartContainer(ctx, e.config(fmt.Sprintf("bench-%d", i), "/bin/sleep", "1000"))
		if err != nil {
			b.Fatal(err)
		}
		start = append(start, time.Since(t0))
		rec, _ := e.rt.containerRecord(c.ID)
		if st, err := rec.State(); err == nil {
			if p, pr, err := linuxtest.Smaps(st.Shim.PID); err == nil {
				pss, priv = append(pss, p), append(priv, pr)
			}
		}
		t0 = time.Now()
		if err := e.rt.StopContainer(ctx, c.ID, 0); err != nil {
			b.Fatal(err)
		}
		if err := e.rt.RemoveContainer(ctx, c.ID); err != nil {
			b.Fatal(err)
		}
		stop = append(stop, time.Since(t0))

		// The same with a spare shim waiting, as a long-running agent has.
		for ok, _ := spareRT.spareReady(); !ok; ok, _ = spareRT.spareReady() {
			time.Sleep(time.Millisecond)
		}
		t0 = time.Now()
		sc, err := spareRT.StartContainer(ctx, e.config(fmt.Sprintf("bench-spare-%d", i), "/bin/sleep", "1000"))
		if err != nil {
			b.Fatal(err)
		}
		spareStart = append(spareStart, time.Since(t0))
		if err := spareRT.RemoveContainer(ctx, sc.ID); err != nil {
			b.Fatal(err)
		}

		t0 = time.Now()
		if out, err := exec.Command(unshare, "--mount", "--pid", "--fork", "/bin/true").CombinedOutput(); err != nil {
			b.Fatalf("baseline: %v %s", err, out)
		}
		base = append(base, time.Since(t0))
	}
	b.ReportMetric(ctrMs(ctrMedian(start)), "start-ms")
	b.ReportMetric(ctrMs(ctrMedian(spareStart)), "start-spare-ms")
	b.ReportMetric(float64(ctrMedian(spareStart))/float64(ctrMedian(base)), "start-spare/unshare")
	b.ReportMetric(ctrMs(ctrMedian(stop)), "stop+rm-ms")
	b.ReportMetric(ctrMs(ctrMedian(base)), "unshare-ms")
	b.ReportMetric(float64(ctrMedian(start))/float64(ctrMedian(base)), "start/unshare")
	if len(pss) > 0 {
		slices.Sort(pss)
		slices.Sort(priv)
		b.ReportMetric(float64(pss[len(pss)/2]), "shim-pss-KiB")
		b.ReportMetric(float64(priv[len(priv)/2]), "shim-private-KiB")
	}
	b.ReportMetric(0, "ns/op") // the medians above are the figures
	spareRT.DisableSpareShim() // its spare is a process of the run root
	e.check(b)
}
