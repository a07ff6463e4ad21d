package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// clock is a manual clock shared by the fake runtime and the reconciler, so
// crash-loop backoff can be driven without waiting.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newHarness(t *testing.T) (*Reconciler, *fake.Runtime, *clock) {
	t.Helper()
	f := fake.New()
	clk := &clock{now: fake.Epoch}
	f.SetClock(clk.Now)
	initsComplete(f, 0)
	r := New(Config{Runtime: f, Images: f, Now: clk.Now, Log: zerolog.Nop(), Workers: 4,
		StepBackoff: StepBackoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}})
	return r, f, clk
}

// initsComplete makes init containers exit at once with code, as a real
// short init step does; app containers keep running.
func initsComplete(f *fake.Runtime, code int) {
	f.OnStart(func(cfg *runtime.ContainerConfig) (bool, int) {
		return cfg.Annotations[AnnotationInit] == "true", code
	})
}

func key(name string) runtime.PodKey { return runtime.PodKey{Namespace: "default", Name: name} }

func mkPod(name, sbHash string, restart RestartPolicy, inits int, ctrs map[string]string) *DesiredPod {
	// Init containers run once per sandbox, so their set is part of the
	// sandbox hash (translate does the same).
	d := &DesiredPod{Key: key(name), Source: "/m/" + name + ".yaml", SandboxHash: fmt.Sprintf("%s/init%d", sbHash, inits), Restart: restart, Grace: time.Second,
		Sandbox: runtime.SandboxConfig{Hostname: name}}
	for i := range inits {
		c := dc(fmt.Sprintf("init%d", i), "ih")
		c.Init = true
		d.Init = append(d.Init, c)
	}
	names := make([]string, 0, len(ctrs))
	for n := range ctrs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		d.Containers = append(d.Containers, dc(n, ctrs[n]))
	}
	return d
}

// exitFeed delivers the fake's exit events to the reconciler as Run's
// watch does, but only when the test drains it, so passes stay
// deterministic.
func exitFeed(t *testing.T, r *Reconciler, f *fake.Runtime) (drain func()) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := f.WatchExits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		for {
			select {
			case ev := <-ch:
				r.noteExit(ev)
			default:
				return
			}
		}
	}
}

// syncUntilStable runs passes for key until a pass plans nothing, as the
// workers would, and fails if that never happens.
func syncUntilStable(t *testing.T, r *Reconciler, k runtime.PodKey) Plan {
	t.Helper()
	for i := 0; i < 20; i++ {
		p, err := r.Sync(context.Background(), k)
		if err == nil && p.Empty() {
			return p
		}
	}
	p, err := r.Plan(context.Background(), k)
	t.Fatalf("pod %s did not settle in 20 passes: err=%v\n%s", k, err, p.String())
	return p
}

// checkConverged proves the runtime holds exactly the desired pods: one
// ready sandbox each with the desired hash, every app container of the
// current spec present (or, after a sandbox died, ended for good under the
// restart policy as the pod's status says), nothing else.
func checkConverged(t *testing.T, f *fake.Runtime, want map[runtime.PodKey]*DesiredPod, r ...*Reconciler) {
	t.Helper()
	ctx := context.Background()
	boxes, _ := f.ListSandboxes(ctx)
	seen := map[runtime.PodKey]int{}
	for _, s := range boxes {
		seen[s.Pod]++
		d := want[s.Pod]
		if d == nil {
			t.Errorf("sandbox %s of undesired pod %s left", s.ID, s.Pod)
			continue
		}
		if s.Hash() != d.SandboxHash || s.State != runtime.SandboxReady {
			t.Errorf("pod %s: sandbox %s hash %q state %s, want %q ready", s.Pod, s.ID, s.Hash(), s.State, d.SandboxHash)
		}
		cs, _ := f.ListContainers(ctx, runtime.ContainerFilter{SandboxID: s.ID})
		current := map[string]*runtime.Container{}
		for _, c := range cs {
			if cur := current[c.Name]; cur == nil || c.Attempt > cur.Attempt {
				current[c.Name] = c
			}
		}
		for _, c := range d.Containers {
			cur := current[c.Name]
			if cur == nil && len(r) > 0 && endedForGood(r[0], d, c.Name) {
				continue
			}
			if cur == nil || cur.Hash() != c.Hash {
				t.Errorf("pod %s: container %s missing or stale: %+v", s.Pod, c.Name, cur)
			} else if ShouldRestart(d.Restart, cur.ExitCode) && cur.State != runtime.ContainerRunning {
				t.Errorf("pod %s: container %s is %s under %s", s.Pod, c.Name, cur.State, d.Restart)
			}
		}
		for n := range current {
			if r := slices.IndexFunc(append(slices.Clone(d.Containers), d.Init...), func(x DesiredContainer) bool { return x.Name == n }); r < 0 {
				t.Errorf("pod %s: container %s not in the manifest", s.Pod, n)
			}
		}
	}
	for k := range want {
		if seen[k] != 1 {
			t.Errorf("pod %s: %d sandboxes, want 1", k, seen[k])
		}
	}
	all, _ := f.ListContainers(ctx, runtime.ContainerFilter{})
	for _, c := range all {
		if want[c.Pod] == nil {
			t.Errorf("container %s of undesired pod %s left", c.ID, c.Pod)
		}
	}
}

