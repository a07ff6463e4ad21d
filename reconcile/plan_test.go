package reconcile

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

var testKey = runtime.PodKey{Namespace: "default", Name: "web"}

func dc(name, hash string) DesiredContainer {
	return DesiredContainer{Name: name, Hash: hash, PullPolicy: runtime.PullIfNotPresent,
		Config: runtime.ContainerConfig{Name: name, Image: "busybox:1"}}
}

func pod(restart RestartPolicy, init []DesiredContainer, cs ...DesiredContainer) *DesiredPod {
	for i := range init {
		init[i].Init = true
	}
	return &DesiredPod{Key: testKey, Source: "/m/web.yaml", SandboxHash: "sb1", Init: init, Containers: cs,
		Restart: restart, Grace: 30 * time.Second}
}

func box(id, hash string) *runtime.Sandbox {
	return &runtime.Sandbox{ID: id, Pod: testKey, State: runtime.SandboxReady, CreatedAt: t0,
		Annotations: map[string]string{runtime.AnnotationSandboxHash: hash, AnnotationGracePeriod: "5"}}
}

func running(id, box, name, hash string, attempt int) *runtime.Container {
	return &runtime.Container{ID: id, SandboxID: box, Pod: testKey, Name: name, Attempt: attempt, State: runtime.ContainerRunning,
		StartedAt: t0, Annotations: map[string]string{runtime.AnnotationContainerHash: hash}}
}

func exited(id, box, name, hash string, attempt, code int, ranFor time.Duration, crash int) *runtime.Container {
	c := running(id, box, name, hash, attempt)
	c.State = runtime.ContainerExited
	c.ExitCode = code
	c.FinishedAt = t0.Add(ranFor)
	c.Annotations[AnnotationCrashCount] = fmt.Sprint(crash)
	return c
}

// kinds reduces a plan to "Kind:container" strings: the shape under test.
func kinds(p Plan) []string {
	var out []string
	for _, a := range p.Actions {
		s := string(a.Kind)
		if a.Container != "" {
			s += ":" + a.Container
		}
		if a.Kind == ActStartContainer {
			s += fmt.Sprintf("#%d", a.Attempt)
		}
		if a.Kind == ActRemoveSandbox {
			s += ":" + a.SandboxID
		}
		out = append(out, s)
	}
	return out
}

