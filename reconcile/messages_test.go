package reconcile

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// repeated returns a "verb object" phrase that msg says twice, as in
// "remove sandbox X: remove sandbox X: busy" or "gc: gc: ...", or "". Each
// layer of an error adds one ": "-separated part; the first three words
// of a part, quotes dropped, are what it names.
func repeated(msg string) string {
	seen := map[string]bool{}
	for _, part := range strings.Split(msg, ": ") {
		words := strings.Fields(part)
		if len(words) == 0 {
			continue
		}
		words = words[:min(3, len(words))]
		for i, w := range words {
			words[i] = strings.Trim(w, `"'`)
		}
		k := strings.Join(words, " ")
		if seen[k] {
			return k
		}
		seen[k] = true
	}
	return ""
}

func TestRepeatedFindsRepetition(t *testing.T) {
	for msg, want := range map[string]string{
		"pod default/web: remove sandbox sb1: remove sandbox sb1: device busy": "remove sandbox sb1",
		"gc: gc: read dir": "gc",
		`pod p: start container app: start container "app": no image`:             "start container app",
		"pod default/web: remove sandbox sb1: device busy":                        "",
		`Failed to pull image "busybox:1": pull docker.io/library/busybox:1: 404`: "",
	} {
		if got := repeated(msg); got != want {
			t.Errorf("repeated(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestErrorsSayEachThingOnce: the runtime's errors name the operation and
// the object ("remove sandbox X: ..."), so the reconciler adds only the
// pod. Every path that wraps a runtime error is driven with an error
// worded as runtime/linux words it, and the pass's error, the events and
// the container's waiting message must not repeat themselves. A failed
// pull reads as kubelet writes it: `Failed to pull image "R": <cause>`.
func TestErrorsSayEachThingOnce(t *testing.T) {
	ctx := context.Background()
	running := func(t *testing.T) (*Reconciler, *fake.Runtime, *DesiredPod) {
		t.Helper()
		r, f, _ := newHarness(t)
		d := mkPod("web", "s", RestartAlways, 0, map[string]string{"app": "1"})
		r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
		syncUntilStable(t, r, d.Key)
		return r, f, d
	}
	sandboxID := func(t *testing.T, f *fake.Runtime) string {
		sbs, err := f.ListSandboxes(ctx)
		if err != nil || len(sbs) != 1 {
			t.Fatalf("sandboxes %v %v", sbs, err)
		}
		return sbs[0].ID
	}
	containerID := func(t *testing.T, f *fake.Runtime) string {
		for _, c := range mustContainers(t, f) {
			if c.State == runtime.ContainerRunning {
				return c.ID
			}
		}
		t.Fatal("no running container")
		return ""
	}
	type result struct {
		err    error
		events []string
		wait   string
	}
	collect := func(r *Reconciler, err error) result {
		res := result{err: err}
		for _, ev := range r.Events().List() {
			if ev.Type == EventWarning {
				res.events = append(res.events, ev.Message)
			}
		}
		if ps := r.Pods(); len(ps) == 1 && len(ps[0].Status.ContainerStatuses) == 1 {
			if w := ps[0].Status.ContainerStatuses[0].State.Waiting; w != nil {
				res.wait = w.Message
			}
		}
		return res
	}
	for _, tc := range []struct {
		name      string
		do        func(t *testing.T) result
		wantErr   string
		wantEvent string // a Warning event with exactly this message
		wantWait  string // the container's waiting message
	}{{
		name: "create sandbox",
		do: func(t *testing.T) result {
			r, f, _ := newHarness(t)
			f.Inject(fake.Failure{Op: fake.OpCreateSandbox, Err: errors.New("create sandbox for default/web: netns: file exists")})
			d := mkPod("web", "s", RestartAlways, 0, map[string]string{"app": "1"})
			r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
			_, err := r.Sync(ctx, d.Key)
			return collect(r, err)
		},
		wantErr:   "pod default/web: create sandbox for default/web: netns: file exists",
		wantEvent: "Failed to create pod sandbox: create sandbox for default/web: netns: file exists",
	}, {
		name: "pull",
		do: func(t *testing.T) result {
			r, f, _ := newHarness(t)
			f.Inject(fake.Failure{Op: fake.OpEnsureImage, Err: errors.New("pull docker.io/library/busybox:1: GET https://registry.invalid/v2/: connection refused")})
			d := mkPod("web", "s", RestartAlways, 0, map[string]string{"app": "1"})
			r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
			_, err := r.Sync(ctx, d.Key)
			return collect(r, err)
		},
		wantErr:   "pod default/web: pull docker.io/library/busybox:1: GET https://registry.invalid/v2/: connection refused",
		wantEvent: `Failed to pull image "busybox:1": pull docker.io/library/busybox:1: GET https://registry.invalid/v2/: connection refused`,
		wantWait:  `Failed to pull image "busybox:1": pull docker.io/library/busybox:1: GET https://registry.invalid/v2/: connection refused`,
	}, {
		name: "start container",
		do: func(t *testing.T) result {
			r, f, _ := newHarness(t)
			f.Inject(fake.Failure{Op: fake.OpStartContainer, Err: fmt.Errorf(`start container "app": mountPath /proc: not allowed: %w`, runtime.ErrInvalidConfig)})
			d := mkPod("web", "s", RestartAlways, 0, map[string]string{"app": "1"})
			r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
			_, err := r.Sync(ctx, d.Key)
			return collect(r, err)
		},
		wantErr:   `pod default/web: start container "app": mountPath /proc: not allowed: invalid config`,
		wantEvent: `Error: start container "app": mountPath /proc: not allowed: invalid config`,
		wantWait:  `start container "app": mountPath /proc: not allowed: invalid config`,
	}, {
		name: "stop container",
		do: func(t *testing.T) result {
			r, f, d := running(t)
			id := containerID(t, f)
			f.Inject(fake.Failure{Op: fake.OpStopContainer, Err: fmt.Errorf("stop container %s: shim: no such process", id)})
			d = mkPod("web", "s", RestartAlways, 0, map[string]string{"app": "2"})
			r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
			_, err := r.Sync(ctx, d.Key)
			return collect(r, err)
		},
		wantErr: "pod default/web: stop container ID: shim: no such process",
	}, {
		name: "remove container",
		do: func(t *testing.T) result {
			// Two spec changes: the second stops attempt 2 and removes
			// attempt 1, whose removal fails.
			r, f, d := running(t)
			first := containerID(t, f)
			d = mkPod("web", "s", RestartAlways, 0, map[string]string{"app": "2"})
			r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
			syncUntilStable(t, r, d.Key)
			f.Inject(fake.Failure{Op: fake.OpRemoveContainer, Err: fmt.Errorf("remove container %s: unmount rootfs: device or resource busy", first)})
			d = mkPod("web", "s", RestartAlways, 0, map[string]string{"app": "3"})
			r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
			var err error
			for range 5 {
				if _, err = r.Sync(ctx, d.Key); err != nil {
					break
				}
			}
			res := collect(r, err)
			res.err = errorWithID(err, first)
			return res
		},
		wantErr: "pod default/web: remove container ID: unmount rootfs: device or resource busy",
	}, {
		name: "remove sandbox",
		do: func(t *testing.T) result {
			r, f, d := running(t)
			id := sandboxID(t, f)
			f.Inject(fake.Failure{Op: fake.OpRemoveSandbox, Err: fmt.Errorf("remove sandbox %s: remove netns: device or resource busy", id)})
			r.SetDesired(DesiredSet{})
			_, err := r.Sync(ctx, d.Key)
			res := collect(r, err)
			res.err = errorWithID(err, id)
			return res
		},
		wantErr: "pod default/web: remove sandbox ID: remove netns: device or resource busy",
	}, {
		name: "kill",
		do: func(t *testing.T) result {
			r, f, d := running(t)
			id := containerID(t, f)
			f.Inject(fake.Failure{Op: fake.OpStopContainer, Err: fmt.Errorf("stop container %s: shim: no such process", id)})
			err := r.Kill(ctx, d.Key, id, "liveness probe failed", 0)
			return collect(r, err)
		},
		wantErr: "pod default/web: stop container ID: shim: no such process",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.do(t)
			if res.err == nil {
				t.Fatal("no error")
			}
			got := res.err.Error()
			// Container and sandbox IDs are the fake's; the wording is
			// what is checked.
			got = fakeIDs.ReplaceAllString(got, "ID")
			if got != tc.wantErr {
				t.Errorf("error\n got %q\nwant %q", got, tc.wantErr)
			}
			msgs := append([]string{res.err.Error(), res.wait}, res.events...)
			for _, m := range msgs {
				if k := repeated(m); k != "" {
					t.Errorf("%q says %q twice", m, k)
				}
			}
			if tc.wantEvent != "" && !slices.Contains(res.events, tc.wantEvent) {
				t.Errorf("no Warning event %q in %q", tc.wantEvent, res.events)
			}
			if res.wait != tc.wantWait {
				t.Errorf("waiting message\n got %q\nwant %q", res.wait, tc.wantWait)
			}
		})
	}
}

func mustContainers(t *testing.T, f *fake.Runtime) []*runtime.Container {
	t.Helper()
	cs, err := f.ListContainers(context.Background(), runtime.ContainerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// errorWithID keeps err only if it is about the object with id: other
// steps of the same pass may fail first.
func errorWithID(err error, id string) error {
	if err == nil || !strings.Contains(err.Error(), id) {
		return err
	}
	for _, e := range unjoin(err) {
		if strings.Contains(e.Error(), id) {
			return e
		}
	}
	return err
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// fakeIDs are the fake's object IDs ("sb0001", "ctr0002").
var fakeIDs = regexp.MustCompile(`\b(sb|ctr)[0-9]{4}\b`)
