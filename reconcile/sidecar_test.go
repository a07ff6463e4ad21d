package reconcile

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// sc is a native sidecar of the desired pod.
func sc(name, hash string, startupProbe bool) DesiredContainer {
	c := dc(name, hash)
	c.Sidecar, c.StartupProbe = true, startupProbe
	return c
}

// asSidecar marks an observed container as the sidecar at init position n.
func asSidecar(c *runtime.Container, n int) *runtime.Container {
	c.Annotations[AnnotationSidecar] = fmt.Sprint(n)
	return c
}

// stops reduces a plan's stops to "container@wave".
func stops(p Plan) []string {
	var out []string
	for _, a := range p.Actions {
		if a.Kind == ActStopContainer {
			out = append(out, fmt.Sprintf("%s@%d", a.Container, a.Wave))
		}
	}
	return out
}

func TestDiffSidecars(t *testing.T) {
	later := t0.Add(time.Hour)
	// setup (init), proxy (sidecar), migrate (init), log (sidecar with a
	// startup probe), then the app.
	inits := func() []DesiredContainer {
		return []DesiredContainer{dc("setup", "s"), sc("proxy", "p", false), dc("migrate", "m"), sc("log", "l", true)}
	}
	sb := func(cs ...*runtime.Container) ObservedPod {
		return ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: cs}
	}
	setupDone := func() *runtime.Container { return exited("c1", "s1", "setup", "s", 0, 0, time.Second, 0) }
	proxy := func() *runtime.Container { return asSidecar(running("c2", "s1", "proxy", "p", 0), 1) }
	migrateDone := func() *runtime.Container { return exited("c3", "s1", "migrate", "m", 0, 0, time.Second, 0) }
	logRunning := func() *runtime.Container { return asSidecar(running("c4", "s1", "log", "l", 0), 3) }
	app := func() *runtime.Container { return running("c5", "s1", "app", "a", 0) }
	for _, tc := range []struct {
		name    string
		restart RestartPolicy
		obs     ObservedPod
		started map[string]string
		now     time.Time
		want    []string
		stops   []string
		waits   []string
	}{
		{name: "the sidecar starts in its turn", obs: sb(setupDone()),
			want:  []string{"PullImage:proxy", "StartContainer:proxy#0"},
			waits: []string{"migrate:PodInitializing", "log:PodInitializing", "app:PodInitializing"}},
		{name: "running, it lets the next init container start", obs: sb(setupDone(), proxy()),
			want:  []string{"PullImage:migrate", "StartContainer:migrate#0"},
			waits: []string{"log:PodInitializing", "app:PodInitializing"}},
		{name: "a startup probe not passed yet holds the app back", obs: sb(setupDone(), proxy(), migrateDone(), logRunning()),
			waits: []string{"app:PodInitializing"}},
		{name: "the startup probe of an earlier attempt does not count", obs: sb(setupDone(), proxy(), migrateDone(), logRunning()),
			started: map[string]string{"log": "old"}, waits: []string{"app:PodInitializing"}},
		{name: "startup probe passed: the app starts", obs: sb(setupDone(), proxy(), migrateDone(), logRunning()),
			started: map[string]string{"log": "c4"}, want: []string{"PullImage:app", "StartContainer:app#0"}},
		{name: "a sidecar that exits is restarted under Never, the app keeps running", restart: RestartNever, now: later,
			obs:     sb(setupDone(), asSidecar(exited("c2", "s1", "proxy", "p", 0, 1, time.Second, 0), 1), migrateDone(), logRunning(), app()),
			started: map[string]string{"log": "c4"}, want: []string{"PullImage:proxy", "StartContainer:proxy#1"}},
		{name: "a sidecar that exits before the rest started holds them back again", now: later,
			obs:   sb(setupDone(), asSidecar(exited("c2", "s1", "proxy", "p", 0, 0, time.Second, 0), 1)),
			want:  []string{"PullImage:proxy", "StartContainer:proxy#1"},
			waits: []string{"migrate:PodInitializing", "log:PodInitializing", "app:PodInitializing"}},
		{name: "a sidecar in crash-loop back-off does not stop the app", now: t0.Add(2 * time.Second),
			obs:     sb(setupDone(), asSidecar(exited("c2", "s1", "proxy", "p", 0, 1, time.Second, 0), 1), migrateDone(), logRunning(), app()),
			started: map[string]string{"log": "c4"}, waits: []string{"proxy:CrashLoopBackOff"}},
		{name: "a changed sidecar restarts alone", obs: sb(setupDone(), asSidecar(running("c2", "s1", "proxy", "old", 0), 1), migrateDone(), logRunning(), app()),
			started: map[string]string{"log": "c4"}, want: []string{"StopContainer:proxy", "PullImage:proxy", "StartContainer:proxy#1"}, stops: []string{"proxy@0"}},
		{name: "Never: the app is done, the sidecars stop, the last first", restart: RestartNever, now: later,
			obs:     sb(setupDone(), proxy(), migrateDone(), logRunning(), exited("c5", "s1", "app", "a", 0, 0, time.Second, 0)),
			started: map[string]string{"log": "c4"}, want: []string{"StopContainer:log", "StopContainer:proxy"}, stops: []string{"log@1", "proxy@2"}},
		{name: "OnFailure: a failed app restarts, the sidecars stay", restart: RestartOnFailure, now: later,
			obs:     sb(setupDone(), proxy(), migrateDone(), logRunning(), exited("c5", "s1", "app", "a", 0, 1, time.Second, 0)),
			started: map[string]string{"log": "c4"}, want: []string{"PullImage:app", "StartContainer:app#1"}},
		{name: "OnFailure: the app succeeded, the sidecars stop", restart: RestartOnFailure, now: later,
			obs:     sb(setupDone(), proxy(), migrateDone(), logRunning(), exited("c5", "s1", "app", "a", 0, 0, time.Second, 0)),
			started: map[string]string{"log": "c4"}, want: []string{"StopContainer:log", "StopContainer:proxy"}, stops: []string{"log@1", "proxy@2"}},
		{name: "Never: a failed init container stops the sidecars before it", restart: RestartNever, now: later,
			obs:  sb(setupDone(), proxy(), exited("c3", "s1", "migrate", "m", 0, 1, time.Second, 0)),
			want: []string{"StopContainer:proxy"}, stops: []string{"proxy@1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restart := tc.restart
			if restart == "" {
				restart = RestartAlways
			}
			d := pod(restart, inits(), dc("app", "a"))
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			opt := DiffOptions{Now: now, Backoff: DefaultBackoff, Started: tc.started, Probing: true}
			p := Diff(d, tc.obs, opt)
			if diff := cmp.Diff(tc.want, kinds(p)); diff != "" {
				t.Errorf("actions (-want +got):\n%s\nplan:\n%s", diff, p.String())
			}
			if diff := cmp.Diff(tc.stops, stops(p)); diff != "" {
				t.Errorf("stop waves (-want +got):\n%s", diff)
			}
			var waits []string
			for _, w := range p.Waits {
				waits = append(waits, w.Container+":"+w.Reason)
			}
			if diff := cmp.Diff(tc.waits, waits); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
		})
	}
}

