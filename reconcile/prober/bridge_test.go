package prober

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

type bridgeRuntime struct{ ip string }

func (r bridgeRuntime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	return 0, nil
}

func (r bridgeRuntime) GetSandbox(ctx context.Context, id string) (*runtime.Sandbox, error) {
	return &runtime.Sandbox{ID: id, IP: r.ip}, nil
}

type readyCall struct {
	container string
	ready     bool
}

type killCall struct {
	id, reason string
	grace      time.Duration
}

type fakeReporter struct {
	ready chan readyCall
	kill  chan killCall
}

func (f *fakeReporter) SetReady(key runtime.PodKey, container string, ready bool) {
	f.ready <- readyCall{container, ready}
}

func (f *fakeReporter) Kill(ctx context.Context, key runtime.PodKey, id, reason string, grace time.Duration) error {
	f.kill <- killCall{id, reason, grace}
	return nil
}

func wait[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatal("nothing reported within 15s")
		var zero T
		return zero
	}
}

func desired(t *testing.T, yaml string) *reconcile.DesiredPod {
	t.Helper()
	docs, errs := spec.ParseFile("pod.yaml", []byte(yaml), spec.Limits{})
	if len(errs) > 0 || len(docs) != 1 || docs[0].Pod == nil {
		t.Fatalf("parse: %v %+v", errs, docs)
	}
	if !docs[0].Valid() {
		t.Fatalf("invalid pod: %v", docs[0].Errs)
	}
	d, err := reconcile.Translator{}.Pod(docs[0].Pod, "pod.yaml", &reconcile.Documents{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBridgeReadinessAndLiveness(t *testing.T) {
	var readyStatus, liveStatus atomic.Int32
	readyStatus.Store(200)
	liveStatus.Store(200)
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(readyStatus.Load())) })
	mux.HandleFunc("/live", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(liveStatus.Load())) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	d := desired(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: web, namespace: probes}
spec:
  terminationGracePeriodSeconds: 9
  containers:
  - name: web
    image: example.test/web:1
    ports: [{name: http, containerPort: %d}]
    readinessProbe:
      httpGet: {path: /ready, port: http}
      periodSeconds: 1
      timeoutSeconds: 10
      failureThreshold: 1
    livenessProbe:
      httpGet: {path: /live, port: %d}
      periodSeconds: 1
      timeoutSeconds: 10
      failureThreshold: 2
  - name: plain
    image: example.test/web:1
`, port, port))
	rep := &fakeReporter{ready: make(chan readyCall, 16), kill: make(chan killCall, 4)}
	b, err := NewBridge(bridgeRuntime{ip: "127.0.0.1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Reporter = rep
	events := reconcile.NewEvents(32, zerolog.Nop())
	b.Events = events
	key := runtime.PodKey{Namespace: "probes", Name: "web"}
	now := time.Now()
	running := []*runtime.Container{
		{ID: "w1", SandboxID: "s1", Name: "web", State: runtime.ContainerRunning, StartedAt: now},
		{ID: "p1", SandboxID: "s1", Name: "plain", State: runtime.ContainerRunning, StartedAt: now},
	}
	// Calls for different containers interleave; each container's own
	// calls come in order.
	var pending []readyCall
	expect := func(want readyCall, why string) {
		t.Helper()
		for i, c := range pending {
			if c.container == want.container {
				if c != want {
					t.Fatalf("%s: got %+v, want %+v", why, c, want)
				}
				pending = append(pending[:i], pending[i+1:]...)
				return
			}
		}
		for {
			c := wait(t, rep.ready)
			if c.container != want.container {
				pending = append(pending, c)
				continue
			}
			if c != want {
				t.Fatalf("%s: got %+v, want %+v", why, c, want)
			}
			return
		}
	}
	b.Update(key, d, running)
	expect(readyCall{"web", false}, "a container with a readiness probe starts not ready")
	expect(readyCall{"plain", true}, "a container without readiness gates is ready")
	expect(readyCall{"web", true}, "the readiness probe passes")
	b.Update(key, d, running) // a later pass changes nothing for web
	expect(readyCall{"plain", true}, "later pass")
	readyStatus.Store(503)
	expect(readyCall{"web", false}, "after 503")
	liveStatus.Store(500)
	k := wait(t, rep.kill)
	if k.id != "w1" || k.grace != 9*time.Second || !strings.Contains(k.reason, "failed liveness probe") || !strings.Contains(k.reason, "500") {
		t.Fatalf("kill %+v", k)
	}
	var unhealthy []string
	for _, ev := range events.List() {
		if ev.Reason == "Unhealthy" {
			unhealthy = append(unhealthy, ev.Message)
		}
	}
	if len(unhealthy) != 2 || !strings.HasPrefix(unhealthy[0], "Readiness probe failed: HTTP probe failed with statuscode: 503") ||
		!strings.HasPrefix(unhealthy[1], "Liveness probe failed:") {
		t.Fatalf("Unhealthy events %q", unhealthy)
	}
	if ids := b.Manager().Containers(); len(ids) != 1 || ids[0] != "w1" {
		t.Fatalf("probed containers %v, want only w1 (plain has no probes)", ids)
	}
	// The pod goes: probing stops.
	b.Update(key, nil, nil)
	deadline := time.Now().Add(10 * time.Second)
	for len(b.Manager().Containers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ids := b.Manager().Containers(); len(ids) != 0 {
		t.Fatalf("still probing %v after the pod went", ids)
	}
}

type noSandbox struct{ bridgeRuntime }

func (noSandbox) GetSandbox(ctx context.Context, id string) (*runtime.Sandbox, error) {
	return nil, fmt.Errorf("sandbox %s: %w", id, runtime.ErrNotFound)
}

func TestBridgeReportsWhatItCannotProbe(t *testing.T) {
	d := desired(t, `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: example.test/web:1
    livenessProbe: {tcpSocket: {port: 80}}
`)
	b, err := NewBridge(noSandbox{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var got []error
	b.OnError = func(key runtime.PodKey, container string, err error) { got = append(got, err) }
	b.Update(d.Key, d, []*runtime.Container{{ID: "w1", SandboxID: "gone", Name: "web", State: runtime.ContainerRunning}})
	if len(got) != 1 || !strings.Contains(got[0].Error(), "container web") {
		t.Fatalf("errors %v", got)
	}
	if ids := b.Manager().Containers(); len(ids) != 0 {
		t.Fatalf("probing %v without a sandbox", ids)
	}
}

// startReporter is a fakeReporter that hears startup probes pass.
type startReporter struct {
	fakeReporter
	started chan string
}

func (s *startReporter) SetStarted(key runtime.PodKey, container, id string) {
	s.started <- container + "/" + id
}

var _ StartReporter = (*reconcile.Reconciler)(nil)

// A native sidecar is probed like an app container, and its startup probe
// passing is reported with the attempt's ID (the reconciler then starts
// the next init container).
func TestBridgeProbesSidecars(t *testing.T) {
	d := desired(t, `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - name: proxy
    image: example.test/proxy:1
    restartPolicy: Always
    startupProbe: {exec: {command: ["true"]}, periodSeconds: 1}
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
  containers:
  - name: app
    image: example.test/web:1
`)
	rep := &startReporter{fakeReporter: fakeReporter{ready: make(chan readyCall, 16), kill: make(chan killCall, 4)}, started: make(chan string, 4)}
	b, err := NewBridge(bridgeRuntime{ip: "127.0.0.1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Reporter = rep
	key := runtime.PodKey{Namespace: "default", Name: "web"}
	b.Update(key, d, []*runtime.Container{{ID: "x1", SandboxID: "s1", Name: "proxy", State: runtime.ContainerRunning, StartedAt: time.Now()}})
	if got := wait(t, rep.started); got != "proxy/x1" {
		t.Fatalf("SetStarted %q, want proxy/x1", got)
	}
	if ids := b.Manager().Containers(); len(ids) != 1 || ids[0] != "x1" {
		t.Fatalf("probed containers %v, want the sidecar", ids)
	}
}
