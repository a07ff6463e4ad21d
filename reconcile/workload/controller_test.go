package workload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
	"github.com/pelagos-containers/pelagos-agent/spec/node"
)

// env is a reconciler and a workload controller over the fake runtime,
// both running, fed from a manifest directory as the agent feeds them.
type env struct {
	t      *testing.T
	dir    string
	f      *fake.Runtime
	store  Store
	rec    *reconcile.Reconciler
	ctrl   *Controller
	tr     reconcile.Translator
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func newEnv(t *testing.T, f *fake.Runtime, store Store, n *node.Node) *env {
	t.Helper()
	e := newIdleEnv(t, f, store, n)
	e.start()
	return e
}

// newIdleEnv is newEnv with nothing running yet: a manifest applied before
// start is the first load, as in the agent, which loads the directory
// before the reconciler's start-up recovery can remove what it does not
// name.
func newIdleEnv(t *testing.T, f *fake.Runtime, store Store, n *node.Node) *env {
	t.Helper()
	if f == nil {
		f = fake.New()
	}
	if store == nil {
		store = NewMemStore()
	}
	if n == nil {
		var err error
		if n, err = node.New("edge-1", map[string]string{"site": "lab"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, dir: t.TempDir(), f: f, store: store, tr: reconcile.Translator{NodeName: n.Name, Node: n}}
	e.ctrl = New(Config{Translator: e.tr, Store: store, Backoff: reconcile.BackoffPolicy{Initial: 30 * time.Millisecond, Max: 100 * time.Millisecond},
		Log: zerolog.Nop()})
	e.rec = reconcile.New(reconcile.Config{Runtime: f, Images: f, Log: zerolog.Nop(), Workers: 4, Resync: time.Hour,
		Backoff:     reconcile.BackoffPolicy{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond},
		StepBackoff: reconcile.StepBackoff{Initial: time.Millisecond, Max: 10 * time.Millisecond},
		Hooks:       reconcile.Hooks{Prober: e.ctrl.Chain(nil)}})
	e.ctrl.Attach(e.rec)
	e.cancel = func() {}
	t.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done.Go(func() { _ = e.rec.Run(ctx) })
	e.done.Go(func() { e.ctrl.Run(ctx) })
}

func (e *env) stop() {
	e.cancel()
	e.done.Wait()
}

// apply writes the manifest (empty content removes it) and loads the
// directory as the watcher would.
func (e *env) apply(name, content string) {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if content == "" {
		if err := os.Remove(p); err != nil {
			e.t.Fatal(err)
		}
	} else if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	snap, err := manifest.LoadDir(e.dir, manifest.Options{SkipTrustCheck: true})
	set := e.tr.FromSnapshot(snap, err)
	for _, fe := range set.Errors {
		e.t.Fatalf("manifest error: %s", fe.Message)
	}
	e.ctrl.SetManifests(set, snap)
}

// await polls until cond holds; it is a wait for convergence, not a
// timing assertion.
func (e *env) await(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; pods: %v", what, e.podLines())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// running lists the pods that own a ready sandbox with running
// containers, by name.
func (e *env) running() []string {
	ctx := context.Background()
	boxes, _ := e.f.ListSandboxes(ctx)
	ctrs, _ := e.f.ListContainers(ctx, runtime.ContainerFilter{})
	var out []string
	for _, b := range boxes {
		if b.State != runtime.SandboxReady {
			continue
		}
		for _, c := range ctrs {
			if c.SandboxID == b.ID && c.State == runtime.ContainerRunning {
				out = append(out, b.Pod.Name)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (e *env) sandboxes() []string {
	boxes, _ := e.f.ListSandboxes(context.Background())
	var out []string
	for _, b := range boxes {
		out = append(out, b.Pod.Name)
	}
	slices.Sort(out)
	return out
}

func (e *env) podLines() []string {
	var out []string
	for _, p := range e.rec.Pods() {
		out = append(out, fmt.Sprintf("%s=%s/%s", p.Metadata.Name, p.Status.Phase, p.Status.Reason))
	}
	return out
}

func (e *env) status(kind, name string) any {
	for _, o := range e.ctrl.Workloads() {
		if o.Kind == kind && o.Metadata.Name == name {
			return o.Status
		}
	}
	return nil
}

func (e *env) events(reason string) []string {
	var out []string
	for _, ev := range e.rec.Events().List() {
		if ev.Reason == reason {
			out = append(out, ev.Message)
		}
	}
	return out
}

func deployment(name string, replicas int, image string, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
spec:
  replicas: %d
  selector:
    matchLabels: {app: %s}
%s  template:
    metadata:
      labels: {app: %s}
    spec:
      containers:
      - name: c
        image: %s
`, name, replicas, name, extra, name, image)
}

var deployPodName = regexp.MustCompile(`^web-[bcdfghjklmnpqrstvwxz2456789]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$`)

// A Deployment scaled 1 -> 3 -> 0: replicas named as Kubernetes names them,
// stable across evaluations, all gone at 0.
func TestDeploymentScales(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	e.apply("web.yaml", deployment("web", 1, "busybox:1", ""))
	e.await("one replica", func() bool { return len(e.running()) == 1 })
	first := e.running()[0]
	if !deployPodName.MatchString(first) {
		t.Errorf("pod name %q is not <deployment>-<hash>-<5>", first)
	}
	e.apply("web.yaml", deployment("web", 3, "busybox:1", ""))
	e.await("three replicas", func() bool { return len(e.running()) == 3 })
	if !slices.Contains(e.running(), first) {
		t.Errorf("scaling up replaced the first replica: %v", e.running())
	}
	e.await("status", func() bool {
		st, _ := e.status("Deployment", "web").(DeploymentStatus)
		return st.Replicas == 3 && st.ReadyReplicas == 3 && st.AvailableReplicas == 3 && st.UpdatedReplicas == 3
	})
	p, ok := e.rec.Pod(runtime.PodKey{Namespace: "default", Name: first})
	if !ok || p.Metadata.Labels["app"] != "web" || p.Metadata.Labels["pod-template-hash"] == "" || len(p.Metadata.OwnerReferences) != 1 ||
		p.Metadata.OwnerReferences[0].Kind != "Deployment" || p.Metadata.OwnerReferences[0].Name != "web" {
		t.Errorf("replica metadata: %+v", p.Metadata)
	}
	e.apply("web.yaml", deployment("web", 0, "busybox:1", ""))
	e.await("no replica", func() bool { return len(e.sandboxes()) == 0 })
	e.apply("web.yaml", "")
	e.await("the Deployment forgotten", func() bool { return len(e.ctrl.Workloads()) == 0 && len(e.rec.Pods()) == 0 })
}

// A template change rolls the pods: with maxUnavailable 0 and maxSurge 1
// never fewer than replicas run, and never more than one extra.
func TestDeploymentRollingUpdate(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	strategy := "  strategy:\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n"
	e.apply("web.yaml", deployment("web", 3, "busybox:1", strategy))
	e.await("three replicas", func() bool { return len(e.running()) == 3 })
	old := e.running()
	e.apply("web.yaml", deployment("web", 3, "busybox:2", strategy))
	minRun, maxBoxes := 3, 3
	e.await("the rollout", func() bool {
		run, boxes := e.running(), e.sandboxes()
		minRun, maxBoxes = min(minRun, len(run)), max(maxBoxes, len(boxes))
		if len(run) != 3 || len(boxes) != 3 {
			return false
		}
		for _, n := range run {
			if slices.Contains(old, n) {
				return false
			}
		}
		return true
	})
	if minRun < 3 || maxBoxes > 4 {
		t.Errorf("during the rollout %d ran at least and %d sandboxes existed at most; want >= 3 and <= 4", minRun, maxBoxes)
	}
	if len(e.events("RolloutStarted")) != 1 {
		t.Errorf("RolloutStarted events: %v", e.events("RolloutStarted"))
	}
	// An edit that restarts nothing (a label) reaches the pods in place.
	now := e.running()
	e.apply("web.yaml", strings.Replace(deployment("web", 3, "busybox:2", strategy), "labels: {app: web}", "labels: {app: web, tier: front}", 1))
	e.await("the label", func() bool {
		p, _ := e.rec.Pod(runtime.PodKey{Namespace: "default", Name: now[0]})
		return p.Metadata.Labels["tier"] == "front"
	})
	if !slices.Equal(e.running(), now) {
		t.Errorf("a label change replaced pods: %v -> %v", now, e.running())
	}
}

// Recreate: every old pod is gone before a new one starts.
func TestDeploymentRecreate(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	strategy := "  strategy:\n    type: Recreate\n"
	e.apply("web.yaml", deployment("web", 2, "busybox:1", strategy))
	e.await("two replicas", func() bool { return len(e.running()) == 2 })
	old := e.sandboxes()
	e.apply("web.yaml", deployment("web", 2, "busybox:2", strategy))
	mixed := false
	e.await("the new pods", func() bool {
		boxes := e.sandboxes()
		olds, news := 0, 0
		for _, b := range boxes {
			if slices.Contains(old, b) {
				olds++
			} else {
				news++
			}
		}
		mixed = mixed || (olds > 0 && news > 0)
		return olds == 0 && len(e.running()) == 2
	})
	if mixed {
		t.Error("an old and a new pod existed at once under Recreate")
	}
}

// Replicas that publish the same hostPort: one runs, the others say why
// they do not; and a rolling update of a one-replica hostPort Deployment
// does not wait for ever (the old pod goes first).
func TestDeploymentHostPortConflicts(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	withPort := func(image string, replicas int) string {
		return strings.Replace(deployment("web", replicas, image, ""), "        image: "+image+"\n",
			"        image: "+image+"\n        ports: [{containerPort: 80, hostPort: 8080}]\n", 1)
	}
	e.apply("web.yaml", withPort("busybox:1", 3))
	e.await("one runs, two held", func() bool {
		held := 0
		for _, p := range e.rec.Pods() {
			if p.Status.Reason == reconcile.ReasonHostPortConflict && strings.Contains(p.Status.Message, "hostPort 8080/TCP is held by replica web-") {
				held++
			}
		}
		return len(e.running()) == 1 && held == 2 && len(e.sandboxes()) == 1
	})
	e.apply("web.yaml", withPort("busybox:1", 1))
	e.await("one replica", func() bool { return len(e.rec.Pods()) == 1 && len(e.running()) == 1 })
	old := e.running()[0]
	e.apply("web.yaml", withPort("busybox:2", 1))
	e.await("the replacement", func() bool {
		run := e.running()
		return len(run) == 1 && run[0] != old && len(e.sandboxes()) == 1
	})
}

func statefulSet(name string, replicas int, policy string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: %s
spec:
  replicas: %d
  serviceName: %s
  podManagementPolicy: %s
  selector:
    matchLabels: {app: %s}
  template:
    metadata:
      labels: {app: %s}
    spec:
      containers:
      - name: c
        image: busybox:1
`, name, replicas, name, policy, name, name)
}

// OrderedReady: db-0, db-1, db-2 start one after the other; scaling down
// removes them from the top, one at a time; each pod's host name is its
// name and its subdomain the service.
func TestStatefulSetOrdered(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	e.apply("db.yaml", statefulSet("db", 3, "OrderedReady"))
	e.await("three pods", func() bool { return slices.Equal(e.running(), []string{"db-0", "db-1", "db-2"}) })
	var created []string
	for _, m := range e.events("SuccessfulCreate") {
		created = append(created, strings.Fields(m)[2])
	}
	if !slices.Equal(created, []string{"db-0", "db-1", "db-2"}) {
		t.Errorf("creation order %v", created)
	}
	boxes, _ := e.f.ListSandboxes(context.Background())
	for _, b := range boxes {
		if d := e.rec.Desired(b.Pod); b.Hostname != b.Pod.Name || d == nil || d.Sandbox.Subdomain != "db" {
			t.Errorf("pod %s: hostname %q, desired %+v", b.Pod.Name, b.Hostname, d)
		}
	}
	e.apply("db.yaml", statefulSet("db", 1, "OrderedReady"))
	e.await("one pod", func() bool { return slices.Equal(e.sandboxes(), []string{"db-0"}) })
	var deleted []string
	for _, m := range e.events("SuccessfulDelete") {
		deleted = append(deleted, strings.Fields(m)[2])
	}
	if !slices.Equal(deleted, []string{"db-2", "db-1"}) {
		t.Errorf("removal order %v, want the highest ordinal first", deleted)
	}
	st, _ := e.status("StatefulSet", "db").(StatefulSetStatus)
	if st.Replicas != 1 || !strings.HasPrefix(st.CurrentRevision, "db-") {
		t.Errorf("status %+v", st)
	}
}

// A template change updates the pods in place from the top; a restarted
// controller adopts the pods the runtime has instead of remaking them.
func TestStatefulSetUpdateAndAdoption(t *testing.T) {
	f := fake.New()
	e := newEnv(t, f, nil, nil)
	e.apply("db.yaml", statefulSet("db", 2, "Parallel"))
	e.await("two pods", func() bool { return len(e.running()) == 2 })
	e.apply("db.yaml", strings.Replace(statefulSet("db", 2, "Parallel"), "busybox:1", "busybox:2", 1))
	e.await("both updated", func() bool {
		st, _ := e.status("StatefulSet", "db").(StatefulSetStatus)
		return st.UpdatedReplicas == 2 && st.ReadyReplicas == 2 && st.CurrentRevision == st.UpdateRevision
	})
	var updated []string
	for _, m := range e.events("SuccessfulUpdate") {
		updated = append(updated, strings.Fields(m)[2])
	}
	if !slices.Equal(updated, []string{"db-1", "db-0"}) {
		t.Errorf("update order %v, want the highest ordinal first", updated)
	}
	e.await("running", func() bool { return len(e.running()) == 2 })
	before := f.Calls(fake.OpCreateSandbox)
	e.stop()

	e2 := newIdleEnv(t, f, nil, nil)
	e2.dir = e.dir
	e2.apply("db.yaml", strings.Replace(statefulSet("db", 2, "OrderedReady"), "busybox:1", "busybox:2", 1))
	e2.start()
	e2.await("adopted", func() bool {
		st, _ := e2.status("StatefulSet", "db").(StatefulSetStatus)
		return st.ReadyReplicas == 2
	})
	if n := f.Calls(fake.OpCreateSandbox); n != before {
		t.Errorf("a restarted controller made %d sandboxes; want none (adoption)", n-before)
	}
}

func daemonSet(name, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: %s
spec:
  selector:
    matchLabels: {app: %s}
  template:
    metadata:
      labels: {app: %s}
    spec:
%s      containers:
      - name: c
        image: busybox:1
`, name, name, name, extra)
}

// A DaemonSet is one pod on a node its template is meant for, and none on
// another.
func TestDaemonSet(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	e.apply("agent.yaml", daemonSet("agent", ""))
	e.await("one pod", func() bool { return len(e.running()) == 1 && strings.HasPrefix(e.running()[0], "agent-") })
	e.await("status", func() bool {
		st, _ := e.status("DaemonSet", "agent").(DaemonSetStatus)
		return st.DesiredNumberScheduled == 1 && st.NumberReady == 1 && st.NumberAvailable == 1
	})
	e.apply("agent.yaml", daemonSet("agent", "      nodeSelector: {site: elsewhere}\n"))
	e.await("no pod", func() bool { return len(e.sandboxes()) == 0 && len(e.rec.Pods()) == 0 })
	st, _ := e.status("DaemonSet", "agent").(DaemonSetStatus)
	if st.DesiredNumberScheduled != 0 {
		t.Errorf("status %+v", st)
	}
	if ev := e.events(reconcile.ReasonNodeMismatch); len(ev) != 1 || !strings.Contains(ev[0], "nodeSelector site=elsewhere does not match (the node has site=lab)") {
		t.Errorf("events %v", ev)
	}
}

func job(name, restart, image, extra string) string {
	return fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %s
spec:
%s  template:
    spec:
      restartPolicy: %s
      containers:
      - name: c
        image: %s
`, name, extra, restart, image)
}

// exits makes containers of an image exit at once: code(n) is the exit
// code of the n-th start (1-based) of that image; other images run.
func exits(f *fake.Runtime, codes map[string]func(n int) int) {
	var mu sync.Mutex
	starts := map[string]int{}
	f.OnStart(func(cfg *runtime.ContainerConfig) (bool, int) {
		fn, ok := codes[cfg.Image]
		if !ok {
			return false, 0
		}
		mu.Lock()
		starts[cfg.Image]++
		n := starts[cfg.Image]
		mu.Unlock()
		return true, fn(n)
	})
}

func jobStatus(e *env, name string) JobStatus {
	st, _ := e.status("Job", name).(JobStatus)
	return st
}

func finished(st JobStatus) string {
	for _, c := range st.Conditions {
		if c.Status == "True" && (c.Type == "Complete" || c.Type == "Failed") {
			return c.Type + "/" + c.Reason
		}
	}
	return ""
}

// A Job whose pod fails twice then succeeds completes, with each failed
// attempt kept (restartPolicy Never), and a restarted controller with the
// same record does not run it again.
func TestJobFailsTwiceThenSucceeds(t *testing.T) {
	f := fake.New()
	exits(f, map[string]func(int) int{"flaky:1": func(n int) int { return map[bool]int{true: 1, false: 0}[n <= 2] }})
	store := NewMemStore()
	e := newEnv(t, f, store, nil)
	e.apply("once.yaml", job("once", "Never", "flaky:1", "  backoffLimit: 2\n"))
	e.await("completion", func() bool { return finished(jobStatus(e, "once")) == "Complete/" })
	st := jobStatus(e, "once")
	if st.Succeeded != 1 || st.Failed != 2 || st.Active != 0 || st.CompletionTime == nil || st.StartTime == nil {
		t.Errorf("status %+v", st)
	}
	phases := map[string]int{}
	for _, p := range e.rec.Pods() {
		phases[p.Status.Phase]++
		if p.Metadata.Labels["job-name"] != "once" || p.Metadata.Labels["batch.kubernetes.io/controller-uid"] == "" {
			t.Errorf("pod labels %v", p.Metadata.Labels)
		}
	}
	if phases[reconcile.PhaseFailed] != 2 || phases[reconcile.PhaseSucceeded] != 1 {
		t.Errorf("pods by phase %v: want the two failed attempts and the success kept", phases)
	}
	if len(e.events("SuccessfulCreate")) != 3 || len(e.events("Completed")) != 1 {
		t.Errorf("events: created %v, completed %v", e.events("SuccessfulCreate"), e.events("Completed"))
	}
	starts := f.Calls(fake.OpStartContainer)
	e.stop()

	e2 := newIdleEnv(t, f, store, nil)
	e2.dir = e.dir
	e2.apply("once.yaml", job("once", "Never", "flaky:1", "  backoffLimit: 2\n"))
	e2.start()
	e2.await("the record", func() bool { return finished(jobStatus(e2, "once")) == "Complete/" })
	time.Sleep(50 * time.Millisecond) // a pass that would start anything has had its chance
	if n := f.Calls(fake.OpStartContainer); n != starts {
		t.Errorf("a restarted controller started %d containers of a finished Job", n-starts)
	}
}

// More failed pods than backoffLimit fail the Job and make no more pods.
func TestJobBackoffLimitNever(t *testing.T) {
	f := fake.New()
	exits(f, map[string]func(int) int{"bad:1": func(int) int { return 3 }})
	e := newEnv(t, f, nil, nil)
	e.apply("bad.yaml", job("bad", "Never", "bad:1", "  backoffLimit: 1\n"))
	e.await("failure", func() bool { return finished(jobStatus(e, "bad")) == "Failed/BackoffLimitExceeded" })
	time.Sleep(100 * time.Millisecond) // longer than the back-off: no third pod may come
	if st := jobStatus(e, "bad"); st.Failed != 2 || st.Succeeded != 0 || len(e.events("SuccessfulCreate")) != 2 {
		t.Errorf("status %+v, created %v", st, e.events("SuccessfulCreate"))
	}
}

// Under OnFailure the containers restart in place; their restarts reaching
// backoffLimit fail the Job and its running pod is removed.
func TestJobBackoffLimitOnFailure(t *testing.T) {
	f := fake.New()
	exits(f, map[string]func(int) int{"bad:1": func(int) int { return 1 }})
	e := newEnv(t, f, nil, nil)
	e.apply("bad.yaml", job("bad", "OnFailure", "bad:1", "  backoffLimit: 2\n"))
	e.await("failure", func() bool { return finished(jobStatus(e, "bad")) == "Failed/BackoffLimitExceeded" })
	e.await("its pod removed", func() bool { return len(e.sandboxes()) == 0 })
	if n := len(e.events("SuccessfulCreate")); n != 1 {
		t.Errorf("%d pods made; OnFailure restarts in place", n)
	}
}

// completions 5, parallelism 2: five successes, never more than two pods
// at once.
func TestJobParallelism(t *testing.T) {
	f := fake.New()
	e := newEnv(t, f, nil, nil)
	// The pods run until the test lets them finish, one at a time.
	e.apply("batch.yaml", job("batch", "Never", "work:1", "  completions: 5\n  parallelism: 2\n"))
	most := 0
	for done := 0; done < 5; {
		e.await("a running pod", func() bool { return len(e.running()) > 0 })
		most = max(most, len(e.running()), int(jobStatus(e, "batch").Active))
		ctrs, _ := f.ListContainers(context.Background(), runtime.ContainerFilter{})
		for _, c := range ctrs {
			if c.State == runtime.ContainerRunning {
				if err := f.Exit(c.ID, 0); err != nil {
					t.Fatal(err)
				}
				done++
				break
			}
		}
		e.await("the success counted", func() bool { return int(jobStatus(e, "batch").Succeeded) == done })
	}
	e.await("completion", func() bool { return finished(jobStatus(e, "batch")) == "Complete/" })
	if most > 2 || most < 2 {
		t.Errorf("at most %d pods ran at once; want parallelism 2", most)
	}
	if n := len(e.events("SuccessfulCreate")); n != 5 {
		t.Errorf("%d pods made, want 5", n)
	}
}

// activeDeadlineSeconds fails a Job that runs too long and removes its pod.
func TestJobActiveDeadline(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	e.apply("slow.yaml", job("slow", "Never", "sleep:1", "  activeDeadlineSeconds: 1\n"))
	e.await("a running pod", func() bool { return len(e.running()) == 1 })
	e.await("the deadline", func() bool { return finished(jobStatus(e, "slow")) == "Failed/DeadlineExceeded" })
	e.await("its pod removed", func() bool { return len(e.sandboxes()) == 0 && len(e.rec.Pods()) == 0 })
}

// ttlSecondsAfterFinished removes a finished Job's pods; the Job stays
// finished and does not run again until its spec changes.
func TestJobTTLAndRerun(t *testing.T) {
	f := fake.New()
	exits(f, map[string]func(int) int{"ok:1": func(int) int { return 0 }, "ok:2": func(int) int { return 0 }})
	e := newEnv(t, f, nil, nil)
	e.apply("once.yaml", job("once", "Never", "ok:1", "  ttlSecondsAfterFinished: 0\n"))
	e.await("completion and cleanup", func() bool {
		return finished(jobStatus(e, "once")) == "Complete/" && len(e.sandboxes()) == 0 && len(e.rec.Pods()) == 0
	})
	e.apply("once.yaml", job("once", "Never", "ok:1", "  ttlSecondsAfterFinished: 0\n"))
	time.Sleep(50 * time.Millisecond)
	if n := len(e.events("SuccessfulCreate")); n != 1 {
		t.Fatalf("%d pods made; the same Job must not run again", n)
	}
	e.apply("once.yaml", job("once", "Never", "ok:2", "  ttlSecondsAfterFinished: 0\n"))
	e.await("a second run", func() bool {
		return len(e.events("SuccessfulCreate")) == 2 && finished(jobStatus(e, "once")) == "Complete/"
	})
}

// A suspended Job makes no pod until it is resumed.
func TestJobSuspend(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	e.apply("later.yaml", job("later", "Never", "sleep:1", "  suspend: true\n"))
	time.Sleep(50 * time.Millisecond)
	if len(e.rec.Pods()) != 0 {
		t.Fatalf("a suspended Job made pods: %v", e.podLines())
	}
	e.apply("later.yaml", job("later", "Never", "sleep:1", "  suspend: false\n"))
	e.await("a running pod", func() bool { return len(e.running()) == 1 })
}

// A Deployment whose template is meant for another node: its replicas are
// listed, NodeMismatch, owning nothing; a template change replaces them at
// once (there is no availability to keep).
func TestDeploymentForAnotherNode(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	sel := func(image string) string {
		return strings.Replace(deployment("web", 2, image, ""), "    spec:\n", "    spec:\n      nodeSelector: {site: elsewhere}\n", 1)
	}
	e.apply("web.yaml", sel("busybox:1"))
	held := func(hash string) func() bool {
		return func() bool {
			n := 0
			for _, p := range e.rec.Pods() {
				if p.Status.Reason == reconcile.ReasonNodeMismatch && strings.Contains(p.Metadata.Name, hash) {
					n++
				}
			}
			return n == 2 && len(e.rec.Pods()) == 2
		}
	}
	e.await("two held replicas", held("-"))
	if len(e.sandboxes()) != 0 {
		t.Fatalf("sandboxes %v", e.sandboxes())
	}
	e.apply("web.yaml", sel("busybox:2"))
	h := templateHash(workloadOf(t, sel("busybox:2")))
	e.await("two held replicas of the new template", held("-"+h+"-"))
}