// Without a prober nothing reports startup probes: a sidecar counts as
// started once it runs.
func TestDiffSidecarWithoutProber(t *testing.T) {
	d := pod(RestartAlways, []DesiredContainer{sc("log", "l", true)}, dc("app", "a"))
	obs := ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{asSidecar(running("c1", "s1", "log", "l", 0), 0)}}
	p := Diff(d, obs, DiffOptions{Now: t0, Backoff: DefaultBackoff})
	if diff := cmp.Diff([]string{"PullImage:app", "StartContainer:app#0"}, kinds(p)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
}

// Removing the pod stops the app containers first, then the sidecars in
// reverse order; the order comes from the containers, the manifest being
// gone.
func TestDiffRemovalStopsSidecarsLast(t *testing.T) {
	obs := ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{
		asSidecar(running("c1", "s1", "a-proxy", "p", 0), 0), asSidecar(running("c2", "s1", "z-log", "l", 0), 2),
		running("c3", "s1", "app", "a", 0), running("c4", "s1", "web", "w", 0)}}
	p := Diff(nil, obs, DiffOptions{Now: t0})
	if diff := cmp.Diff([]string{"app@0", "web@0", "z-log@1", "a-proxy@2"}, stops(p)); diff != "" {
		t.Errorf("stop order (-want +got):\n%s\nplan:\n%s", diff, p.String())
	}
	if last := p.Actions[len(p.Actions)-1]; last.Kind != ActRemoveSandbox {
		t.Errorf("the sandbox is not removed last: %s", p.String())
	}
}

