package reconcile

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// runningPods sets up n converged pods (one container each) and returns
// their keys.
func runningPods(t testing.TB, r *Reconciler, n int) []runtime.PodKey {
	var pods []*DesiredPod
	var keys []runtime.PodKey
	for i := range n {
		d := mkPod(fmt.Sprint("p", i), "s", RestartAlways, 0, map[string]string{"app": "1"})
		pods = append(pods, d)
		keys = append(keys, d.Key)
	}
	r.SetDesired(DesiredSet{Pods: pods})
	for _, k := range keys {
		for i := 0; ; i++ {
			p, err := r.Sync(context.Background(), k)
			if err == nil && p.Empty() {
				break
			}
			if i > 10 {
				t.Fatalf("pod %s did not settle: %v %s", k, err, p.String())
			}
		}
	}
	return keys
}

// An idle pass reads nothing from the runtime, and an idle resync lists
// once and queues no pod: the steady state costs nothing per pod.
func TestIdleReadsNothing(t *testing.T) {
	r, f, _ := newHarness(t)
	ctx := context.Background()
	keys := runningPods(t, r, 5)
	if err := r.Resync(ctx); err != nil { // the first one is the full one
		t.Fatal(err)
	}
	for r.q.Len() > 0 {
		k, _ := r.q.Get()
		r.pass(ctx, k)
		r.q.Done(k)
	}
	reads, lists := f.Reads(), f.Calls(fake.OpListSandboxes)
	for range 3 {
		for _, k := range keys {
			if p, err := r.Sync(ctx, k); err != nil || !p.Empty() {
				t.Fatalf("idle pass of %s: %v %s", k, err, p.String())
			}
		}
	}
	if got := f.Reads() - reads; got != 0 {
		t.Errorf("15 idle passes read %d objects, want 0", got)
	}
	if err := r.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := r.q.Len(); n != 0 {
		t.Errorf("an idle resync queued %d pods, want 0", n)
	}
	if got := f.Calls(fake.OpListSandboxes) - lists; got != 1 {
		t.Errorf("an idle resync listed sandboxes %d times, want 1", got)
	}
	if got := f.Reads() - reads; got != 10 {
		t.Errorf("an idle resync read %d objects, want 10 (5 sandboxes, 5 containers)", got)
	}
}

// The cache never hides a change made behind the reconciler's back: each
// kind of change reaches the pod's next pass through the exit event or the
// resync, and the pod converges again.
func TestCacheNeverHidesAChange(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, f *fake.Runtime, sb *runtime.Sandbox, c *runtime.Container)
		// events: the change is delivered as an exit event; otherwise
		// only the resync can find it.
		events bool
	}{
		{"container exits", func(t *testing.T, f *fake.Runtime, _ *runtime.Sandbox, c *runtime.Container) {
			_ = f.Exit(c.ID, 3)
		}, true},
		{"container exits, event lost", func(t *testing.T, f *fake.Runtime, _ *runtime.Sandbox, c *runtime.Container) {
			_ = f.Exit(c.ID, 3)
		}, false},
		{"pause dies with its containers", func(t *testing.T, f *fake.Runtime, sb *runtime.Sandbox, _ *runtime.Container) {
			_ = f.KillSandbox(sb.ID)
		}, true},
		{"pause dies after its containers", func(t *testing.T, f *fake.Runtime, sb *runtime.Sandbox, c *runtime.Container) {
			_ = f.Exit(c.ID, 0)
			_ = f.KillSandbox(sb.ID)
		}, false},
		{"sandbox deleted under the agent", func(t *testing.T, f *fake.Runtime, sb *runtime.Sandbox, _ *runtime.Container) {
			_ = f.RemoveSandbox(ctx, sb.ID)
		}, false},
		{"container deleted under the agent", func(t *testing.T, f *fake.Runtime, _ *runtime.Sandbox, c *runtime.Container) {
			_ = f.RemoveContainer(ctx, c.ID)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, f, clk := newHarness(t)
			drain := exitFeed(t, r, f)
			keys := runningPods(t, r, 3)
			k := keys[1]
			obs, _ := r.Observe(ctx, k)
			sb, c := obs.Sandboxes[0], obs.Containers[0]
			if err := r.Resync(ctx); err != nil { // the full one, at start
				t.Fatal(err)
			}
			tc.change(t, f, sb, c)
			if tc.events {
				drain()
			} else {
				// The exit events are never delivered, as when a full watch
				// channel drops them: only the resync tells.
				if err := r.Resync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if r.q.Len() == 0 {
				t.Fatalf("the change queued no pass")
			}
			clk.Advance(time.Hour) // any back-off over
			syncUntilStable(t, r, k)
			want := map[runtime.PodKey]*DesiredPod{}
			for _, k := range keys {
				want[k] = r.Desired(k)
			}
			checkConverged(t, f, want, r)
			p, _ := r.Pod(k)
			if cs := p.Status.ContainerStatuses[0]; cs.State.Running == nil {
				t.Errorf("status after the change: %+v", cs)
			}
		})
	}
}

// A pass racing a resync: what the pass did must survive the resync's
// older listing.
func TestResyncNeverUndoesANewerChange(t *testing.T) {
	r, f, _ := newHarness(t)
	ctx := context.Background()
	runningPods(t, r, 2)
	if err := r.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	// A listing taken before a new pod's sandbox existed...
	boxes, _ := f.ListSandboxes(ctx)
	ctrs, _ := f.ListContainers(ctx, runtime.ContainerFilter{})
	r.mu.Lock()
	since := r.gen
	r.mu.Unlock()
	// ...then the pod is created by a pass...
	d := mkPod("late", "s", RestartAlways, 0, map[string]string{"app": "1"})
	r.SetDesired(DesiredSet{Pods: append(desiredAll(r), d)})
	syncUntilStable(t, r, d.Key)
	// ...and the old listing is taken in afterwards.
	r.mu.Lock()
	r.absorbListingLocked(boxes, ctrs, since, false, runtime.PodKey{})
	r.mu.Unlock()
	if p, err := r.Sync(ctx, d.Key); err != nil || !p.Empty() {
		t.Fatalf("after the old listing the pod is planned again: %v %s", err, p.String())
	}
	if got, _ := f.ListSandboxes(ctx); len(got) != 3 {
		t.Errorf("%d sandboxes, want 3", len(got))
	}
}

func desiredAll(r *Reconciler) []*DesiredPod {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*DesiredPod
	for _, d := range r.desired {
		out = append(out, d)
	}
	return out
}
