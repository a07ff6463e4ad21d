package reconcile

import (
	"context"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// A record the runtime sets aside becomes a Warning event naming where it
// went and why, on its pod (or on the node when it no longer names one);
// the pod's status shows it until the pod runs again from a fresh sandbox,
// which the reconciler makes as for any pod whose objects went away.
func TestSetAsideRecordsReported(t *testing.T) {
	r, f, clk := newHarness(t)
	ctx := context.Background()
	keys := runningPods(t, r, 2)
	if err := r.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	web, other := keys[0], keys[1]
	obs, _ := r.Observe(ctx, web)
	old := obs.Sandboxes[0].ID
	if err := f.CorruptRecord("sandbox", old, "unexpected end of JSON input", true); err != nil {
		t.Fatal(err)
	}
	obs2, _ := r.Observe(ctx, other)
	if err := f.CorruptRecord("container", obs2.Containers[0].ID, "unknown record version 9", false); err != nil {
		t.Fatal(err)
	}
	// The sandbox record is met by the periodic resync, the container
	// record by the full one, which lists containers.
	clk.Advance(DefaultFullResync)
	if err := r.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	var onPod, onNode bool
	for _, ev := range r.Events().List() {
		switch {
		case ev.Reason == "SandboxRecordCorrupt" && ev.InvolvedObject == podRef(web):
			onPod = ev.Type == EventWarning && strings.Contains(ev.Message, old+".sandbox.json.corrupt") &&
				strings.Contains(ev.Message, "unexpected end of JSON input")
		case ev.Reason == "ContainerRecordCorrupt" && ev.InvolvedObject.Kind == "Node":
			onNode = strings.Contains(ev.Message, "unknown record version 9")
		}
	}
	if !onPod || !onNode {
		t.Fatalf("events: on the pod %v, on the node %v:\n%+v", onPod, onNode, r.Events().List())
	}
	// The pod is queued and reconciled afresh (a new sandbox); its status
	// showed the record until it runs again.
	if r.q.Len() == 0 {
		t.Fatal("no pod queued")
	}
	syncUntilStable(t, r, web)
	syncUntilStable(t, r, other)
	p, _ := r.Pod(web)
	if p.Status.Phase != PhaseRunning || p.Status.Pelagos.SandboxID == old || p.Status.Pelagos.SetAside != nil {
		t.Errorf("after recovery: %+v", p.Status)
	}
	if p, _ := r.Pod(other); p.Status.Phase != PhaseRunning || p.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("pod whose container record went: %+v", p.Status)
	}
}

// While the pod is not running again, its status names the set-aside
// record.
func TestSetAsideShownUntilRunning(t *testing.T) {
	r, f, _ := newHarness(t)
	ctx := context.Background()
	keys := runningPods(t, r, 1)
	obs, _ := r.Observe(ctx, keys[0])
	_ = f.CorruptRecord("sandbox", obs.Sandboxes[0].ID, "garbage", true)
	f.FailNext(fake.OpCreateSandbox, context.DeadlineExceeded)
	if err := r.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	_, _ = r.Sync(ctx, keys[0]) // the new sandbox fails once
	p, _ := r.Pod(keys[0])
	if sa := p.Status.Pelagos.SetAside; len(sa) != 1 || sa[0].ID != obs.Sandboxes[0].ID || sa[0].Reason != "garbage" || sa[0].Path == "" {
		t.Fatalf("status while recovering: %+v", p.Status.Pelagos)
	}
}
