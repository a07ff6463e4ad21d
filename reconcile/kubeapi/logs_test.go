package kubeapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

func (e *testEnv) writeLog(p *corev1.Pod, container, lines string) {
	e.t.Helper()
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if cs.Name == container {
			id := strings.TrimPrefix(cs.ContainerID, "pelagos://")
			if err := os.WriteFile(filepath.Join(e.logDir, id+".log"), []byte(lines), 0o600); err != nil {
				e.t.Fatal(err)
			}
			return
		}
	}
	e.t.Fatalf("no container %s", container)
}

func TestLogs(t *testing.T) {
	e := newTestEnv(t)
	e.desire(twoContainerPod)
	p := e.runningPod("web")
	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	e.writeLog(p, "app", ts(-2*time.Hour)+" stdout F old\n"+ts(-time.Minute)+" stderr F recent\n"+
		ts(-time.Second)+" stdout P par\n"+ts(-time.Second)+" stdout F tial\n")
	e.writeLog(p, "side", ts(-time.Second)+" stdout F side\n")
	base := "/api/v1/namespaces/default/pods/web/log"
	cases := []struct {
		query string
		code  int
		body  string
	}{
		{"?container=app", 200, "old\nrecent\npartial\n"},
		{"?container=side", 200, "side\n"},
		{"?container=app&tailLines=1", 200, "partial\n"},
		{"?container=app&tailLines=0", 200, ""},
		{"?container=app&sinceSeconds=600", 200, "recent\npartial\n"},
		{"?container=app&sinceTime=" + now.Add(-10*time.Second).Format(time.RFC3339), 200, "partial\n"},
		{"?container=app&sinceSeconds=600&tailLines=1", 200, "partial\n"},
		{"?container=app&limitBytes=6", 200, "old\nre"},
		{"?container=app&tailLines=1&timestamps=true", 200, ts(-time.Second) + " partial\n"},
		{"", 400, "a container name must be specified for pod web, choose one of: [app side]"},
		{"?container=nope", 400, "container nope is not valid for pod web"},
		{"?container=app&previous=true", 400, `previous terminated container "app" in pod "web" not found`},
		{"?container=app&tailLines=-1", 400, "tailLines: must be greater than or equal to 0"},
		{"?container=app&sinceSeconds=5&sinceTime=" + now.Format(time.RFC3339), 400, "at most one of sinceTime or sinceSeconds"},
		{"?container=app&limitBytes=0", 400, "limitBytes: must be greater than 0"},
	}
	for _, c := range cases {
		r := e.get(base + c.query)
		got := string(r.body)
		if r.code != 200 {
			got = r.status().Message
		}
		if r.code != c.code || (c.code == 200 && got != c.body) || (c.code != 200 && !strings.Contains(got, c.body)) {
			t.Errorf("%s: %d %q, want %d %q", c.query, r.code, got, c.code, c.body)
		}
	}
	if r := e.get("/api/v1/namespaces/default/pods/nope/log"); r.code != http.StatusNotFound {
		t.Errorf("log of a missing pod: %d", r.code)
	}
}

