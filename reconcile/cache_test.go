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

// An idle pass reads nothing from the runtime, and an idle resync lists the
// sandboxes once and queues no pod: the steady state costs nothing per pod
// beyond one sandbox record every resync.
func TestIdleReadsNothing(t *testing.T) {
	r, f, _ := newHarness(t)
	ctx := context.Background()
	keys := runningPods(t, r, 5)
	if err := r.Resync(ctx); err != nil { // the first one is the full one
		t.Fatal(err)
	}
	serveQueue(r)
	reads, lists, lctrs := f.Reads(), f.Calls(fake.OpListSandboxes), f.Calls(fake.OpListContainers)
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
	if got := f.Reads() - reads; got != 5 {
		t.Errorf("an idle resync read %d objects, want the 5 sandboxes", got)
	}
	if got := f.Calls(fake.OpListContainers); got != lctrs {
		t.Errorf("an idle resync listed containers")
	}
}

// How a change made behind the reconciler's back reaches it.
type via int

const (
	viaEvent      via = iota // the runtime's exit event
	viaResync                // the periodic resync's sandbox check
	viaFullResync            // only the full resync's listing
)

// The cache never hides a change made behind the reconciler's back: each
// kind of change reaches the pod's next pass through the exit event, the
// resync or the full resync, and the pod converges again.
func TestCacheNeverHidesAChange(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, f *fake.Runtime, sb *runtime.Sandbox, c *runtime.Container)
		via    via
	}{
		{"container exits", func(t *testing.T, f *fake.Runtime, _ *runtime.Sandbox, c *runtime.Container) {
			_ = f.Exit(c.ID, 3)
		}, viaEvent},
		{"container exits, event lost", func(t *testing.T, f *fake.Runtime, _ *runtime.Sandbox, c *runtime.Container) {
			_ = f.Exit(c.ID, 3)
		}, viaFullResync},
		{"pause dies with its containers", func(t *testing.T, f *fake.Runtime, sb *runtime.Sandbox, _ *runtime.Container) {
			_ = f.KillSandbox(sb.ID)
		}, viaEvent},
		{"pause dies after its containers", func(t *testing.T, f *fake.Runtime, sb *runtime.Sandbox, c *runtime.Container) {
			_ = f.Exit(c.ID, 0)
			_ = f.KillSandbox(sb.ID)
		}, viaResync},
		{"sandbox deleted under the agent", func(t *testing.T, f *fake.Runtime, sb *runtime.Sandbox, _ *runtime.Container) {
			_ = f.RemoveSandbox(ctx, sb.ID)
		}, viaResync},
		{"container deleted under the agent", func(t *testing.T, f *fake.Runtime, _ *runtime.Sandbox, c *runtime.Container) {
			_ = f.RemoveContainer(ctx, c.ID)
		}, viaFullResync},
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
			serveQueue(r)
			tc.change(t, f, sb, c)
			// Exit events are delivered only where the case says: a lost
			// one is as if a full watch channel had dropped it.
			switch tc.via {
			case viaEvent:
				drain()
			case viaResync:
				if err := r.Resync(ctx); err != nil {
					t.Fatal(err)
				}
			case viaFullResync:
				if err := r.Resync(ctx); err != nil {
					t.Fatal(err)
				}
				if r.q.Len() != 0 {
					t.Fatalf("a periodic resync found a change only the full one can see: the test is wrong")
				}
				clk.Advance(DefaultFullResync)
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
	r.absorbListingLocked(boxes, ctrs, true, since, false, runtime.PodKey{})
	r.mu.Unlock()
	if p, err := r.Sync(ctx, d.Key); err != nil || !p.Empty() {
		t.Fatalf("after the old listing the pod is planned again: %v %s", err, p.String())
	}
	if got, _ := f.ListSandboxes(ctx); len(got) != 3 {
		t.Errorf("%d sandboxes, want 3", len(got))
	}
}

// serveQueue runs a pass for each queued pod, as the workers would, until
// the queue is empty.
func serveQueue(r *Reconciler) {
	for r.q.Len() > 0 {
		k, _ := r.q.Get()
		r.pass(context.Background(), k)
		r.q.Done(k)
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