// endedForGood reports whether the reconciler shows container name of d
// as terminated for good: it ran in a sandbox that died and its restart
// policy does not run it again.
func endedForGood(r *Reconciler, d *DesiredPod, name string) bool {
	p, ok := r.Pod(d.Key)
	if !ok {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == name {
			t := cs.State.Terminated
			return t != nil && !ShouldRestart(d.Restart, t.ExitCode)
		}
	}
	return false
}

func TestConvergenceRandom(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			r, f, clk := newHarness(t)
			// Changes made behind the reconciler's back reach it as in the
			// agent: exits through exit events, the rest (a pause that
			// dies with no container running) through the resync.
			drain := exitFeed(t, r, f)
			policies := []RestartPolicy{RestartAlways, RestartOnFailure, RestartNever}
			randomSet := func() map[runtime.PodKey]*DesiredPod {
				set := map[runtime.PodKey]*DesiredPod{}
				for i := range 5 {
					if rng.IntN(3) == 0 {
						continue
					}
					ctrs := map[string]string{}
					for j := range 1 + rng.IntN(3) {
						ctrs[fmt.Sprint("c", j)] = fmt.Sprint("h", rng.IntN(2))
					}
					d := mkPod(fmt.Sprint("p", i), fmt.Sprint("s", rng.IntN(2)), policies[rng.IntN(3)], rng.IntN(2), ctrs)
					set[d.Key] = d
				}
				return set
			}
			// A random starting state: whatever earlier desired sets left,
			// with random exits and dead sandboxes on top.
			var want map[runtime.PodKey]*DesiredPod
			for round := range 6 {
				want = randomSet()
				var pods []*DesiredPod
				for _, d := range want {
					pods = append(pods, d)
				}
				r.SetDesired(DesiredSet{Pods: pods})
				if round%2 == 1 {
					f.Inject(fake.Failure{Op: fake.OpStartContainer, Times: 2, Err: errors.New("injected start failure")})
					f.Inject(fake.Failure{Op: fake.OpCreateSandbox, Times: 1, Err: errors.New("injected crash"), HalfDone: true})
				}
				initsComplete(f, rng.IntN(2))
				for i := range 5 {
					syncFor(r, key(fmt.Sprint("p", i)), 1+rng.IntN(3))
				}
				ctx := context.Background()
				cs, _ := f.ListContainers(ctx, runtime.ContainerFilter{})
				for _, c := range cs {
					if c.State == runtime.ContainerRunning && rng.IntN(3) == 0 {
						_ = f.Exit(c.ID, rng.IntN(2))
					}
				}
				boxes, _ := f.ListSandboxes(ctx)
				for _, s := range boxes {
					if rng.IntN(6) == 0 {
						_ = f.KillSandbox(s.ID)
					}
				}
				drain()
				if rng.IntN(2) == 0 {
					if err := r.Resync(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			f.ClearFailures()
			initsComplete(f, 0)
			if err := r.Resync(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Converge: let every backoff run out, run passes until stable.
			for range 8 {
				clk.Advance(time.Hour)
				for i := range 5 {
					drain()
					syncUntilStable(t, r, key(fmt.Sprint("p", i)))
				}
			}
			// Never-restarting pods may have exited init containers that
			// failed: their apps never start. Leave those out of the check.
			for k, d := range want {
				if d.Restart == RestartNever && len(d.Init) > 0 {
					obs, _ := r.Observe(context.Background(), k)
					for _, c := range obs.Containers {
						if c.Name == "init0" && c.State == runtime.ContainerExited && c.ExitCode != 0 {
							t.Logf("pod %s failed its init container under Never: apps rightly never start", k)
							d = nil
						}
					}
					if d == nil {
						w := *want[k]
						w.Containers = nil
						want[k] = &w
					}
				}
			}
			checkConverged(t, f, want, r)
			// And removing everything leaves nothing.
			r.SetDesired(DesiredSet{})
			for i := range 5 {
				syncUntilStable(t, r, key(fmt.Sprint("p", i)))
			}
			checkConverged(t, f, nil)
		})
	}
}

func syncFor(r *Reconciler, k runtime.PodKey, n int) {
	for range n {
		_, _ = r.Sync(context.Background(), k)
	}
}

func TestUnchangedIsNoop(t *testing.T) {
	r, f, _ := newHarness(t)
	d := mkPod("web", "s", RestartAlways, 1, map[string]string{"a": "1", "b": "2"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	syncUntilStable(t, r, d.Key)
	obs1, _ := r.Observe(context.Background(), d.Key)
	starts := f.Calls(fake.OpStartContainer)
	// Same content again (a rewrite of identical bytes gives equal hashes).
	again := mkPod("web", "s", RestartAlways, 1, map[string]string{"a": "1", "b": "2"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{again}})
	syncUntilStable(t, r, d.Key)
	obs2, _ := r.Observe(context.Background(), d.Key)
	if f.Calls(fake.OpStartContainer) != starts {
		t.Errorf("identical manifest started containers: %d -> %d", starts, f.Calls(fake.OpStartContainer))
	}
	pids := func(o ObservedPod) (out []int) {
		for _, c := range o.Containers {
			out = append(out, c.PID)
		}
		return
	}
	if !slices.Equal(pids(obs1), pids(obs2)) || obs1.Sandboxes[0].ID != obs2.Sandboxes[0].ID {
		t.Errorf("identical manifest changed the pod: %v -> %v", pids(obs1), pids(obs2))
	}
}

func TestOneContainerChangeRestartsOnlyIt(t *testing.T) {
	r, f, _ := newHarness(t)
	d := mkPod("web", "s", RestartAlways, 0, map[string]string{"a": "1", "b": "2"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	syncUntilStable(t, r, d.Key)
	before, _ := r.Observe(context.Background(), d.Key)
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{mkPod("web", "s", RestartAlways, 0, map[string]string{"a": "1", "b": "3"})}})
	syncUntilStable(t, r, d.Key)
	after, _ := r.Observe(context.Background(), d.Key)
	if before.Sandboxes[0].ID != after.Sandboxes[0].ID {
		t.Fatalf("sandbox recreated for a container change")
	}
	byName := func(o ObservedPod, n string) *runtime.Container {
		var cur *runtime.Container
		for _, c := range o.Containers {
			if c.Name == n && (cur == nil || c.Attempt > cur.Attempt) {
				cur = c
			}
		}
		return cur
	}
	if byName(before, "a").ID != byName(after, "a").ID {
		t.Errorf("container a restarted though unchanged")
	}
	if b := byName(after, "b"); b.Hash() != "3" || b.Attempt != 1 || b.State != runtime.ContainerRunning {
		t.Errorf("container b: %+v", b)
	}
	_ = f
}

func TestLastKnownGood(t *testing.T) {
	r, f, _ := newHarness(t)
	d := mkPod("web", "s", RestartAlways, 0, map[string]string{"a": "1"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	syncUntilStable(t, r, d.Key)
	// The file breaks: the pod is not in the load, the file has an error.
	r.SetDesired(DesiredSet{Errors: []FileError{{File: d.Source, Field: "spec.containers[0].image", Message: "required"}}})
	syncUntilStable(t, r, d.Key)
	boxes, _ := f.ListSandboxes(context.Background())
	if len(boxes) != 1 {
		t.Fatalf("broken manifest removed the pod: %d sandboxes", len(boxes))
	}
	pods := r.Pods()
	if len(pods) != 1 || pods[0].Status.Pelagos.LastError == nil || !pods[0].Status.Pelagos.Stale ||
		pods[0].Status.Pelagos.LastError.Field != "spec.containers[0].image" {
		t.Fatalf("error not visible in status: %+v", pods)
	}
	found := false
	for _, ev := range r.Events().List() {
		if ev.Reason == "InvalidManifest" && ev.Type == EventWarning {
			found = true
		}
	}
	if !found {
		t.Errorf("no InvalidManifest event")
	}
	// Directory unavailable: no truth, nothing removed.
	r.SetDesired(DesiredSet{Unavailable: errors.New("open /m: no such file or directory")})
	syncUntilStable(t, r, d.Key)
	if boxes, _ := f.ListSandboxes(context.Background()); len(boxes) != 1 {
		t.Fatalf("missing directory removed pods")
	}
	// The file goes: the pod goes.
	r.SetDesired(DesiredSet{})
	syncUntilStable(t, r, d.Key)
	checkConverged(t, f, nil)
	if len(r.Pods()) != 0 {
		t.Errorf("removed pod still listed")
	}
}

func TestCrashLoopBackOffGrows(t *testing.T) {
	r, f, clk := newHarness(t)
	f.OnStart(func(*runtime.ContainerConfig) (bool, int) { return true, 1 })
	d := mkPod("crash", "s", RestartAlways, 0, map[string]string{"a": "1"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	var delays []time.Duration
	for range 5 {
		p := syncUntilStable(t, r, d.Key)
		if len(p.Waits) != 1 || p.Waits[0].Reason != "CrashLoopBackOff" {
			t.Fatalf("want CrashLoopBackOff wait, got %s", p.String())
		}
		delays = append(delays, p.RequeueAfter.Round(time.Second))
		st := r.Pods()[0].Status
		if w := st.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "CrashLoopBackOff" {
			t.Fatalf("status: %+v", st.ContainerStatuses[0])
		}
		clk.Advance(p.RequeueAfter)
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second}
	if !slices.Equal(delays, want) {
		t.Errorf("delays %v, want %v", delays, want)
	}
	if rc := r.Pods()[0].Status.ContainerStatuses[0].RestartCount; rc != 4 {
		t.Errorf("restartCount %d, want 4", rc)
	}
}

// Image pulls follow kubelet's back-off (issue 16: 7 retries in 8 s):
// ErrImagePull right after a failure, then ImagePullBackOff naming the next
// attempt, 10 s doubling to 5 min, with no pull in between however many
// passes run; a changed manifest or a successful pull starts over.
func TestImagePullBackOff(t *testing.T) {
	r, f, clk := newHarness(t)
	ctx := context.Background()
	f.Inject(fake.Failure{Op: fake.OpEnsureImage, Err: errors.New("registry unreachable")})
	d := mkPod("img", "s", RestartAlways, 0, map[string]string{"a": "1"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	waiting := func() *StateWaiting { return r.Pods()[0].Status.ContainerStatuses[0].State.Waiting }
	if _, err := r.Sync(ctx, d.Key); err == nil {
		t.Fatal("pull failure not reported")
	}
	if w := waiting(); w == nil || w.Reason != "ErrImagePull" || !strings.Contains(w.Message, "registry unreachable") {
		t.Fatalf("want ErrImagePull with the error, got %+v", w)
	}
	var delays []time.Duration
	for round := range 7 {
		pulls := f.Calls(fake.OpEnsureImage)
		var p Plan
		for range 20 { // many passes: the workers' retries, resyncs
			p, _ = r.Sync(ctx, d.Key)
		}
		if got := f.Calls(fake.OpEnsureImage); got != pulls {
			t.Fatalf("round %d: %d pulls during the back-off", round, got-pulls)
		}
		w := waiting()
		if w == nil || w.Reason != "ImagePullBackOff" || !strings.Contains(w.Message, "next attempt at ") ||
			!strings.Contains(w.Message, `"busybox:1"`) {
			t.Fatalf("round %d: want ImagePullBackOff naming the next attempt, got %+v", round, w)
		}
		delays = append(delays, p.RequeueAfter.Round(time.Second))
		clk.Advance(p.RequeueAfter)
		if _, err := r.Sync(ctx, d.Key); err == nil {
			t.Fatal("retried pull did not fail")
		}
		if got := f.Calls(fake.OpEnsureImage); got != pulls+1 {
			t.Fatalf("round %d: %d pulls after the back-off, want 1", round, got-pulls)
		}
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	if !slices.Equal(delays, want) {
		t.Errorf("pull back-offs %v, want %v", delays, want)
	}
	// The manifest changes (a new translation): the pull is tried at once.
	pulls := f.Calls(fake.OpEnsureImage)
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{mkPod("img", "s", RestartAlways, 0, map[string]string{"a": "1"})}})
	_, _ = r.Sync(ctx, d.Key)
	if f.Calls(fake.OpEnsureImage) != pulls+1 {
		t.Errorf("a changed manifest did not reset the pull back-off")
	}
	// The registry comes back: after the back-off the pull works and the
	// pod runs; a later failure starts from 10 s again.
	f.ClearFailures()
	clk.Advance(time.Hour)
	syncUntilStable(t, r, d.Key)
	if st := r.Pods()[0].Status; st.Phase != PhaseRunning || !st.ContainerStatuses[0].Ready {
		t.Fatalf("after recovery: %+v", st)
	}
	if n := len(r.mem[d.Key].pulls); n != 0 {
		t.Errorf("%d pull back-offs kept after a successful pull", n)
	}
}

// TestWorkersConverge runs the real machinery (queue, workers, exit watch)
// against the fake: many pods at once, a crash, then removal of all.
func TestWorkersConverge(t *testing.T) {
	f := fake.New()
	initsComplete(f, 0)
	r := New(Config{Runtime: f, Images: f, Log: zerolog.Nop(), Workers: 4, Resync: time.Hour,
		Backoff: BackoffPolicy{Initial: time.Millisecond, Max: 2 * time.Millisecond}})
	ctx := runInBackground(t, r)
	want := map[runtime.PodKey]*DesiredPod{}
	var pods []*DesiredPod
	for i := range 50 {
		d := mkPod(fmt.Sprint("p", i), "s", RestartAlways, i%2, map[string]string{"a": "1", "b": "1"})
		want[d.Key] = d
		pods = append(pods, d)
	}
	r.SetDesired(DesiredSet{Pods: pods})
	waitFor(t, "50 pods running", func() bool { return countRunning(r) == 50 })
	checkConverged(t, f, want)
	// A container exits: the exit watch brings it back.
	cs, _ := f.ListContainers(ctx, runtime.ContainerFilter{})
	for _, c := range cs {
		if c.Pod == key("p3") && c.Name == "a" && c.State == runtime.ContainerRunning {
			_ = f.Exit(c.ID, 1)
		}
	}
	waitFor(t, "p3/a restarted", func() bool {
		for _, p := range r.Pods() {
			if p.Metadata.Name == "p3" {
				return p.Status.ContainerStatuses[0].RestartCount == 1 && p.Status.ContainerStatuses[0].State.Running != nil
			}
		}
		return false
	})
	r.SetDesired(DesiredSet{})
	waitFor(t, "all gone", func() bool {
		boxes, _ := f.ListSandboxes(ctx)
		return len(boxes) == 0 && len(r.Pods()) == 0
	})
	checkConverged(t, f, nil)
}

// runInBackground runs the reconciler's machinery (workers, exit watch,
// resync timer) until the test ends, and returns its context.
func runInBackground(tb testing.TB, r *Reconciler) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	<-r.Started()
	return ctx
}

func countRunning(r *Reconciler) int {
	n := 0
	for _, p := range r.Pods() {
		if p.Status.Phase == PhaseRunning && allRunning(p.Status) {
			n++
		}
	}
	return n
}

// waitFor polls a condition the agent reaches asynchronously. The deadline
// only bounds a hang; nothing here measures speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