func TestLogsDefaultContainerAndPrevious(t *testing.T) {
	e := newTestEnv(t)
	e.desire(strings.Replace(twoContainerPod, "labels: {app: web}", "labels: {app: web}\n  annotations: {kubectl.kubernetes.io/default-container: side}", 1))
	p := e.runningPod("web")
	e.writeLog(p, "side", time.Now().UTC().Format(time.RFC3339Nano)+" stdout F from side\n")
	if r := e.get("/api/v1/namespaces/default/pods/web/log"); r.code != 200 || string(r.body) != "from side\n" {
		t.Errorf("default container by annotation: %d %q", r.code, r.body)
	}
	// The app container crashes and restarts: its previous attempt's log.
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "app" {
			e.writeLog(p, "app", time.Now().UTC().Format(time.RFC3339Nano)+" stdout F first attempt\n")
			if err := e.f.Exit(strings.TrimPrefix(cs.ContainerID, "pelagos://"), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.eventually("a previous attempt", func() error {
		r := e.get("/api/v1/namespaces/default/pods/web/log?container=app&previous=true")
		if r.code != 200 || string(r.body) != "first attempt\n" {
			return errorOf(r)
		}
		return nil
	})
}

func errorOf(r response) error {
	return &apiError{st: metav1.Status{Message: string(r.body)}}
}

func TestEvents(t *testing.T) {
	e := newTestEnv(t)
	e.desire(onePod("a", "app: x"))
	uid := e.runningPod("a").UID
	obj := reconcile.ObjectRef{Kind: "Pod", Namespace: "default", Name: "a", FieldPath: "spec.containers{c}"}
	for range 3 {
		e.rec.Events().Record(reconcile.EventWarning, "Probe", obj, "readiness failed")
	}
	var l corev1.EventList
	e.eventually("the repeated event", func() error {
		e.getJSON("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Da,involvedObject.uid%3D"+string(uid)+",reason%3DProbe", &l)
		if len(l.Items) != 1 || l.Items[0].Count != 3 {
			return errorOf(response{body: []byte("not yet")})
		}
		return nil
	})
	ev := l.Items[0]
	if ev.InvolvedObject.UID != uid || ev.Type != "Warning" || ev.Source.Component != "pelagos-agent" || ev.Source.Host != "node1" ||
		!strings.HasPrefix(ev.Name, "a.") || ev.FirstTimestamp.IsZero() || ev.LastTimestamp.Before(&ev.FirstTimestamp) {
		t.Errorf("core event: %+v", ev)
	}
	var v1 eventsv1.EventList
	e.getJSON("/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.name%3Da,reason%3DProbe", &v1)
	if ev.Series == nil || ev.Series.Count != 3 || ev.Series.LastObservedTime.IsZero() {
		t.Errorf("core event series: %+v", ev.Series)
	}
	if len(v1.Items) != 1 || v1.Items[0].Series == nil || v1.Items[0].Series.Count != 3 || v1.Items[0].Series.LastObservedTime.IsZero() ||
		v1.Items[0].Note != "readiness failed" ||
		v1.Items[0].Regarding.UID != uid || v1.Items[0].EventTime.IsZero() || v1.Items[0].Name != ev.Name {
		t.Errorf("events.k8s.io: %+v", v1.Items)
	}
	// A watch sees the repeat as a modification of the same event.
	ws := e.watch("/api/v1/events?watch=true&fieldSelector=reason%3DProbe")
	first, _ := ws.next(t)
	e.rec.Events().Record(reconcile.EventWarning, "Probe", obj, "readiness failed")
	next, _ := ws.next(t)
	var got corev1.Event
	_ = json.Unmarshal(next.Object, &got)
	if first.Type != "ADDED" || next.Type != "MODIFIED" || got.Count != 4 || got.Name != ev.Name {
		t.Errorf("watch: %s then %s %+v", first.Type, next.Type, got)
	}
	// Node-level events live in the default namespace.
	e.rec.Events().Record(reconcile.EventWarning, "ManifestsUnavailable", reconcile.ObjectRef{Kind: "Node", Name: "manifests"}, "gone")
	e.eventually("a node event", func() error {
		var l corev1.EventList
		e.getJSON("/api/v1/namespaces/default/events?fieldSelector=involvedObject.kind%3DNode", &l)
		if len(l.Items) != 1 || l.Items[0].InvolvedObject.Name != "manifests" {
			return errorOf(response{body: []byte("not yet")})
		}
		return nil
	})
}

// ringServer is a facade (not running) over a reconciler whose event ring
// keeps 10 events, and a subscription to that ring.
func ringServer(t *testing.T) (*Server, *reconcile.Events, <-chan reconcile.Event) {
	ring := reconcile.NewEvents(10, zerolog.Nop())
	f := fake.New()
	rec := reconcile.New(reconcile.Config{Runtime: f, Images: f, Log: zerolog.Nop(), Events: ring})
	ch, cancel := ring.Subscribe()
	t.Cleanup(cancel)
	return New(Config{Backend: rec, Runtime: f, NodeName: "n", Log: zerolog.Nop()}), ring, ch
}

// TestEventsStayBounded: events taken in one by one never outgrow the
// reconciler's ring by more than relistEvery, even when nobody lists.
func TestEventsStayBounded(t *testing.T) {
	s, ring, ch := ringServer(t)
	for i := range 2000 {
		ring.Record(reconcile.EventNormal, "Tick", reconcile.ObjectRef{Kind: "Pod", Namespace: "default", Name: "a"}, fmt.Sprint("tick ", i))
		s.events.record(<-ch)
		if n := len(s.events.coll.items); n > 10+256 {
			t.Fatalf("after %d events the collection holds %d", i+1, n)
		}
	}
	if n := len(s.events.seqs); n > 10+256 {
		t.Errorf("sequence index holds %d", n)
	}
}

// TestLateEventCopyIsIgnored: the subscription may deliver an older copy
// of an event after a listing stored a newer one; the newer one stays.
func TestLateEventCopyIsIgnored(t *testing.T) {
	s, ring, ch := ringServer(t)
	obj := reconcile.ObjectRef{Kind: "Pod", Namespace: "default", Name: "a"}
	for range 3 {
		ring.Record(reconcile.EventWarning, "Probe", obj, "failed")
	}
	s.events.refreshAll() // a list: count 3
	for range 2 {
		s.events.record(<-ch) // queued copies: counts 1 and 2
	}
	l, _ := s.events.coll.list(nil)
	if len(l) != 1 || l[0].(*corev1.Event).Count != 3 {
		t.Errorf("after late copies: %+v", l)
	}
}

// TestEventWatchOutlastsTheRing: a watch of events stays open while the
// reconciler's ring turns over many times. Every relistEvery events the
// ones that fell out of the ring are deleted in one burst; a watcher whose
// buffer was smaller than such a burst was closed, and `kubectl get events
// -w`, `pelagos-agent events --watch` and the side-by-side benchmark
// stopped seeing events. (The reconciler's subscription may drop events
// for a slow reader, by design, so the test asks for the watch to reach
// the end of the sequence, not for every event.)
func TestEventWatchOutlastsTheRing(t *testing.T) {
	e := newTestEnv(t)
	ws := e.watch("/api/v1/events?watch=true")
	obj := reconcile.ObjectRef{Kind: "Pod", Namespace: "default", Name: "churn"}
	const n = 3000
	go func() {
		for i := range n {
			e.rec.Events().Record(reconcile.EventNormal, "Tick", obj, fmt.Sprint("tick ", i))
			if i%10 == 9 {
				// Pods come and go at a pace a reading client keeps up
				// with; the relists' deletions still come in bursts.
				time.Sleep(time.Millisecond)
			}
		}
	}()
	seen := 0
	for {
		ev, ok := ws.next(t)
		if !ok {
			t.Fatalf("the watch ended after %d of %d events", seen, n)
		}
		var o corev1.Event
		if err := json.Unmarshal(ev.Object, &o); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "ADDED" || o.Reason != "Tick" {
			continue
		}
		seen++
		var i int
		if _, err := fmt.Sscanf(o.Message, "tick %d", &i); err == nil && i >= n-n/10 {
			return // the watch reached the last tenth of the sequence
		}
	}
}
