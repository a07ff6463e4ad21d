package reconcile

import (
	"context"
	"fmt"
	goruntime "runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// steady is one measured node: n converged pods on the fake.
type steady struct {
	r    *Reconciler
	f    *fake.Runtime
	keys []runtime.PodKey
}

func newSteady(b *testing.B, n int) *steady {
	f := fake.New()
	r := New(Config{Runtime: f, Images: f, Log: zerolog.Nop(), MaxPods: -1})
	s := &steady{r: r, f: f, keys: runningPods(b, r, n)}
	if err := r.Resync(context.Background()); err != nil {
		b.Fatal(err)
	}
	serveQueue(s.r)
	return s
}

// idlePass is the CPU of one pass over every pod with nothing to do, per
// pod, and the objects read from the runtime per pass. With reread set
// every pod first forgets what it saw, so each pass reads its sandbox and
// containers again: what every pass cost before the cache.
func (s *steady) idlePass(b *testing.B, reread bool) (time.Duration, float64) {
	ctx := context.Background()
	if reread {
		s.r.mu.Lock()
		for _, k := range s.keys {
			s.r.obs[k].stale = true
		}
		s.r.mu.Unlock()
	}
	reads := s.f.Reads()
	t0 := cpuTime(b)
	for _, k := range s.keys {
		if reread {
			s.r.mu.Lock()
			s.r.obs[k].stale = true
			s.r.mu.Unlock()
		}
		if p, err := s.r.Sync(ctx, k); err != nil || !p.Empty() {
			b.Fatalf("idle pass of %s: %v %s", k, err, p.String())
		}
	}
	n := len(s.keys)
	return (cpuTime(b) - t0) / time.Duration(n), float64(s.f.Reads()-reads) / float64(n)
}

// resyncMode picks what resync measures.
type resyncMode int

const (
	periodic  resyncMode = iota // what runs every Resync
	fullCheck                   // the safety net every FullResync
	everyPod                    // the baseline: every pod passed, each re-reading its pod
)

// resync is the CPU of one resync and of the passes it queues, per pod,
// and the objects read per pod.
func (s *steady) resync(b *testing.B, mode resyncMode) (time.Duration, float64) {
	ctx := context.Background()
	reads := s.f.Reads()
	t0 := cpuTime(b)
	if mode != periodic {
		s.r.mu.Lock()
		s.r.lastFull = time.Time{}
		s.r.mu.Unlock()
	}
	if err := s.r.Resync(ctx); err != nil {
		b.Fatal(err)
	}
	if mode == everyPod {
		s.r.mu.Lock()
		for _, e := range s.r.obs {
			e.stale = true
		}
		s.r.mu.Unlock()
	}
	if q := s.r.q.Len(); mode == periodic && q != 0 {
		b.Fatalf("an idle resync queued %d pods", q)
	}
	serveQueue(s.r)
	n := len(s.keys)
	return (cpuTime(b) - t0) / time.Duration(n), float64(s.f.Reads()-reads) / float64(n)
}

// BenchmarkSteadyState measures what an idle node costs the reconciler at
// 10, 110 and 300 pods against runtime/fake: the CPU of an idle pass and of
// a periodic resync, per pod, and the objects read from the runtime. The
// baseline, in the same run, is the behaviour before the observed-state
// cache (every pass re-reads its pod; every resync passes every pod).
// Ratios are to 10 pods (flat means O(1) per pod) and to the baseline. The
// idle CPU share assumes the default periods: a resync every 10 s and a
// full one every minute. It is the reconciler's share: against runtime/linux
// each object read also costs the runtime its record.
func BenchmarkSteadyState(b *testing.B) {
	const rounds = 15
	sizes := []int{10, 110, 300}
	for i := 0; i < b.N; i++ {
		pass := map[int]time.Duration{}
		for _, n := range sizes {
			s := newSteady(b, n)
			var cached, reread, res, old, full []time.Duration
			var rdCached, rdReread, rdRes, rdOld float64
			for range rounds {
				d, rd := s.idlePass(b, false)
				cached, rdCached = append(cached, d), rd
				d, rd = s.idlePass(b, true)
				reread, rdReread = append(reread, d), rd
				d, rd = s.resync(b, periodic)
				res, rdRes = append(res, d), rd
				d, rd = s.resync(b, everyPod)
				old, rdOld = append(old, d), rd
				d, _ = s.resync(b, fullCheck)
				full = append(full, d)
			}
			pass[n] = median(cached)
			mr, mf := median(res), median(full)
			// CPU share of one core: n pods' resyncs every 10 s, full ones every minute.
			idle := (float64(mr)*float64(n)/float64(10*time.Second) + float64(mf)*float64(n)/float64(DefaultFullResync)) * 100
			b.ReportMetric(float64(median(cached).Nanoseconds())/1e3, fmt.Sprintf("µs-cpu/idle-pass/pod@%d", n))
			b.ReportMetric(float64(median(reread).Nanoseconds())/1e3, fmt.Sprintf("µs-cpu/reread-pass(baseline)/pod@%d", n))
			b.ReportMetric(float64(mr.Nanoseconds())/1e3, fmt.Sprintf("µs-cpu/resync/pod@%d", n))
			b.ReportMetric(float64(median(old).Nanoseconds())/1e3, fmt.Sprintf("µs-cpu/resync-every-pod(baseline)/pod@%d", n))
			b.ReportMetric(float64(mf.Nanoseconds())/1e3, fmt.Sprintf("µs-cpu/full-resync/pod@%d", n))
			b.ReportMetric(rdCached, fmt.Sprintf("reads/idle-pass/pod@%d", n))
			b.ReportMetric(rdReread, fmt.Sprintf("reads/reread-pass(baseline)/pod@%d", n))
			b.ReportMetric(rdRes, fmt.Sprintf("reads/resync/pod@%d", n))
			b.ReportMetric(rdOld, fmt.Sprintf("reads/resync-every-pod(baseline)/pod@%d", n))
			b.ReportMetric(idle, fmt.Sprintf("idle-cpu-%%-of-a-core@%d", n))
			if base := median(reread); base > 0 {
				b.ReportMetric(float64(median(cached))/float64(base), fmt.Sprintf("ratio-idle-pass/baseline@%d", n))
			}
			if base := median(old); base > 0 {
				b.ReportMetric(float64(mr)/float64(base), fmt.Sprintf("ratio-resync/baseline@%d", n))
			}
		}
		for _, n := range sizes[1:] {
			if pass[10] > 0 {
				b.ReportMetric(float64(pass[n])/float64(pass[10]), fmt.Sprintf("ratio-idle-pass/pod@%d-to-10", n))
			}
		}
	}
}

// sizes is what the reconciler holds, for the churn benchmark.
func (r *Reconciler) sizes() map[string]int {
	r.mu.Lock()
	out := map[string]int{"desired": len(r.desired), "status": len(r.status), "memory": len(r.mem),
		"cache": len(r.obs), "unsure": len(r.unsure), "admitted": len(r.admitted), "waiting": len(r.waitPos),
		"changedAt": len(r.changedAt)}
	r.mu.Unlock()
	r.q.mu.Lock()
	out["queue"] = len(r.q.order) + len(r.q.dirty) + len(r.q.processing) + len(r.q.timers)
	r.q.mu.Unlock()
	out["events"], out["eventIndex"] = r.events.Len()
	return out
}

// BenchmarkChurn runs 1,000 pod cycles through the real machinery (workers,
// queue, exit watch) against the fake, ten pods live at a time: each cycle
// writes a new pod and removes the oldest, and waits for both. After cycle
// 10, 500 and 1,000 it reports the live heap, the goroutines and the
// entries of every map the reconciler keeps. The event store fills up to
// its bound (1,000) in the first few hundred cycles; after that nothing
// may grow.
func BenchmarkChurn(b *testing.B) {
	const live, cycles = 10, 1000
	for i := 0; i < b.N; i++ {
		f := fake.New()
		r := New(Config{Runtime: f, Images: f, Log: zerolog.Nop(), Workers: 4, Resync: time.Hour})
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		<-r.Started()
		var pods []*DesiredPod
		report := func(cycle int) {
			goruntime.GC()
			var ms goruntime.MemStats
			goruntime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<10), fmt.Sprintf("heap-KiB@%d", cycle))
			b.ReportMetric(float64(goruntime.NumGoroutine()), fmt.Sprintf("goroutines@%d", cycle))
			total := 0
			for name, n := range r.sizes() {
				switch name {
				case "events", "eventIndex":
					// Bounded by the event store's size, reported apart.
				default:
					total += n
				}
			}
			ev, idx := r.events.Len()
			b.ReportMetric(float64(total), fmt.Sprintf("map-entries@%d", cycle))
			b.ReportMetric(float64(ev+idx), fmt.Sprintf("event-entries(bound-2000)@%d", cycle))
			boxes, _ := f.ListSandboxes(ctx)
			ctrs, _ := f.ListContainers(ctx, runtime.ContainerFilter{})
			b.ReportMetric(float64(len(boxes)+len(ctrs)), fmt.Sprintf("runtime-objects@%d", cycle))
		}
		for c := 1; c <= cycles; c++ {
			d := mkPod(fmt.Sprint("churn", c), "s", RestartAlways, 0, map[string]string{"app": "1"})
			pods = append(pods, d)
			var gone runtime.PodKey
			if len(pods) > live {
				gone = pods[0].Key
				pods = pods[1:]
			}
			r.SetDesired(DesiredSet{Pods: slices.Clone(pods)})
			waitForB(b, func() bool {
				p, ok := r.Pod(d.Key)
				_, still := r.Pod(gone)
				return ok && allRunning(p.Status) && p.Status.Phase == PhaseRunning && (gone.Name == "" || !still)
			})
			if c == 10 || c == 500 || c == cycles {
				report(c)
			}
		}
		stop()
		<-done
	}
}

func waitForB(b *testing.B, cond func() bool) {
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(50 * time.Microsecond)
	}
}
