package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// podsAt makes n one-container pods whose manifests were created one
// second apart, the newest first in name order, so admission by creation
// time and admission by name differ.
func podsAt(n int) []*DesiredPod {
	var out []*DesiredPod
	for i := range n {
		d := mkPod(fmt.Sprintf("p%02d", i), "s", RestartAlways, 0, map[string]string{"app": "1"})
		d.Created = fake.Epoch.Add(-time.Duration(i) * time.Second)
		out = append(out, d)
	}
	return out
}

// 2x capacity: the oldest manifests get the places, the others wait with a
// clear status and own nothing; removing pods admits the next in line.
func TestMaxPodsAdmission(t *testing.T) {
	f := fake.New()
	clk := &clock{now: fake.Epoch}
	f.SetClock(clk.Now)
	r := New(Config{Runtime: f, Images: f, Now: clk.Now, Log: zerolog.Nop(), MaxPods: 4})
	ctx := context.Background()
	pods := podsAt(8)
	r.SetDesired(DesiredSet{Pods: pods})
	for _, d := range pods {
		syncUntilStable(t, r, d.Key)
	}
	sandboxOwners := func() []string {
		boxes, _ := f.ListSandboxes(ctx)
		var out []string
		for _, s := range boxes {
			out = append(out, s.Pod.Name)
		}
		slices.Sort(out)
		return out
	}
	if got, want := sandboxOwners(), []string{"p04", "p05", "p06", "p07"}; !slices.Equal(got, want) {
		t.Fatalf("sandboxes of %v, want the 4 oldest manifests %v", got, want)
	}
	if n := f.Pulls("busybox:1"); n > 1 {
		t.Errorf("images pulled %d times", n)
	}
	for i, d := range pods[:4] {
		p, _ := r.Pod(d.Key)
		st := p.Status
		if st.Phase != PhasePending || st.Reason != "OutOfCapacity" || !strings.Contains(st.Message, "maximum of 4 pods") ||
			!strings.Contains(st.Message, fmt.Sprintf("number %d in line", 4-i)) || st.PodIP != "" {
			t.Errorf("waiting pod %s: %+v", d.Key.Name, st)
		}
		if w := st.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "OutOfCapacity" {
			t.Errorf("waiting pod %s container: %+v", d.Key.Name, st.ContainerStatuses[0])
		}
	}
	warned := 0
	for _, ev := range r.Events().List() {
		if ev.Reason == "OutOfCapacity" {
			warned++
		}
	}
	if warned != 4 {
		t.Errorf("%d OutOfCapacity events, want one per waiting pod", warned)
	}
	// Two running pods go: the next two in line get their places, and the
	// other waiting pods a new place in line. Only what the removal queues
	// runs (the passes above already served the queue's keys).
	for r.q.Len() > 0 {
		k, _ := r.q.Get()
		r.q.Done(k)
	}
	r.SetDesired(DesiredSet{Pods: slices.Concat(pods[:4], pods[6:])})
	for _, k := range []string{"p04", "p05"} {
		syncUntilStable(t, r, key(k))
	}
	for r.q.Len() > 0 { // the places freed queued the next pods
		k, _ := r.q.Get()
		syncUntilStable(t, r, k)
		r.q.Done(k)
	}
	if got, want := sandboxOwners(), []string{"p02", "p03", "p06", "p07"}; !slices.Equal(got, want) {
		t.Fatalf("after two removals: sandboxes of %v, want %v", got, want)
	}
	for _, n := range []string{"p02", "p03"} {
		if p, _ := r.Pod(key(n)); p.Status.Phase != PhaseRunning || p.Status.Reason != "" {
			t.Errorf("admitted pod %s: %+v", n, p.Status)
		}
	}
	for i, n := range []string{"p01", "p00"} {
		if p, _ := r.Pod(key(n)); p.Status.Reason != "OutOfCapacity" || !strings.Contains(p.Status.Message, fmt.Sprintf("number %d in line", i+1)) {
			t.Errorf("%s should now be number %d in line: %+v", n, i+1, p.Status)
		}
	}
}

// Pods the runtime already has keep their places after a restart, even
// over a lowered limit; nothing new starts until enough of them go.
func TestMaxPodsKeepsRunningPods(t *testing.T) {
	f := fake.New()
	r := New(Config{Runtime: f, Images: f, Log: zerolog.Nop(), MaxPods: -1})
	pods := podsAt(3)
	r.SetDesired(DesiredSet{Pods: pods[:2]})
	for _, d := range pods[:2] {
		syncUntilStable(t, r, d.Key)
	}
	// A new agent with a limit of 1 adopts both and admits nothing new.
	r2 := New(Config{Runtime: f, Images: f, Log: zerolog.Nop(), MaxPods: 1})
	r2.SetDesired(DesiredSet{Pods: pods})
	for _, d := range pods {
		syncUntilStable(t, r2, d.Key)
	}
	boxes, _ := f.ListSandboxes(context.Background())
	if len(boxes) != 2 {
		t.Fatalf("%d sandboxes, want the 2 adopted ones only", len(boxes))
	}
	if p, _ := r2.Pod(pods[2].Key); p.Status.Reason != "OutOfCapacity" {
		t.Errorf("new pod over the limit: %+v", p.Status)
	}
	for _, d := range pods[:2] {
		if p, _ := r2.Pod(d.Key); p.Status.Phase != PhaseRunning {
			t.Errorf("adopted pod %s: %+v", d.Key, p.Status)
		}
	}
}

// With the real machinery (workers, no resync for an hour), a place that
// frees admits the next pod at once, not at the next resync.
func TestMaxPodsAdmitsWhenAPlaceFrees(t *testing.T) {
	f := fake.New()
	r := New(Config{Runtime: f, Images: f, Log: zerolog.Nop(), Workers: 4, Resync: time.Hour, MaxPods: 3})
	ctx := runInBackground(t, r)
	pods := podsAt(6)
	r.SetDesired(DesiredSet{Pods: pods})
	waitFor(t, "3 pods running, 3 waiting", func() bool { return countRunning(r) == 3 && countReason(r, "OutOfCapacity") == 3 })
	r.SetDesired(DesiredSet{Pods: pods[:3]}) // the three running ones go
	waitFor(t, "the three waiting pods running", func() bool {
		if countRunning(r) != 3 {
			return false
		}
		for _, d := range pods[:3] {
			if p, _ := r.Pod(d.Key); p.Status.Phase != PhaseRunning {
				return false
			}
		}
		return true
	})
	boxes, _ := f.ListSandboxes(ctx)
	if len(boxes) != 3 {
		t.Errorf("%d sandboxes, want 3", len(boxes))
	}
}

func countReason(r *Reconciler, reason string) int {
	n := 0
	for _, p := range r.Pods() {
		if p.Status.Reason == reason {
			n++
		}
	}
	return n
}

func TestAdmissionOrder(t *testing.T) {
	t0 := fake.Epoch
	a := &DesiredPod{Key: runtime.PodKey{Namespace: "b", Name: "x"}, Created: t0}
	b := &DesiredPod{Key: runtime.PodKey{Namespace: "a", Name: "y"}, Created: t0.Add(time.Second)}
	c := &DesiredPod{Key: runtime.PodKey{Namespace: "a", Name: "z"}, Created: t0}
	got := []*DesiredPod{b, a, c}
	slices.SortFunc(got, AdmissionOrder)
	if got[0] != c || got[1] != a || got[2] != b {
		t.Errorf("order %v %v %v: want by creation time, then namespace/name", got[0].Key, got[1].Key, got[2].Key)
	}
}
