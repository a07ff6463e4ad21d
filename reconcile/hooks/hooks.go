// Package hooks runs Kubernetes container lifecycle hooks for the
// reconciler: postStart (exec, httpGet, sleep; the container does not count
// as running until it finishes, and a failure kills it) and preStop (exec,
// httpGet, sleep) whose time the reconciler counts against the pod's
// terminationGracePeriodSeconds before it sends the stop signal.
//
// Runner.Install plugs the hooks into reconcile.Hooks. httpGet hooks are
// sent by the agent to the pod IP from the host, with the same request the
// httpGet probe sends; exec hooks run through the runtime's Exec with
// bounded output.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/prober"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// maxOutput bounds the hook output quoted in an error (and so in events).
const maxOutput = 4 << 10

// defaultHTTPTimeout bounds an httpGet hook whose context has no deadline
// (postStart): a hook server that never answers must not wedge the pod's
// worker forever.
const defaultHTTPTimeout = 30 * time.Second

// Runner executes hooks against one runtime.
type Runner struct {
	rt prober.SandboxExecer

	// Sleep waits d or until ctx ends; tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// BeforeStop, when set, hears of every container the reconciler is
	// about to stop, before its preStop hook (prober.Bridge.Stopping: a
	// container shutting down must not fail its liveness probe into a
	// second kill).
	BeforeStop func(ctr *runtime.Container)
}

// New returns a runner that execs and finds pod IPs through rt.
func New(rt prober.SandboxExecer) *Runner {
	return &Runner{rt: rt, Sleep: sleep}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Install sets the PostStart and PreStop seams of h.
func (r *Runner) Install(h *reconcile.Hooks) {
	h.PostStart = r.PostStart
	h.PreStop = r.PreStop
}

// PostStart runs the container's postStart hook, if any. An error means the
// hook failed: the reconciler kills the container and records
// FailedPostStartHook with the message.
func (r *Runner) PostStart(ctx context.Context, pod *reconcile.DesiredPod, _ *reconcile.DesiredContainer, ctr *runtime.Container) error {
	sc := manifestContainer(pod, ctr.Name)
	if sc == nil || sc.Lifecycle == nil || sc.Lifecycle.PostStart == nil {
		return nil
	}
	if err := r.run(ctx, "PostStartHook", sc, ctr, sc.Lifecycle.PostStart); err != nil {
		return fmt.Errorf("container %s of pod %s: %w", ctr.Name, pod.Key, err)
	}
	return nil
}

// PreStop runs the container's preStop hook, if any, within ctx, whose
// deadline the reconciler sets to the end of the grace period; whatever time
// the hook uses is taken from the grace the stop signal then gets. A hook
// still running at the deadline is abandoned (and reported), as the kubelet
// does, so the container is killed on time.
func (r *Runner) PreStop(ctx context.Context, pod *reconcile.DesiredPod, ctr *runtime.Container) error {
	if r.BeforeStop != nil {
		r.BeforeStop(ctr)
	}
	// The hook the container was started with, stored on it by the
	// reconciler: the manifest may be gone (the commonest time to stop),
	// changed, or read by an agent that restarted since. A container
	// without one (started by hand) falls back to the manifest.
	sc := manifestContainer(pod, ctr.Name)
	if js, ok := ctr.Annotations[reconcile.AnnotationPreStop]; ok {
		sc = &spec.Container{}
		if err := json.Unmarshal([]byte(js), sc); err != nil {
			return fmt.Errorf("container %s of pod %s: stored preStop hook: %w", ctr.Name, ctr.Pod, err)
		}
	}
	key := ctr.Pod
	if sc == nil || sc.Lifecycle == nil || sc.Lifecycle.PreStop == nil {
		return nil
	}
	err := r.run(ctx, "PreStopHook", sc, ctr, sc.Lifecycle.PreStop)
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("container %s of pod %s: PreStopHook did not finish within the termination grace period: %w", ctr.Name, key, err)
	}
	if err != nil {
		return fmt.Errorf("container %s of pod %s: %w", ctr.Name, key, err)
	}
	return nil
}

func manifestContainer(pod *reconcile.DesiredPod, name string) *spec.Container {
	if pod == nil {
		return nil
	}
	p := pod.Pod()
	if p == nil {
		return nil
	}
	// Init containers too: a native sidecar has hooks.
	return p.Spec.Container(name)
}

// limited keeps the first maxOutput bytes of a hook's output.
type limited struct {
	bytes.Buffer
	cut bool
}

func (l *limited) Write(p []byte) (int, error) {
	if room := maxOutput - l.Len(); room < len(p) {
		l.cut = true
		if room > 0 {
			l.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return l.Buffer.Write(p)
}

func (l *limited) text() string {
	s := strings.TrimSpace(l.String())
	if l.cut {
		s += " [truncated]"
	}
	return s
}

func (r *Runner) run(ctx context.Context, what string, sc *spec.Container, ctr *runtime.Container, h *spec.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		var out limited
		opts := runtime.ExecOptions{Cmd: h.Exec.Command, Stdout: &out, Stderr: &out}
		if dl, ok := ctx.Deadline(); ok {
			opts.Timeout = time.Until(dl)
		}
		code, err := r.rt.Exec(ctx, ctr.ID, opts)
		if err != nil {
			return fmt.Errorf("%s exec %q: %w", what, h.Exec.Command, err)
		}
		if code != 0 {
			return fmt.Errorf("%s exec %q exited with %d: %s", what, h.Exec.Command, code, out.text())
		}
		return nil
	case h.HTTPGet != nil:
		sb, err := r.rt.GetSandbox(ctx, ctr.SandboxID)
		if err != nil {
			return fmt.Errorf("%s httpGet: %w", what, err)
		}
		t := &prober.Target{ContainerName: ctr.Name, ContainerID: ctr.ID, PodIP: prober.PodIP(sb), Ports: prober.NamedPorts(sc)}
		timeout := defaultHTTPTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
		a := prober.HTTPGetFromSpec(h.HTTPGet)
		res, msg, err := prober.DoHTTP(ctx, t, a, timeout)
		if err != nil {
			return fmt.Errorf("%s httpGet: %w", what, err)
		}
		if res != prober.Success {
			return fmt.Errorf("%s httpGet %s:%s%s failed: %s", what, t.PodIP, a.Port, a.Path, msg)
		}
		return nil
	case h.Sleep != nil:
		if err := r.Sleep(ctx, time.Duration(h.Sleep.Seconds)*time.Second); err != nil {
			return fmt.Errorf("%s sleep %ds: %w", what, h.Sleep.Seconds, err)
		}
		return nil
	}
	return errors.New(what + ": no action")
}
