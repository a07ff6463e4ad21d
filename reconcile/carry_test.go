package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// A dead pause forces a new sandbox; the restart count and the crash-loop
// back-off carry on as kubelet's do across sandbox recreation (issue 12):
// pause killed twice, the count keeps growing and the back-off doubles.
func TestRestartCountAndBackOffSurviveANewSandbox(t *testing.T) {
	r, f, clk := newHarness(t)
	ctx := context.Background()
	drain := exitFeed(t, r, f)
	d := mkPod("web", "s", RestartAlways, 0, map[string]string{"app": "1"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	syncUntilStable(t, r, d.Key)
	status := func() ContainerStatus { p, _ := r.Pod(d.Key); return p.Status.ContainerStatuses[0] }

	var delays []time.Duration
	sandboxes := map[string]bool{}
	for kill := 1; kill <= 2; kill++ {
		obs, _ := r.Observe(ctx, d.Key)
		sandboxes[obs.Sandboxes[0].ID] = true
		if err := f.KillSandbox(obs.Sandboxes[0].ID); err != nil {
			t.Fatal(err)
		}
		drain()
		p := syncUntilStable(t, r, d.Key)
		if len(p.Waits) != 1 || p.Waits[0].Reason != "CrashLoopBackOff" {
			t.Fatalf("kill %d: the new sandbox's container does not wait out a back-off: %s", kill, p.String())
		}
		if cs := status(); cs.RestartCount != kill-1 || cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" ||
			cs.LastState.Terminated == nil || cs.LastState.Terminated.ExitCode != 137 {
			t.Fatalf("kill %d: status while waiting %+v (last %+v)", kill, cs, cs.LastState.Terminated)
		}
		delays = append(delays, p.RequeueAfter.Round(time.Second))
		clk.Advance(p.RequeueAfter)
		syncUntilStable(t, r, d.Key)
		cs := status()
		if cs.RestartCount != kill || cs.State.Running == nil {
			t.Fatalf("kill %d: after the back-off: restarts %d, state %+v; want %d, running", kill, cs.RestartCount, cs.State, kill)
		}
	}
	obs, _ := r.Observe(ctx, d.Key)
	if sandboxes[obs.Sandboxes[0].ID] || len(sandboxes) != 2 {
		t.Fatalf("no new sandbox each time: %v, now %s", sandboxes, obs.Sandboxes[0].ID)
	}
	if want := []time.Duration{10 * time.Second, 20 * time.Second}; !slices.Equal(delays, want) {
		t.Errorf("back-offs %v, want %v (doubling across sandboxes)", delays, want)
	}
	c := obs.Containers[0]
	if c.Attempt != 2 || c.Annotations[AnnotationCrashCount] != "2" {
		t.Errorf("container in the third sandbox: attempt %d, crash count %s; want 2 and 2", c.Attempt, c.Annotations[AnnotationCrashCount])
	}
}

// Under restartPolicy Never, a pod whose sandbox died runs nothing again:
// it ends Failed, as kubelet's does, instead of starting afresh.
func TestNeverPodEndsWhenItsSandboxDies(t *testing.T) {
	r, f, _ := newHarness(t)
	ctx := context.Background()
	drain := exitFeed(t, r, f)
	d := mkPod("job", "s", RestartNever, 0, map[string]string{"work": "1"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	syncUntilStable(t, r, d.Key)
	obs, _ := r.Observe(ctx, d.Key)
	_ = f.KillSandbox(obs.Sandboxes[0].ID)
	drain()
	starts := f.Calls(fake.OpStartContainer)
	syncUntilStable(t, r, d.Key)
	if got := f.Calls(fake.OpStartContainer); got != starts {
		t.Errorf("the Never pod's container ran again (%d starts)", got-starts)
	}
	p, _ := r.Pod(d.Key)
	if p.Status.Phase != PhaseFailed || p.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Errorf("status %+v, want Failed with the container terminated", p.Status)
	}
}

// A container creation that fails with ErrInvalidConfig is terminal for
// that spec (issue 12, 16): CreateContainerConfigError with the message,
// retried only on the container back-off schedule (never a hot loop with a
// fresh container each time), each try counted as a restart; a changed
// manifest is tried at once.
func TestCreateContainerConfigErrorBacksOff(t *testing.T) {
	r, f, clk := newHarness(t)
	ctx := context.Background()
	bad := fmt.Errorf("start container %q: mountPath /proc: a mount over /proc is not allowed: %w", "app", runtime.ErrInvalidConfig)
	f.Inject(fake.Failure{Op: fake.OpStartContainer, Err: bad})
	d := mkPod("bad", "s", RestartAlways, 0, map[string]string{"app": "1"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	var delays []time.Duration
	var attempts []int
	f.OnStart(func(cfg *runtime.ContainerConfig) (bool, int) { return false, 0 })
	for round := range 4 {
		starts := f.Calls(fake.OpStartContainer)
		var p Plan
		for range 20 { // the worker's retries, resyncs, probes...
			p, _ = r.Sync(ctx, d.Key)
		}
		if got := f.Calls(fake.OpStartContainer) - starts; got != 1 {
			t.Fatalf("round %d: %d creations, want exactly 1 per back-off", round, got)
		}
		pod, _ := r.Pod(d.Key)
		cs := pod.Status.ContainerStatuses[0]
		if w := cs.State.Waiting; w == nil || w.Reason != "CreateContainerConfigError" || !strings.Contains(w.Message, "mount over /proc") ||
			!strings.Contains(w.Message, "next attempt at") {
			t.Fatalf("round %d: status %+v", round, cs.State.Waiting)
		}
		if cs.RestartCount != round {
			t.Errorf("round %d: RESTARTS %d, want %d (each failed creation counts)", round, cs.RestartCount, round)
		}
		delays = append(delays, p.RequeueAfter.Round(time.Second))
		attempts = append(attempts, r.mem[d.Key].starts["app"].Attempt)
		clk.Advance(p.RequeueAfter)
	}
	if want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second}; !slices.Equal(delays, want) {
		t.Errorf("creation back-offs %v, want %v", delays, want)
	}
	if !slices.Equal(attempts, []int{0, 1, 2, 3}) {
		t.Errorf("attempts %v, want a new one per try", attempts)
	}
	// The manifest is fixed: the new spec is tried at once, and runs.
	f.ClearFailures()
	fixed := mkPod("bad", "s", RestartAlways, 0, map[string]string{"app": "2"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{fixed}})
	syncUntilStable(t, r, d.Key)
	pod, _ := r.Pod(d.Key)
	if cs := pod.Status.ContainerStatuses[0]; cs.State.Running == nil || cs.RestartCount != 4 {
		t.Errorf("after the fix: %+v, want running with 4 restarts", cs)
	}
}

// Any other creation failure (CreateContainerError) backs off the same way
// instead of retrying on the step back-off.
func TestCreateContainerErrorBacksOff(t *testing.T) {
	r, f, clk := newHarness(t)
	ctx := context.Background()
	f.Inject(fake.Failure{Op: fake.OpStartContainer, Times: 2, Err: errors.New("shim did not start")})
	d := mkPod("flaky", "s", RestartAlways, 0, map[string]string{"app": "1"})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	for range 10 {
		_, _ = r.Sync(ctx, d.Key)
	}
	if n := f.Calls(fake.OpStartContainer); n != 1 {
		t.Fatalf("%d creations before the back-off ended, want 1", n)
	}
	pod, _ := r.Pod(d.Key)
	if w := pod.Status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "CreateContainerError" {
		t.Fatalf("status %+v", w)
	}
	clk.Advance(time.Hour)
	syncUntilStable(t, r, d.Key) // second failure, then back-off again
	clk.Advance(time.Hour)
	syncUntilStable(t, r, d.Key)
	pod, _ = r.Pod(d.Key)
	if cs := pod.Status.ContainerStatuses[0]; cs.State.Running == nil || cs.RestartCount != 2 {
		t.Errorf("after the failures: %+v, want running at restart 2", cs)
	}
}