func TestStatusSidecars(t *testing.T) {
	d := pod(RestartNever, []DesiredContainer{dc("setup", "s"), sc("proxy", "p", true)}, dc("app", "a"))
	setup := exited("c1", "s1", "setup", "s", 0, 0, time.Second, 0)
	proxy := asSidecar(running("c2", "s1", "proxy", "p", 0), 1)
	mem := func(started, notReady bool) *podMemory {
		m := &podMemory{started: map[string]string{}, notReady: map[string]bool{"proxy": notReady}}
		if started {
			m.started["proxy"] = "c2"
		}
		return m
	}
	for _, tc := range []struct {
		name                 string
		cs                   []*runtime.Container
		mem                  *podMemory
		phase                string
		initialized, ready   bool
		proxyStarted, pReady bool
	}{
		{"starting: not initialised", []*runtime.Container{setup, proxy}, mem(false, true), PhasePending, false, false, false, false},
		{"started, app running, sidecar not ready: pod not ready", []*runtime.Container{setup, proxy, running("c3", "s1", "app", "a", 0)},
			mem(true, true), PhaseRunning, true, false, true, false},
		{"all ready", []*runtime.Container{setup, proxy, running("c3", "s1", "app", "a", 0)},
			mem(true, false), PhaseRunning, true, true, true, true},
		{"app done, sidecar still running: Running", []*runtime.Container{setup, proxy, exited("c3", "s1", "app", "a", 0, 0, time.Second, 0)},
			mem(true, false), PhaseRunning, true, false, true, true},
		{"app done, sidecar stopped: Succeeded", []*runtime.Container{setup, asSidecar(exited("c2", "s1", "proxy", "p", 0, 143, time.Second, 0), 1),
			exited("c3", "s1", "app", "a", 0, 0, time.Second, 0)}, mem(true, false), PhaseSucceeded, true, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := buildStatus(d, ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: tc.cs}, &Plan{}, tc.mem, t0, true)
			if st.Phase != tc.phase {
				t.Errorf("phase %s, want %s", st.Phase, tc.phase)
			}
			cond := map[string]string{}
			for _, c := range st.Conditions {
				cond[c.Type] = c.Status
			}
			if got := cond["Initialized"] == "True"; got != tc.initialized {
				t.Errorf("Initialized %v, want %v", got, tc.initialized)
			}
			if got := cond["Ready"] == "True"; got != tc.ready {
				t.Errorf("Ready %v, want %v", got, tc.ready)
			}
			if len(st.InitContainerStatuses) != 2 || st.InitContainerStatuses[1].Name != "proxy" {
				t.Fatalf("initContainerStatuses: %+v", st.InitContainerStatuses)
			}
			ps := st.InitContainerStatuses[1]
			if started := ps.Started != nil && *ps.Started; started != tc.proxyStarted || ps.Ready != tc.pReady {
				t.Errorf("proxy started %v ready %v, want %v %v", started, ps.Ready, tc.proxyStarted, tc.pReady)
			}
		})
	}
}

