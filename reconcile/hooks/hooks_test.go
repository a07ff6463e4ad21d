package hooks

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// journal wraps the fake runtime and writes down, in order, the calls the
// hooks care about, with the grace each stop got.
type journal struct {
	*fake.Runtime
	mu    sync.Mutex
	lines []string
	grace []time.Duration
}

func (j *journal) add(s string) {
	j.mu.Lock()
	j.lines = append(j.lines, s)
	j.mu.Unlock()
}

func (j *journal) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	j.mu.Lock()
	j.lines = append(j.lines, "stop")
	j.grace = append(j.grace, grace)
	j.mu.Unlock()
	return j.Runtime.StopContainer(ctx, id, grace)
}

func (j *journal) snapshot() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.lines)
}

func podFrom(t *testing.T, yaml string) *reconcile.DesiredPod {
	t.Helper()
	docs, errs := spec.ParseFile("pod.yaml", []byte(yaml), spec.Limits{})
	if len(errs) > 0 || len(docs) != 1 || !docs[0].Valid() {
		t.Fatalf("parse: %v %+v", errs, docs)
	}
	d, err := reconcile.Translator{}.Pod(docs[0].Pod, "pod.yaml", &reconcile.Documents{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func syncUntil(t *testing.T, r *reconcile.Reconciler, key runtime.PodKey, done func() bool) {
	t.Helper()
	for i := 0; i < 20 && !done(); i++ {
		if _, err := r.Sync(context.Background(), key); err != nil {
			t.Logf("sync: %v", err)
		}
	}
	if !done() {
		t.Fatal("pod did not converge in 20 passes")
	}
}

func running(f *fake.Runtime) int {
	cs, _ := f.ListContainers(context.Background(), runtime.ContainerFilter{})
	n := 0
	for _, c := range cs {
		if c.State == runtime.ContainerRunning {
			n++
		}
	}
	return n
}

const hookPod = `apiVersion: v1
kind: Pod
metadata: {name: hooked, namespace: default}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: example.test/app:1
    lifecycle:
      postStart: {exec: {command: [post-start]}}
      preStop: {sleep: {seconds: 1}}
`

func TestPreStopBeforeStopAndCountedAgainstGrace(t *testing.T) {
	f := fake.New()
	f.AddImage("example.test/app:1", runtime.ImageConfig{})
	j := &journal{Runtime: f}
	f.OnExec(func(id string, opts runtime.ExecOptions) int {
		j.add("exec " + strings.Join(opts.Cmd, " "))
		return 0
	})
	runner := New(j)
	slept := time.Duration(0)
	runner.Sleep = func(ctx context.Context, d time.Duration) error {
		j.add(fmt.Sprintf("prestop sleep %s", d))
		slept = d
		return sleep(ctx, d)
	}
	var hooks reconcile.Hooks
	runner.Install(&hooks)
	r := reconcile.New(reconcile.Config{Runtime: j, Images: f, Log: zerolog.Nop(), Hooks: hooks})
	d := podFrom(t, hookPod)
	r.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{d}})
	syncUntil(t, r, d.Key, func() bool { return running(f) == 1 })
	if got := j.snapshot(); !slices.Contains(got, "exec post-start") {
		t.Fatalf("postStart did not run: %v", got)
	}
	// The manifest goes: the reconciler calls PreStop with no pod; the
	// runner remembered the hook from the start.
	r.SetDesired(reconcile.DesiredSet{})
	syncUntil(t, r, d.Key, func() bool { return running(f) == 0 })
	got := j.snapshot()
	want := []string{"exec post-start", "prestop sleep 1s", "stop"}
	if !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
	// The hook's second came out of the 3 s grace: the stop got at most 2 s.
	if len(j.grace) != 1 || j.grace[0] > 3*time.Second-slept {
		t.Fatalf("stop grace %v after a %v preStop, want <= %v", j.grace, slept, 3*time.Second-slept)
	}
}

// An agent that restarted knows nothing of the containers it adopts, yet
// their preStop hooks run when their manifest goes: the hook is stored on
// the container.
func TestPreStopAfterAgentRestart(t *testing.T) {
	f := fake.New()
	f.AddImage("example.test/app:1", runtime.ImageConfig{})
	j := &journal{Runtime: f}
	newAgent := func() *reconcile.Reconciler {
		runner := New(j)
		runner.Sleep = func(ctx context.Context, d time.Duration) error {
			j.add(fmt.Sprintf("prestop sleep %s", d))
			return nil
		}
		var hooks reconcile.Hooks
		runner.Install(&hooks)
		return reconcile.New(reconcile.Config{Runtime: j, Images: f, Log: zerolog.Nop(), Hooks: hooks})
	}
	d := podFrom(t, hookPod)
	first := newAgent()
	first.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{d}})
	syncUntil(t, first, d.Key, func() bool { return running(f) == 1 })

	second := newAgent() // the restart: a new runner, a new reconciler
	second.SetDesired(reconcile.DesiredSet{})
	syncUntil(t, second, d.Key, func() bool { return running(f) == 0 })
	if got := j.snapshot(); !slices.Contains(got, "prestop sleep 1s") {
		t.Fatalf("calls %q: the adopted container's preStop did not run", got)
	}
}

