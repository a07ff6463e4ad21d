package linux

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// agentHarness runs the real reconciler over a test's runtime, as the
// agent does, with a short resync.
type agentHarness struct {
	t      *testing.T
	e      *ctrEnv
	r      *reconcile.Reconciler
	events *reconcile.Events
	stop   func()
}

func newAgentHarness(t *testing.T, e *ctrEnv) *agentHarness {
	h := &agentHarness{t: t, e: e, events: reconcile.NewEvents(512, zerolog.Nop())}
	h.r = reconcile.New(reconcile.Config{
		Runtime: e.rt, Images: e.store, Log: zerolog.Nop(), Events: h.events,
		Workers: 4, Resync: 300 * time.Millisecond,
		Backoff: reconcile.BackoffPolicy{Initial: 100 * time.Millisecond, Max: time.Second, Reset: time.Hour},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.r.Run(ctx) }()
	h.stop = func() { cancel(); <-done }
	t.Cleanup(h.stop)
	return h
}

// sleepers is the desired set of one sleeping busybox pod per name.
func (h *agentHarness) sleepers(names ...string) {
	h.t.Helper()
	var docs []string
	for _, n := range names {
		docs = append(docs, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: %q, imagePullPolicy: Never, command: ["/bin/sleep", "3600"]}
`, n, lifecycleImage))
	}
	h.desire(docs...)
}

// desire makes the manifests (one pod each) the desired set.
func (h *agentHarness) desire(manifests ...string) {
	h.t.Helper()
	var pods []*reconcile.DesiredPod
	for i, y := range manifests {
		file := fmt.Sprintf("pod%d.yaml", i)
		docs, errs := spec.ParseFile(file, []byte(y), spec.Limits{})
		if len(errs) > 0 || len(docs) != 1 || !docs[0].Valid() {
			h.t.Fatalf("manifest %d: %v", i, errs)
		}
		d, err := reconcile.Translator{}.Pod(docs[0].Pod, file, &reconcile.Documents{})
		if err != nil {
			h.t.Fatal(err)
		}
		pods = append(pods, d)
	}
	h.r.SetDesired(reconcile.DesiredSet{Pods: pods})
}

func (h *agentHarness) status(name string) reconcile.PodStatus {
	p, _ := h.r.Pod(runtime.PodKey{Namespace: "default", Name: name})
	return p.Status
}

// running waits until pod name runs in a sandbox other than those in
// not, and answers ICMP from the host at its address; it returns the
// status.
func (h *agentHarness) running(name string, not ...string) reconcile.PodStatus {
	h.t.Helper()
	var last error
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st := h.status(name)
		switch {
		case st.Phase != "Running" || len(st.ContainerStatuses) != 1 || st.ContainerStatuses[0].State.Running == nil:
			last = fmt.Errorf("phase %s reason %s", st.Phase, st.Reason)
		case st.PodIP == "":
			last = errors.New("no IP")
		case containsString(not, st.Pelagos.SandboxID):
			last = fmt.Errorf("still in sandbox %s", st.Pelagos.SandboxID)
		default:
			if last = ping("", st.PodIP); last == nil {
				return st
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, ev := range h.events.List() {
		h.t.Logf("event %s %s %s: %s", ev.Type, ev.Reason, ev.InvolvedObject.Name, ev.Message)
	}
	h.t.Fatalf("pod %s not running and reachable in a new sandbox within 60s: %v", name, last)
	return reconcile.PodStatus{}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// gone empties the desired set and waits for every sandbox to go.
func (h *agentHarness) gone() {
	h.t.Helper()
	h.r.SetDesired(reconcile.DesiredSet{})
	deadline := time.Now().Add(60 * time.Second)
	for {
		sbs, _ := h.e.rt.ListSandboxes(context.Background())
		if len(sbs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d sandboxes left 60s after the pods went", len(sbs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventually retries f until it succeeds or the deadline passes: for what
// the runtime cleans up in the background.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNetworkDeletedUnderPods deletes a pod's host veth, then the bridge,
// under running pods (issue 12): the pod without its veth is not ready
// and is made again, reachable; after the bridge goes a new pod still
// starts (the bridge is made again) and the old pods, whose ports went
// with the bridge, are made again on it.
func TestNetworkDeletedUnderPods(t *testing.T) {
	e := lifecycleRuntime(t)
	ctx := context.Background()
	h := newAgentHarness(t, e)
	h.sleepers("a", "b")
	a, b := h.running("a"), h.running("b")

	sbA, err := e.rt.GetSandbox(ctx, a.Pelagos.SandboxID)
	if err != nil {
		t.Fatal(err)
	}
	link, err := netlink.LinkByName(sbA.VethHost)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	if sb, err := e.rt.GetSandbox(ctx, sbA.ID); err == nil && (sb.State != runtime.SandboxNotReady || !strings.Contains(sb.Reason, sbA.VethHost)) {
		t.Errorf("a sandbox without its veth: %s %q, want not ready naming the veth", sb.State, sb.Reason)
	}
	a2 := h.running("a", a.Pelagos.SandboxID)
	if st := h.status("b"); st.Pelagos.SandboxID != b.Pelagos.SandboxID {
		t.Errorf("pod b was made again too (%s -> %s)", b.Pelagos.SandboxID, st.Pelagos.SandboxID)
	}

	br, err := netlink.LinkByName(e.cfg.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(br); err != nil {
		t.Fatal(err)
	}
	h.sleepers("a", "b", "c")
	h.running("c")
	h.running("a", a2.Pelagos.SandboxID)
	h.running("b", b.Pelagos.SandboxID)

	h.gone()
	h.stop()
	e.census.Check(t, 10*time.Second)
	if kids, _ := e.cg.Children(); len(kids) != 0 {
		t.Errorf("census: cgroups left below %s: %v", e.cg.Parent(), kids)
	}
}