// stopRecorder records the order in which containers are stopped, and
// the grace each stop got.
type stopRecorder struct {
	*fake.Runtime
	mu    sync.Mutex
	order []string
	grace map[string]time.Duration
}

func (s *stopRecorder) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	c, err := s.Runtime.GetContainer(ctx, id)
	if err == nil && c.State == runtime.ContainerRunning {
		s.mu.Lock()
		s.order = append(s.order, c.Name)
		s.grace[c.Name] = grace
		s.mu.Unlock()
	}
	return s.Runtime.StopContainer(ctx, id, grace)
}

// A Job-like pod (restartPolicy Never) with a sidecar completes when its
// app container is done: the reconciler stops the sidecar and the pod
// ends Succeeded; a pod removed while running stops its app before its
// sidecars, the last declared first.
func TestReconcileSidecarPod(t *testing.T) {
	f := fake.New()
	clk := &clock{now: fake.Epoch}
	f.SetClock(clk.Now)
	rec := &stopRecorder{Runtime: f, grace: map[string]time.Duration{}}
	r := New(Config{Runtime: rec, Images: f, Now: clk.Now, Log: zerolog.Nop(), Workers: 1,
		StepBackoff: StepBackoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}})
	drain := exitFeed(t, r, f)

	d := &DesiredPod{Key: key("job"), Source: "/m/job.yaml", SandboxHash: "sb", Restart: RestartNever, Grace: 10 * time.Second,
		Init: []DesiredContainer{sc("proxy", "p", false), sc("log", "l", false)}, Containers: []DesiredContainer{dc("work", "w")}}
	for i := range d.Init {
		d.Init[i].Init = true
	}
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	syncUntilStable(t, r, d.Key)
	var work string
	cs, _ := f.ListContainers(context.Background(), runtime.ContainerFilter{})
	for _, c := range cs {
		if c.State != runtime.ContainerRunning {
			t.Fatalf("%s is %s, want every container running", c.Name, c.State)
		}
		if c.Name == "work" {
			work = c.ID
		}
	}
	if len(cs) != 3 || work == "" {
		t.Fatalf("containers: %d, want proxy, log and work", len(cs))
	}
	if err := f.Exit(work, 0); err != nil {
		t.Fatal(err)
	}
	drain()
	syncUntilStable(t, r, d.Key)
	if diff := cmp.Diff([]string{"log", "proxy"}, rec.order); diff != "" {
		t.Errorf("stop order (-want +got):\n%s", diff)
	}
	job, ok := r.Pod(d.Key)
	if !ok || job.Status.Phase != PhaseSucceeded {
		t.Fatalf("job %+v, want Succeeded", job.Status)
	}
	for _, s := range job.Status.InitContainerStatuses {
		if s.State.Terminated == nil {
			t.Errorf("sidecar %s: %+v, want terminated", s.Name, s.State)
		}
	}

	// A second pod, removed while it runs.
	rec.order = nil
	d2 := &DesiredPod{Key: key("svc"), Source: "/m/svc.yaml", SandboxHash: "sb", Restart: RestartAlways, Grace: 10 * time.Second,
		Init: []DesiredContainer{sc("proxy", "p", false), sc("log", "l", false)}, Containers: []DesiredContainer{dc("a", "a"), dc("b", "b")}}
	for i := range d2.Init {
		d2.Init[i].Init = true
	}
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d, d2}})
	syncUntilStable(t, r, d2.Key)
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	syncUntilStable(t, r, d2.Key)
	if len(rec.order) != 4 || !cmp.Equal(rec.order[2:], []string{"log", "proxy"}) || !slices.Contains(rec.order[:2], "a") || !slices.Contains(rec.order[:2], "b") {
		t.Errorf("stop order %v, want a and b, then log, then proxy", rec.order)
	}
	if g := rec.grace["proxy"]; g <= 0 || g > 10*time.Second {
		t.Errorf("the last sidecar's grace %s, want what is left of the pod's 10s", g)
	}
}