func TestDiff(t *testing.T) {
	later := t0.Add(time.Hour)
	for _, tc := range []struct {
		name    string
		desired *DesiredPod
		obs     ObservedPod
		now     time.Time
		want    []string
		waits   []string
	}{
		{name: "new pod", desired: pod(RestartAlways, nil, dc("a", "h1"), dc("b", "h2")),
			want: []string{"CreateSandbox", "PullImage:a", "StartContainer:a#0", "PullImage:b", "StartContainer:b#0"}},
		{name: "unchanged", desired: pod(RestartAlways, nil, dc("a", "h1")),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{running("c1", "s1", "a", "h1", 0)}}},
		{name: "removed", desired: nil,
			obs:  ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{running("c1", "s1", "a", "h1", 0)}},
			want: []string{"StopContainer:a", "RemoveSandbox:s1"}},
		{name: "sandbox change recreates", desired: pod(RestartAlways, nil, dc("a", "h1")),
			obs:  ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "old")}, Containers: []*runtime.Container{running("c1", "s1", "a", "h1", 0)}},
			want: []string{"StopContainer:a", "RemoveSandbox:s1", "CreateSandbox", "PullImage:a", "StartContainer:a#0"}},
		{name: "not ready sandbox recreated", desired: pod(RestartAlways, nil, dc("a", "h1")),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{func() *runtime.Sandbox {
				s := box("s1", "sb1")
				s.State = runtime.SandboxNotReady
				return s
			}()}},
			want: []string{"RemoveSandbox:s1", "CreateSandbox", "PullImage:a", "StartContainer:a#0"}},
		{name: "duplicate sandboxes: newest kept", desired: pod(RestartAlways, nil, dc("a", "h1")),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1"), func() *runtime.Sandbox {
				s := box("s2", "sb1")
				s.CreatedAt = t0.Add(time.Second)
				return s
			}()}, Containers: []*runtime.Container{running("c2", "s2", "a", "h1", 0)}},
			want: []string{"RemoveSandbox:s1"}},
		{name: "one container changed: only it restarts", desired: pod(RestartAlways, nil, dc("a", "h1"), dc("b", "new")),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")},
				Containers: []*runtime.Container{running("c1", "s1", "a", "h1", 0), running("c2", "s1", "b", "h2", 0)}},
			want: []string{"StopContainer:b", "PullImage:b", "StartContainer:b#1"}},
		{name: "container dropped from manifest", desired: pod(RestartAlways, nil, dc("a", "h1")),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")},
				Containers: []*runtime.Container{running("c1", "s1", "a", "h1", 0), running("c2", "s1", "b", "h2", 0)}},
			want: []string{"StopContainer:b", "RemoveContainer:b"}},
		{name: "Always: crashed, backoff not over", desired: pod(RestartAlways, nil, dc("a", "h1")), now: t0.Add(5 * time.Second),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")},
				Containers: []*runtime.Container{exited("c1", "s1", "a", "h1", 0, 1, time.Second, 0)}},
			waits: []string{"a:CrashLoopBackOff"}},
		{name: "Always: crashed, backoff over", desired: pod(RestartAlways, nil, dc("a", "h1")), now: t0.Add(12 * time.Second),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")},
				Containers: []*runtime.Container{exited("c1", "s1", "a", "h1", 0, 1, time.Second, 0)}},
			want: []string{"PullImage:a", "StartContainer:a#1"}},
		{name: "Always: completed restarts too", desired: pod(RestartAlways, nil, dc("a", "h1")), now: later,
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")},
				Containers: []*runtime.Container{exited("c1", "s1", "a", "h1", 0, 0, time.Second, 0)}},
			want: []string{"PullImage:a", "StartContainer:a#1"}},
		{name: "OnFailure: success stays", desired: pod(RestartOnFailure, nil, dc("a", "h1")), now: later,
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")},
				Containers: []*runtime.Container{exited("c1", "s1", "a", "h1", 0, 0, time.Second, 0)}}},
		{name: "OnFailure: failure restarts", desired: pod(RestartOnFailure, nil, dc("a", "h1")), now: later,
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")},
				Containers: []*runtime.Container{exited("c1", "s1", "a", "h1", 0, 2, time.Second, 0)}},
			want: []string{"PullImage:a", "StartContainer:a#1"}},
		{name: "Never: failure stays", desired: pod(RestartNever, nil, dc("a", "h1")), now: later,
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")},
				Containers: []*runtime.Container{exited("c1", "s1", "a", "h1", 0, 2, time.Second, 0)}}},
		{name: "old attempts pruned, one kept", desired: pod(RestartAlways, nil, dc("a", "h1")),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{
				running("c3", "s1", "a", "h1", 2), exited("c2", "s1", "a", "h1", 1, 1, time.Second, 1), exited("c1", "s1", "a", "h1", 0, 1, time.Second, 0)}},
			want: []string{"RemoveContainer:a"}},
		{name: "half-made container removed and restarted", desired: pod(RestartAlways, nil, dc("a", "h1")),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{
				func() *runtime.Container {
					c := running("c1", "s1", "a", "h1", 0)
					c.State = runtime.ContainerCreated
					return c
				}()}},
			want: []string{"RemoveContainer:a", "PullImage:a", "StartContainer:a#1"}},
		{name: "init: first one starts alone", desired: pod(RestartAlways, []DesiredContainer{dc("i1", "x"), dc("i2", "y")}, dc("a", "h1")),
			want:  []string{"CreateSandbox", "PullImage:i1", "StartContainer:i1#0"},
			waits: []string{"i2:PodInitializing", "a:PodInitializing"}},
		{name: "init: running holds the rest", desired: pod(RestartAlways, []DesiredContainer{dc("i1", "x"), dc("i2", "y")}, dc("a", "h1")),
			obs:   ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{running("c1", "s1", "i1", "x", 0)}},
			waits: []string{"i2:PodInitializing", "a:PodInitializing"}},
		{name: "init: done, next one", desired: pod(RestartAlways, []DesiredContainer{dc("i1", "x"), dc("i2", "y")}, dc("a", "h1")),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{
				exited("c1", "s1", "i1", "x", 0, 0, time.Second, 0)}},
			want: []string{"PullImage:i2", "StartContainer:i2#0"}, waits: []string{"a:PodInitializing"}},
		{name: "init: all done, apps start", desired: pod(RestartAlways, []DesiredContainer{dc("i1", "x")}, dc("a", "h1")),
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{
				exited("c1", "s1", "i1", "x", 0, 0, time.Second, 0)}},
			want: []string{"PullImage:a", "StartContainer:a#0"}},
		{name: "init: failed under Never: pod failed, nothing starts", desired: pod(RestartNever, []DesiredContainer{dc("i1", "x")}, dc("a", "h1")),
			now: later,
			obs: ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{
				exited("c1", "s1", "i1", "x", 0, 1, time.Second, 0)}}},
		{name: "init: failed under OnFailure: retried", desired: pod(RestartOnFailure, []DesiredContainer{dc("i1", "x")}, dc("a", "h1")),
			now:  later,
			obs:  ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")}, Containers: []*runtime.Container{exited("c1", "s1", "i1", "x", 0, 1, time.Second, 0)}},
			want: []string{"PullImage:i1", "StartContainer:i1#1"}, waits: []string{"a:PodInitializing"}},
		{name: "orphan container of a gone sandbox", desired: nil,
			obs:  ObservedPod{Containers: []*runtime.Container{exited("c9", "gone", "a", "h1", 0, 0, 0, 0)}},
			want: []string{"RemoveContainer:a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			p := Diff(tc.desired, tc.obs, DiffOptions{Now: now, Backoff: DefaultBackoff})
			if diff := cmp.Diff(tc.want, kinds(p)); diff != "" {
				t.Errorf("actions (-want +got):\n%s\nplan:\n%s", diff, p.String())
			}
			var waits []string
			for _, w := range p.Waits {
				waits = append(waits, w.Container+":"+w.Reason)
			}
			if diff := cmp.Diff(tc.waits, waits); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
			// Pure: the same inputs give the same plan.
			if again := Diff(tc.desired, tc.obs, DiffOptions{Now: now, Backoff: DefaultBackoff}); !cmp.Equal(p, again) {
				t.Errorf("Diff is not deterministic")
			}
		})
	}
}