func TestFailedPostStartKillsContainer(t *testing.T) {
	f := fake.New()
	f.AddImage("example.test/app:1", runtime.ImageConfig{})
	f.OnExec(func(id string, opts runtime.ExecOptions) int {
		fmt.Fprint(opts.Stdout, "config missing")
		return 2
	})
	runner := New(f)
	var hooks reconcile.Hooks
	runner.Install(&hooks)
	events := reconcile.NewEvents(64, zerolog.Nop())
	r := reconcile.New(reconcile.Config{Runtime: f, Images: f, Log: zerolog.Nop(), Hooks: hooks, Events: events})
	d := podFrom(t, strings.Replace(hookPod, "terminationGracePeriodSeconds: 3", "restartPolicy: Never", 1))
	r.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{d}})
	for i := 0; i < 5; i++ {
		_, _ = r.Sync(context.Background(), d.Key)
	}
	cs, _ := f.ListContainers(context.Background(), runtime.ContainerFilter{})
	if len(cs) != 1 || cs[0].State != runtime.ContainerExited {
		t.Fatalf("containers %+v: the failed postStart must leave the container exited", cs)
	}
	found := false
	for _, e := range events.List() {
		if e.Reason == "FailedPostStartHook" && strings.Contains(e.Message, "exited with 2: config missing") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no FailedPostStartHook event with the hook output: %+v", events.List())
	}
}

type sbRuntime struct {
	ip    string
	execs []string
}

func (s *sbRuntime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	s.execs = append(s.execs, strings.Join(opts.Cmd, " "))
	if dl, ok := ctx.Deadline(); !ok || opts.Timeout <= 0 || opts.Timeout > time.Until(dl)+time.Millisecond {
		return -1, fmt.Errorf("exec without the deadline as timeout")
	}
	return 0, nil
}

func (s *sbRuntime) GetSandbox(ctx context.Context, id string) (*runtime.Sandbox, error) {
	return &runtime.Sandbox{ID: id, IP: s.ip}, nil
}

