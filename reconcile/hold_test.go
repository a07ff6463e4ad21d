package reconcile

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/spec"
	"github.com/pelagos-containers/pelagos-agent/spec/node"
)

func held(d *DesiredPod, reason, msg string) *DesiredPod {
	c := *d
	c.Hold = &Hold{Reason: reason, Message: msg}
	return &c
}

// A pod meant for another node owns nothing, is Pending with the reason,
// holds no place among MaxPods and is no error; when its match changes it
// starts, and when it changes back what it runs is removed.
func TestHeldPodOwnsNothingAndFollowsItsMatch(t *testing.T) {
	f := fake.New()
	clk := &clock{now: fake.Epoch}
	f.SetClock(clk.Now)
	r := New(Config{Runtime: f, Images: f, Now: clk.Now, Log: zerolog.Nop(), MaxPods: 1})
	ctx := context.Background()
	if err := r.Resync(ctx); err != nil { // a first listing: admission may start
		t.Fatal(err)
	}
	web := mkPod("web", "s", RestartAlways, 0, map[string]string{"app": "1"})
	other := held(mkPod("other", "s", RestartAlways, 0, map[string]string{"app": "1"}), ReasonNodeMismatch,
		"nodeSelector disktype=ssd does not match (the node has no label disktype)")
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{other, web}})
	syncUntilStable(t, r, other.Key)
	syncUntilStable(t, r, web.Key)

	boxes, _ := f.ListSandboxes(ctx)
	if len(boxes) != 1 || boxes[0].Pod != web.Key {
		t.Fatalf("sandboxes %v: want only web's (the held pod takes no place of the one)", boxes)
	}
	p, ok := r.Pod(other.Key)
	if !ok || p.Status.Phase != PhasePending || p.Status.Reason != ReasonNodeMismatch ||
		!strings.Contains(p.Status.Message, "nodeSelector disktype=ssd does not match") ||
		p.Status.ContainerStatuses[0].State.Waiting == nil || p.Status.ContainerStatuses[0].State.Waiting.Reason != ReasonNodeMismatch {
		t.Fatalf("held pod status: %+v", p.Status)
	}
	var normal bool
	for _, ev := range r.Events().List() {
		if ev.Reason == ReasonNodeMismatch {
			normal = ev.Type == EventNormal && ev.InvolvedObject.Name == "other"
		}
		if ev.Type == EventWarning {
			t.Errorf("a pod meant for another node is no warning: %+v", ev)
		}
	}
	if !normal {
		t.Error("no Normal NodeMismatch event for the held pod")
	}

	// The match changes (labels changed, manifest edited): it is an
	// ordinary pod and waits for a place like one.
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{mkPod("other", "s", RestartAlways, 0, map[string]string{"app": "1"}), web}})
	syncUntilStable(t, r, other.Key)
	if p, _ := r.Pod(other.Key); p.Status.Reason != "OutOfCapacity" {
		t.Fatalf("unheld pod beyond max-pods: %+v, want OutOfCapacity", p.Status)
	}
	// Web becomes meant for another node: what it runs goes, its place
	// goes to the next in line.
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{mkPod("other", "s", RestartAlways, 0, map[string]string{"app": "1"}),
		held(web, ReasonNodeMismatch, "nodeName edge-2 is another node (this is edge-1)")}})
	syncUntilStable(t, r, web.Key)
	syncUntilStable(t, r, other.Key)
	boxes, _ = f.ListSandboxes(ctx)
	if len(boxes) != 1 || boxes[0].Pod != other.Key {
		t.Fatalf("sandboxes %v: want only other's", boxes)
	}
	if ctrs, _ := f.ListContainers(ctx, runtime.ContainerFilter{}); len(ctrs) != 1 {
		t.Fatalf("containers %v: web's must be gone", ctrs)
	}
	if p, _ := r.Pod(web.Key); p.Status.Reason != ReasonNodeMismatch || !strings.Contains(p.Status.Message, "edge-2") {
		t.Fatalf("web: %+v", p.Status)
	}
}