func TestDiffCrashLoopRequeue(t *testing.T) {
	d := pod(RestartAlways, nil, dc("a", "h1"))
	obs := ObservedPod{Sandboxes: []*runtime.Sandbox{box("s1", "sb1")},
		Containers: []*runtime.Container{exited("c1", "s1", "a", "h1", 3, 1, time.Second, 3)}}
	p := Diff(d, obs, DiffOptions{Now: t0.Add(2 * time.Second), Backoff: DefaultBackoff})
	// Fourth crash in a row: 80 s after the exit at t0+1s.
	if want := 79 * time.Second; p.RequeueAfter != want {
		t.Errorf("RequeueAfter = %s, want %s", p.RequeueAfter, want)
	}
	p = Diff(d, obs, DiffOptions{Now: t0.Add(81 * time.Second), Backoff: DefaultBackoff})
	if len(p.Actions) != 2 || p.Actions[1].CrashCount != 4 || p.Actions[1].Attempt != 4 {
		t.Errorf("after backoff: %s", p.String())
	}
}

func TestPlanString(t *testing.T) {
	p := Diff(pod(RestartAlways, nil, dc("a", "h1")), ObservedPod{}, DiffOptions{Now: t0})
	want := "pod default/web:\n  - CreateSandbox (pod new)\n  - PullImage container=a image=busybox:1 (container not started)\n" +
		"  - StartContainer container=a image=busybox:1 attempt=0 (container not started)\n"
	if got := p.String(); got != want {
		t.Errorf("plan text:\n%s\nwant:\n%s", got, want)
	}
}