func TestHTTPAndExecHooksDirect(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.Path+" "+r.Header.Get("X-Hook"))
		mu.Unlock()
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	d := podFrom(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: example.test/app:1
    ports: [{name: admin, containerPort: %d}]
    lifecycle:
      postStart: {httpGet: {path: /started, port: admin, httpHeaders: [{name: X-Hook, value: post}]}}
      preStop: {exec: {command: [drain, now]}}
  - name: bad
    image: example.test/app:1
    lifecycle:
      postStart: {httpGet: {path: /fail, port: %d}}
`, port, port))
	rt := &sbRuntime{ip: "127.0.0.1"}
	runner := New(rt)
	web := &runtime.Container{ID: "c1", SandboxID: "s1", Name: "web", Pod: d.Key}
	if err := runner.PostStart(context.Background(), d, nil, web); err != nil {
		t.Fatalf("postStart httpGet: %v", err)
	}
	bad := &runtime.Container{ID: "c2", SandboxID: "s1", Name: "bad", Pod: d.Key}
	if err := runner.PostStart(context.Background(), d, nil, bad); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("failing postStart httpGet: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := runner.PreStop(ctx, d, web); err != nil {
		t.Fatalf("preStop exec: %v", err)
	}
	if !slices.Equal(rt.execs, []string{"drain now"}) {
		t.Fatalf("execs %q", rt.execs)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(hits, []string{"/started post", "/fail "}) {
		t.Fatalf("hits %q", hits)
	}
}

func TestPreStopSleepCutAtDeadline(t *testing.T) {
	d := podFrom(t, strings.Replace(hookPod, "seconds: 1", "seconds: 3600", 1))
	runner := New(&sbRuntime{})
	ctr := &runtime.Container{ID: "c1", Name: "app", Pod: d.Key}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := runner.PreStop(ctx, d, ctr)
	if err == nil || !strings.Contains(err.Error(), "did not finish within the termination grace period") {
		t.Fatalf("an hour-long preStop sleep under a short grace: %v", err)
	}
}

func TestProbeKillRunsPreStop(t *testing.T) {
	f := fake.New()
	f.AddImage("example.test/app:1", runtime.ImageConfig{})
	j := &journal{Runtime: f}
	runner := New(j)
	runner.Sleep = func(ctx context.Context, d time.Duration) error {
		j.add(fmt.Sprintf("prestop sleep %s", d))
		return sleep(ctx, d)
	}
	var stopping []string
	runner.BeforeStop = func(c *runtime.Container) { stopping = append(stopping, c.Name) }
	var hooks reconcile.Hooks
	runner.Install(&hooks)
	r := reconcile.New(reconcile.Config{Runtime: j, Images: f, Log: zerolog.Nop(), Hooks: hooks})
	d := podFrom(t, hookPod)
	r.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{d}})
	syncUntil(t, r, d.Key, func() bool { return running(f) == 1 })
	cs, _ := f.ListContainers(context.Background(), runtime.ContainerFilter{})
	if err := r.Kill(context.Background(), d.Key, cs[0].ID, "Container app failed liveness probe", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	got := j.snapshot()
	if want := []string{"prestop sleep 1s", "stop"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if j.grace[0] > 2*time.Second {
		t.Fatalf("stop grace %v after a 1 s preStop out of 3 s", j.grace[0])
	}
	if !slices.Equal(stopping, []string{"app"}) {
		t.Fatalf("BeforeStop heard %q", stopping)
	}
}

// A native sidecar's hooks run as an app container's do: postStart before
// it counts as started, preStop when the pod goes (after the app's stop).
func TestSidecarHooks(t *testing.T) {
	f := fake.New()
	f.AddImage("example.test/app:1", runtime.ImageConfig{})
	j := &journal{Runtime: f}
	f.OnExec(func(id string, opts runtime.ExecOptions) int {
		j.add("exec " + strings.Join(opts.Cmd, " "))
		return 0
	})
	runner := New(j)
	runner.Sleep = func(ctx context.Context, d time.Duration) error {
		j.add(fmt.Sprintf("prestop sleep %s", d))
		return nil
	}
	var hooks reconcile.Hooks
	runner.Install(&hooks)
	r := reconcile.New(reconcile.Config{Runtime: j, Images: f, Log: zerolog.Nop(), Hooks: hooks})
	d := podFrom(t, `apiVersion: v1
kind: Pod
metadata: {name: side, namespace: default}
spec:
  terminationGracePeriodSeconds: 3
  initContainers:
  - name: proxy
    image: example.test/app:1
    restartPolicy: Always
    lifecycle:
      postStart: {exec: {command: [proxy-up]}}
      preStop: {sleep: {seconds: 1}}
  containers:
  - name: app
    image: example.test/app:1
`)
	r.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{d}})
	syncUntil(t, r, d.Key, func() bool { return running(f) == 2 })
	r.SetDesired(reconcile.DesiredSet{})
	syncUntil(t, r, d.Key, func() bool { return running(f) == 0 })
	if got, want := j.snapshot(), []string{"exec proxy-up", "stop", "prestop sleep 1s", "stop"}; !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q (the proxy's postStart; the app's stop, then the proxy's preStop and stop)", got, want)
	}
}