// The translator holds a pod that does not match the node without
// translating it: a ConfigMap it needs may exist only where it runs.
func TestTranslatorHoldsPodsForOtherNodes(t *testing.T) {
	n, err := node.New("edge-1", map[string]string{"disktype": "hdd"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := Translator{NodeName: n.Name, Node: n}
	p := &spec.Pod{Metadata: spec.ObjectMeta{Name: "db"}, Spec: spec.PodSpec{
		NodeSelector: map[string]string{"disktype": "ssd"},
		Containers:   []spec.Container{{Name: "db", Image: "busybox:1.36"}},
		Volumes:      []spec.Volume{{Name: "conf", VolumeSource: spec.VolumeSource{ConfigMap: &spec.ConfigMapVolumeSource{LocalObjectReference: spec.LocalObjectReference{Name: "only-there"}}}}},
	}}
	d, err := tr.Pod(p, "/m/db.yaml", nil)
	if err != nil {
		t.Fatalf("a pod for another node failed to translate: %v", err)
	}
	if d.Hold == nil || d.Hold.Reason != ReasonNodeMismatch || d.Hold.Message != "nodeSelector disktype=ssd does not match (the node has disktype=hdd)" ||
		len(d.Containers) != 1 || d.Containers[0].Config.Image != "busybox:1.36" {
		t.Fatalf("desired %+v hold %+v", d, d.Hold)
	}
	p.Spec.NodeSelector["disktype"] = "hdd"
	if _, err := tr.Pod(p, "/m/db.yaml", nil); err == nil || !strings.Contains(err.Error(), "only-there") {
		t.Fatalf("a pod for this node is translated in full: err %v", err)
	}
}

// A terminal pod (a Job's finished attempt) is kept as it is and never
// made or started again: not when its container failed under OnFailure,
// not when its sandbox is gone (a reboot).
func TestDiffTerminalPod(t *testing.T) {
	opt := DiffOptions{Now: t0.Add(time.Hour)}
	d := pod(RestartOnFailure, nil, dc("app", "c1"))
	d.Terminal = true
	if p := Diff(d, ObservedPod{}, opt); !p.Empty() || len(p.Waits) != 1 || p.Waits[0].Reason != "Terminal" {
		t.Errorf("no sandbox: %s", p.String())
	}
	obs := ObservedPod{Sandboxes: []*runtime.Sandbox{box("sb", "sb1")}, Containers: []*runtime.Container{exited("c", "sb", "app", "c1", 0, 1, time.Second, 0)}}
	if p := Diff(d, obs, opt); !p.Empty() {
		t.Errorf("a failed container of a terminal pod is restarted: %s", p.String())
	}
	d.Terminal = false
	if p := Diff(d, obs, opt); p.Empty() {
		t.Error("the same pod, not terminal, is not restarted: the test shows nothing")
	}
}

// Fields accepted with no effect and skipped cluster objects become one
// event each, the first time a load has them.
func TestNoticesBecomeEventsOnce(t *testing.T) {
	r, _, _ := newHarness(t)
	n := Notice{Type: EventWarning, Reason: ReasonNoEffect, Object: podRef(key("web")), Message: "web.yaml: spec.priority: accepted with no effect"}
	s := Notice{Type: EventNormal, Reason: ReasonSkipped, Object: ObjectRef{Kind: "File", Name: "web.yaml"}, Message: "web.yaml: doc 2: kind: Service is skipped"}
	for range 3 {
		r.SetDesired(DesiredSet{Notices: []Notice{n, s}})
	}
	count := map[string]int{}
	for _, ev := range r.Events().List() {
		count[ev.Reason] += ev.Count
	}
	if count[ReasonNoEffect] != 1 || count[ReasonSkipped] != 1 {
		t.Errorf("events %v: want one of each", count)
	}
	r.SetDesired(DesiredSet{})
	r.SetDesired(DesiredSet{Notices: []Notice{n}})
	if ev := r.Events().List(); ev[len(ev)-1].Reason != ReasonNoEffect || ev[len(ev)-1].Count != 2 {
		t.Errorf("a notice back after a load without it is told again: %+v", ev[len(ev)-1])
	}
}
