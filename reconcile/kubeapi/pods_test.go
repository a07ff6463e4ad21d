package kubeapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}
func waiting(reason string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
}
func terminated(code int32, reason string) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}}
}

// TestPodSummary checks READY, STATUS and RESTARTS as kubectl computes them.
func TestPodSummary(t *testing.T) {
	now := time.Now()
	lastCrash := metav1.NewTime(now.Add(-30 * time.Second))
	deleted := metav1.NewTime(now)
	pod := func(phase corev1.PodPhase, inits, apps []corev1.ContainerStatus, mods ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{Status: corev1.PodStatus{Phase: phase, InitContainerStatuses: inits, ContainerStatuses: apps}}
		for _, c := range inits {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: c.Name})
		}
		for _, c := range apps {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c.Name})
		}
		for _, m := range mods {
			m(p)
		}
		return p
	}
	cs := func(name string, st corev1.ContainerState, ready bool, restarts int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: st, Ready: ready, RestartCount: restarts}
	}
	initialized := func(p *corev1.Pod) {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue})
	}
	cases := []struct {
		name     string
		pod      *corev1.Pod
		ready    string
		status   string
		restarts string
	}{
		{"running", pod(corev1.PodRunning, nil, []corev1.ContainerStatus{cs("a", running(), true, 0), cs("b", running(), true, 0)}), "2/2", "Running", "0"},
		{"creating", pod(corev1.PodPending, nil, []corev1.ContainerStatus{cs("a", waiting("ContainerCreating"), false, 0)}), "0/1", "ContainerCreating", "0"},
		{"first init running", pod(corev1.PodPending, []corev1.ContainerStatus{cs("i", running(), false, 0)},
			[]corev1.ContainerStatus{cs("a", waiting("PodInitializing"), false, 0)}), "0/1", "Init:0/1", "0"},
		{"second init waiting", pod(corev1.PodPending, []corev1.ContainerStatus{cs("i1", terminated(0, "Completed"), false, 0),
			cs("i2", waiting("PodInitializing"), false, 0)}, []corev1.ContainerStatus{cs("a", waiting("PodInitializing"), false, 0)}), "0/1", "Init:1/2", "0"},
		{"init failed", pod(corev1.PodPending, []corev1.ContainerStatus{cs("i", terminated(1, "Error"), false, 2)},
			[]corev1.ContainerStatus{cs("a", waiting("PodInitializing"), false, 0)}), "0/1", "Init:Error", "2"},
		{"init crash loop", pod(corev1.PodPending, []corev1.ContainerStatus{cs("i", waiting("CrashLoopBackOff"), false, 3)},
			[]corev1.ContainerStatus{cs("a", waiting("PodInitializing"), false, 0)}), "0/1", "Init:CrashLoopBackOff", "3"},
		{"init exit code without reason", pod(corev1.PodPending, []corev1.ContainerStatus{cs("i", terminated(7, ""), false, 0)},
			[]corev1.ContainerStatus{cs("a", waiting("PodInitializing"), false, 0)}), "0/1", "Init:ExitCode:7", "0"},
		{"crash loop with last restart", pod(corev1.PodRunning, nil, []corev1.ContainerStatus{{Name: "a", State: waiting("CrashLoopBackOff"),
			RestartCount: 4, LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, FinishedAt: lastCrash}}}}),
			"0/1", "CrashLoopBackOff", "4 (30s ago)"},
		{"completed", pod(corev1.PodSucceeded, nil, []corev1.ContainerStatus{cs("a", terminated(0, "Completed"), false, 0)}), "0/1", "Completed", "0"},
		{"error", pod(corev1.PodFailed, nil, []corev1.ContainerStatus{cs("a", terminated(2, "Error"), false, 0)}), "0/1", "Error", "0"},
		{"signal", pod(corev1.PodFailed, nil, []corev1.ContainerStatus{{Name: "a", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Signal: 9}}}}), "0/1", "Signal:9", "0"},
		{"one done, one running and ready", pod(corev1.PodRunning, nil, []corev1.ContainerStatus{cs("a", terminated(0, "Completed"), false, 0),
			cs("b", running(), true, 0)}, func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}), "1/2", "Running", "0"},
		{"one done, one running, not ready", pod(corev1.PodRunning, nil, []corev1.ContainerStatus{cs("a", terminated(0, "Completed"), false, 0),
			cs("b", running(), true, 0)}), "1/2", "NotReady", "0"},
		{"terminating", pod(corev1.PodRunning, nil, []corev1.ContainerStatus{cs("a", running(), false, 0)}, func(p *corev1.Pod) {
			p.DeletionTimestamp = &deleted
		}), "0/1", "Terminating", "0"},
		{"a finished pod being deleted keeps its status", pod(corev1.PodSucceeded, nil, []corev1.ContainerStatus{cs("a", terminated(0, "Completed"), false, 0)},
			func(p *corev1.Pod) { p.DeletionTimestamp = &deleted }), "0/1", "Completed", "0"},
		{"initialized pods count app restarts only", pod(corev1.PodRunning, []corev1.ContainerStatus{cs("i", terminated(0, "Completed"), false, 5)},
			[]corev1.ContainerStatus{cs("a", running(), true, 1)}, initialized), "1/1", "Running", "1"},
		{"reason wins over phase", pod(corev1.PodPending, nil, nil, func(p *corev1.Pod) {
			p.Status.Reason = "OutOfCapacity"
			p.Spec.Containers = []corev1.Container{{Name: "a"}}
		}), "0/1", "OutOfCapacity", "0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cells := podPrinter.cells(c.pod, now)
			if got := fmt.Sprint(cells[1], " ", cells[2], " ", cells[3]); got != c.ready+" "+c.status+" "+c.restarts {
				t.Errorf("READY STATUS RESTARTS = %q, want %q", got, c.ready+" "+c.status+" "+c.restarts)
			}
		})
	}
}

const twoContainerPod = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - {name: app, image: busybox:1}
  - {name: side, image: busybox:1}
`

func onePod(name string, labels string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  labels: {%s}\nspec:\n  containers:\n  - {name: c, image: busybox:1}\n", name, labels)
}

func (e *testEnv) pod(name string) *corev1.Pod {
	e.t.Helper()
	var p corev1.Pod
	e.getJSON("/api/v1/namespaces/default/pods/"+name, &p)
	return &p
}

func (e *testEnv) runningPod(name string) *corev1.Pod {
	e.t.Helper()
	var p *corev1.Pod
	e.eventually("pod "+name+" running", func() error {
		r := e.get("/api/v1/namespaces/default/pods/" + name)
		if r.code != http.StatusOK {
			return fmt.Errorf("%d", r.code)
		}
		p = &corev1.Pod{}
		_ = json.Unmarshal(r.body, p)
		if p.Status.Phase != corev1.PodRunning || !podCondition(p, corev1.PodReady) {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	return p
}

func TestPodObject(t *testing.T) {
	e := newTestEnv(t)
	e.desire(twoContainerPod)
	p := e.runningPod("web")
	if p.Kind != "Pod" || p.APIVersion != "v1" || p.Spec.NodeName != "node1" || p.UID == "" || p.ResourceVersion == "" ||
		p.CreationTimestamp.IsZero() || len(p.Spec.Containers) != 2 || p.Spec.RestartPolicy != corev1.RestartPolicyAlways ||
		p.Status.QOSClass != corev1.PodQOSBestEffort || !podCondition(p, corev1.PodScheduled) ||
		p.Annotations[AnnotationSourceFile] != "/manifests/web.yaml" || p.Annotations[AnnotationSandboxID] == "" {
		t.Errorf("pod: %+v", p)
	}
	// Stable: the same object twice, and a UID that only a new sandbox
	// configuration changes.
	again := e.pod("web")
	if again.UID != p.UID || again.ResourceVersion != p.ResourceVersion || !again.CreationTimestamp.Equal(&p.CreationTimestamp) {
		t.Errorf("unstable: %s %s %v then %s %s %v", p.UID, p.ResourceVersion, p.CreationTimestamp, again.UID, again.ResourceVersion, again.CreationTimestamp)
	}
	e.desire(strings.Replace(twoContainerPod, "spec:\n", "spec:\n  hostname: other\n", 1))
	e.eventually("a new UID for a recreated pod", func() error {
		if n := e.pod("web"); n.UID == p.UID {
			return fmt.Errorf("same uid %s", n.UID)
		}
		return nil
	})
	if r := e.get("/api/v1/namespaces/default/pods/nope"); r.code != http.StatusNotFound ||
		r.status().Message != `pods "nope" not found` || r.status().Details.Kind != "pods" {
		t.Errorf("missing pod: %d %s", r.code, r.body)
	}
	// The table kubectl gets.
	var tbl metav1.Table
	e.getJSON("/api/v1/namespaces/default/pods", &tbl)
	r := e.get("/api/v1/namespaces/default/pods", "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	if err := json.Unmarshal(r.body, &tbl); err != nil || tbl.Kind != "Table" || len(tbl.Rows) != 1 || len(tbl.ColumnDefinitions) != 9 {
		t.Fatalf("table: %v %s", err, r.body)
	}
	var row metav1.PartialObjectMetadata
	if err := json.Unmarshal(tbl.Rows[0].Object.Raw, &row); err != nil || row.Kind != "PartialObjectMetadata" || row.Name != "web" || row.Labels["app"] != "web" {
		t.Errorf("row object: %v %s", err, tbl.Rows[0].Object.Raw)
	}
	var cols []string
	for _, c := range tbl.ColumnDefinitions {
		if c.Priority == 0 {
			cols = append(cols, c.Name)
		}
	}
	if strings.Join(cols, ",") != "Name,Ready,Status,Restarts,Age" {
		t.Errorf("columns %v", cols)
	}
}

func TestPodDeletionIsTerminating(t *testing.T) {
	e := newTestEnv(t)
	e.desire(twoContainerPod)
	e.runningPod("web")
	// Hold the teardown: the sandbox cannot be removed for now.
	e.f.Inject(fake.Failure{Op: fake.OpRemoveSandbox, Times: 1 << 20, Err: fmt.Errorf("busy")})
	e.rec.SetDesired(reconcile.DesiredSet{})
	e.eventually("a deletion timestamp", func() error {
		r := e.get("/api/v1/namespaces/default/pods/web")
		var p corev1.Pod
		if err := json.Unmarshal(r.body, &p); err != nil || r.code != http.StatusOK {
			return fmt.Errorf("%d %s", r.code, r.body)
		}
		if p.DeletionTimestamp == nil || len(p.Spec.Containers) != 2 {
			return fmt.Errorf("%+v", p.ObjectMeta)
		}
		cells := podPrinter.cells(&p, time.Now())
		if cells[2] != "Terminating" {
			return fmt.Errorf("status %v", cells[2])
		}
		return nil
	})
	e.f.ClearFailures()
	e.eventually("gone", func() error {
		if r := e.get("/api/v1/namespaces/default/pods/web"); r.code != http.StatusNotFound {
			return fmt.Errorf("%d", r.code)
		}
		return nil
	})
}

func rvOf(t *testing.T, raw json.RawMessage) uint64 {
	var m metav1.PartialObjectMetadata
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseUint(m.ResourceVersion, 10, 64)
	return n
}

func nameOf(raw json.RawMessage) string {
	var m metav1.PartialObjectMetadata
	_ = json.Unmarshal(raw, &m)
	return m.Name
}

func TestWatchPods(t *testing.T) {
	e := newTestEnv(t)
	e.desire(onePod("a", "app: x"))
	e.runningPod("a")
	var list corev1.PodList
	e.getJSON("/api/v1/namespaces/default/pods", &list)
	rv, _ := strconv.ParseUint(list.ResourceVersion, 10, 64)
	if len(list.Items) != 1 || rv == 0 || list.Kind != "PodList" {
		t.Fatalf("list: %+v", list)
	}
	ws := e.watch(fmt.Sprintf("/api/v1/namespaces/default/pods?watch=true&resourceVersion=%d&labelSelector=app%%3Dx", rv))
	e.desire(onePod("a", "app: x"), onePod("b", "app: x"), onePod("c", "app: z"))
	ev := ws.until(t, "b ADDED", func(ev watchEventJSON) bool { return ev.Type == "ADDED" })
	if nameOf(ev.Object) != "b" || rvOf(t, ev.Object) <= rv {
		t.Errorf("first event after the list: %s %s", ev.Type, ev.Object)
	}
	for {
		var p corev1.Pod
		_ = json.Unmarshal(ev.Object, &p)
		if p.Name == "b" && p.Status.Phase == corev1.PodRunning {
			break
		}
		ev = ws.until(t, "b running", func(ev watchEventJSON) bool { return ev.Type == "MODIFIED" })
	}
	e.desire(onePod("a", "app: x"), onePod("c", "app: z"))
	last := ws.until(t, "b deleted", func(ev watchEventJSON) bool { return ev.Type == "DELETED" && nameOf(ev.Object) == "b" })
	ws.cancel()
	// Resuming from a version replays what came after it, and nothing about c
	// (the selector).
	resumed := e.watch(fmt.Sprintf("/api/v1/namespaces/default/pods?watch=1&resourceVersion=%d&labelSelector=app%%3Dx", rv))
	seenB := false
	ev = resumed.until(t, "the replayed deletion of b", func(ev watchEventJSON) bool {
		if nameOf(ev.Object) == "c" {
			t.Errorf("c does not match the selector: %s", ev.Object)
		}
		seenB = seenB || nameOf(ev.Object) == "b"
		return ev.Type == "DELETED"
	})
	if rvOf(t, ev.Object) != rvOf(t, last.Object) {
		t.Errorf("replayed deletion at %d, live at %d", rvOf(t, ev.Object), rvOf(t, last.Object))
	}
	if !seenB {
		t.Error("the replay has no event about b")
	}
	// A version from before this agent started is gone: 410 in an ERROR
	// event, and the client lists again.
	old := e.watch(fmt.Sprintf("/api/v1/pods?watch=true&resourceVersion=%d", e.srv.start.UnixMicro()-5))
	ev, _ = old.next(t)
	var st metav1.Status
	if err := json.Unmarshal(ev.Object, &st); err != nil || ev.Type != "ERROR" || st.Code != http.StatusGone || st.Reason != metav1.StatusReasonExpired {
		t.Errorf("too old a version: %s %s", ev.Type, ev.Object)
	}
	if _, ok := old.next(t); ok {
		t.Error("the stream goes on after 410")
	}
	// One that was never handed out.
	if r := e.get(fmt.Sprintf("/api/v1/pods?watch=true&resourceVersion=%d", e.srv.vs.current()+1000)); r.code != http.StatusGatewayTimeout ||
		r.status().Details == nil || r.status().Details.Causes[0].Type != metav1.CauseTypeResourceVersionTooLarge {
		t.Errorf("too new a version: %d %s", r.code, r.body)
	}
	if r := e.get("/api/v1/pods?watch=true&resourceVersion=abc"); r.code != http.StatusBadRequest {
		t.Errorf("bad version: %d", r.code)
	}
}

func TestWatchTimeoutBookmarksAndInitialEvents(t *testing.T) {
	e := newTestEnv(t)
	e.srv.bookmarkEvery = 50 * time.Millisecond
	e.desire(onePod("a", "app: x"), onePod("b", "app: x"))
	e.runningPod("a")
	e.runningPod("b")
	start := time.Now()
	ws := e.watch("/api/v1/pods?watch=true&timeoutSeconds=1&allowWatchBookmarks=true")
	names, bookmarks := map[string]bool{}, 0
	for {
		ev, ok := ws.next(t)
		if !ok {
			break
		}
		switch watch.EventType(ev.Type) {
		case watch.Added:
			names[nameOf(ev.Object)] = true
		case watch.Bookmark:
			var p corev1.Pod
			if err := json.Unmarshal(ev.Object, &p); err != nil || p.Kind != "Pod" || p.ResourceVersion == "" {
				t.Errorf("bookmark: %s", ev.Object)
			}
			bookmarks++
		}
	}
	if !names["a"] || !names["b"] || bookmarks == 0 {
		t.Errorf("watch without a version: names %v, %d bookmarks", names, bookmarks)
	}
	if time.Since(start) < time.Second {
		t.Errorf("the watch ended before timeoutSeconds")
	}
	// Informers' watch-list: the objects, then a bookmark that says so.
	wl := e.watch("/api/v1/pods?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan")
	ev1, _ := wl.next(t)
	ev2, _ := wl.next(t)
	ev3, _ := wl.next(t)
	var bm corev1.Pod
	_ = json.Unmarshal(ev3.Object, &bm)
	if ev1.Type != "ADDED" || ev2.Type != "ADDED" || ev3.Type != "BOOKMARK" || bm.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Errorf("watch-list: %s %s %s %s", ev1.Type, ev2.Type, ev3.Type, ev3.Object)
	}
}

func TestWatchTableForKubectl(t *testing.T) {
	e := newTestEnv(t)
	ws := e.watch("/api/v1/namespaces/default/pods?watch=true", "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	e.desire(onePod("a", "app: x"))
	ev := ws.until(t, "a Running row", func(ev watchEventJSON) bool {
		var tbl metav1.Table
		_ = json.Unmarshal(ev.Object, &tbl)
		return tbl.Kind == "Table" && len(tbl.Rows) == 1 && tbl.Rows[0].Cells[2] == "Running"
	})
	if ev.Type != "MODIFIED" && ev.Type != "ADDED" {
		t.Errorf("event %s", ev.Type)
	}
}

func TestSelectorTransitions(t *testing.T) {
	e := newTestEnv(t)
	ri := requestInfo{namespace: "default"}
	def := e.srv.resources["/v1/pods"]
	r, _ := http.NewRequest("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dx", nil)
	sel, err := parseSelector(r, ri, def)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(app string) object {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"app": app}}}
	}
	cases := []struct {
		typ      watch.EventType
		prev, to string
		want     watch.EventType
	}{
		{watch.Modified, "x", "x", watch.Modified},
		{watch.Modified, "y", "x", watch.Added},
		{watch.Modified, "x", "y", watch.Deleted},
		{watch.Modified, "y", "y", ""},
		{watch.Added, "", "x", watch.Added},
		{watch.Deleted, "x", "x", watch.Deleted},
	}
	for _, c := range cases {
		ch := change{typ: c.typ, obj: mk(c.to)}
		if c.prev != "" {
			ch.prev = mk(c.prev)
		}
		got, ok := e.srv.transition(sel, ch)
		if !ok {
			got = ""
		}
		if got != c.want {
			t.Errorf("%s %s->%s: %q, want %q", c.typ, c.prev, c.to, got, c.want)
		}
	}
	for _, q := range []string{"fieldSelector=spec.bogus%3D1", "labelSelector=a%3D%3D%3Db"} {
		r, _ := http.NewRequest("GET", "/api/v1/pods?"+q, nil)
		if _, err := parseSelector(r, ri, def); err == nil {
			t.Errorf("%s: accepted", q)
		}
	}
}

func TestPodFieldSelectors(t *testing.T) {
	e := newTestEnv(t)
	e.f.OnStart(func(cfg *runtime.ContainerConfig) (bool, int) { return cfg.Name == "done", 0 })
	e.desire(onePod("a", "app: x"), strings.Replace(strings.Replace(onePod("b", "app: z"), "name: c", "name: done", 1),
		"spec:\n", "spec:\n  restartPolicy: Never\n", 1))
	e.runningPod("a")
	e.eventually("b succeeded", func() error {
		if p := e.pod("b"); p.Status.Phase != corev1.PodSucceeded {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	for q, want := range map[string]string{
		"fieldSelector=status.phase%3DSucceeded":                       "b",
		"fieldSelector=status.phase!%3DSucceeded":                      "a",
		"fieldSelector=metadata.name%3Da":                              "a",
		"fieldSelector=spec.nodeName%3Dnode1":                          "a,b",
		"fieldSelector=spec.nodeName%3Dother":                          "",
		"fieldSelector=metadata.namespace%3Ddefault":                   "a,b",
		"labelSelector=app%20in%20(x,z)":                               "a,b",
		"labelSelector=app%3Dz&fieldSelector=status.phase%3DSucceeded": "b",
	} {
		var l corev1.PodList
		e.getJSON("/api/v1/pods?"+q, &l)
		var names []string
		for _, p := range l.Items {
			names = append(names, p.Name)
		}
		if got := strings.Join(names, ","); got != want {
			t.Errorf("%s: %q, want %q", q, got, want)
		}
	}
}
