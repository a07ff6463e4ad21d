package linux

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/hooks"
	"github.com/pelagos-containers/pelagos-agent/reconcile/prober"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

var (
	grpcOnce sync.Once
	grpcPath string
	grpcErr  error
)

// buildGRPCHealth compiles testdata/grpchealth statically, once per binary.
func buildGRPCHealth(t testing.TB) string {
	grpcOnce.Do(func() {
		dir, err := os.MkdirTemp("", "grpchealth")
		if err != nil {
			grpcErr = err
			return
		}
		grpcPath = filepath.Join(dir, "grpchealth")
		cmd := exec.Command("go", "build", "-o", grpcPath, "./testdata/grpchealth")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			grpcErr = fmt.Errorf("build grpchealth: %v\n%s", err, out)
		}
	})
	if grpcErr != nil {
		t.Fatal(grpcErr)
	}
	return grpcPath
}

// stopJournal records the grace each stop got, by container.
type stopJournal struct {
	*Runtime
	mu    sync.Mutex
	grace map[string]time.Duration
}

func (j *stopJournal) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	j.mu.Lock()
	if _, seen := j.grace[id]; !seen {
		j.grace[id] = grace
	}
	j.mu.Unlock()
	return j.Runtime.StopContainer(ctx, id, grace)
}

const e2eImage = "pelagos.test/busybox-grpc:1"

const e2ePod = `apiVersion: v1
kind: Pod
metadata: {name: lifecycle, namespace: default}
spec:
  terminationGracePeriodSeconds: 6
  containers:
  - name: web
    image: ` + e2eImage + `
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "trap 'echo TERM >> /log/web; exit 0' TERM; mkdir -p /www; echo ok > /www/ready; httpd -p 8080 -h /www; while true; do sleep 1; done"]
    ports: [{name: http, containerPort: 8080}]
    startupProbe: {tcpSocket: {port: http}, periodSeconds: 1, timeoutSeconds: 10, failureThreshold: 60}
    readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1, timeoutSeconds: 10, failureThreshold: 1}
    livenessProbe: {exec: {command: ["/bin/sh", "-c", "test ! -f /www/die"]}, periodSeconds: 1, timeoutSeconds: 20, failureThreshold: 1}
    lifecycle:
      postStart: {exec: {command: ["/bin/sh", "-c", "echo poststart >> /log/web"]}}
      preStop: {exec: {command: ["/bin/sh", "-c", "echo prestop >> /log/web; sleep 2"]}}
    volumeMounts: [{name: log, mountPath: /log}]
  - name: grpc
    image: ` + e2eImage + `
    imagePullPolicy: Never
    command: ["/usr/local/bin/grpchealth", "-listen", ":50051", "-down", "/notserving"]
    startupProbe: {grpc: {port: 50051}, periodSeconds: 1, timeoutSeconds: 10, failureThreshold: 60}
    livenessProbe: {grpc: {port: 50051}, periodSeconds: 1, timeoutSeconds: 10, failureThreshold: 1}
    readinessProbe: {grpc: {port: 50051}, periodSeconds: 1, timeoutSeconds: 10, failureThreshold: 1}
  volumes:
  - name: log
    hostPath: {path: %s, type: Directory}
`

// TestLifecyclePodEndToEnd drives a real pod through the reconciler with
// the prober bridge and the hook runner: every probe type passing and
// failing, the readiness flip in the pod status (what get pods shows),
// liveness restarts counted, postStart, and preStop running before SIGTERM
// within the grace period.
func TestLifecyclePodEndToEnd(t *testing.T) {
	e := lifecycleRuntime(t)
	img := imagetest.WithFiles(t, imagetest.Busybox(t),
		imagetest.HostFile{Path: "/usr/local/bin/grpchealth", From: buildGRPCHealth(t)})
	imagetest.ImportInto(t, e.store, e2eImage, img)
	logDir := t.TempDir()

	docs, errs := spec.ParseFile("pod.yaml", []byte(fmt.Sprintf(e2ePod, logDir)), spec.Limits{})
	if len(errs) > 0 || len(docs) != 1 || !docs[0].Valid() {
		t.Fatalf("manifest: %v %+v", errs, docs)
	}
	d, err := reconcile.Translator{}.Pod(docs[0].Pod, "pod.yaml", &reconcile.Documents{})
	if err != nil {
		t.Fatal(err)
	}
	jr := &stopJournal{Runtime: e.rt, grace: map[string]time.Duration{}}
	events := reconcile.NewEvents(512, zerolog.Nop())
	var hk reconcile.Hooks
	runner := hooks.New(jr)
	runner.Install(&hk)
	// Updates are logged for the failure report (go test -v shows them).
	bridge, err := prober.NewBridge(jr, prober.Options{OnUpdate: func(u prober.Update) { t.Logf("%s %s", time.Now().Format("15:04:05.000"), u) }})
	if err != nil {
		t.Fatal(err)
	}
	defer bridge.Close()
	hk.Prober = bridge
	runner.BeforeStop = bridge.Stopping
	r := reconcile.New(reconcile.Config{
		Runtime: jr, Images: e.store, Log: zerolog.Nop(), Events: events, Hooks: hk,
		Workers: 2, Resync: time.Second,
		Backoff: reconcile.BackoffPolicy{Initial: 100 * time.Millisecond, Max: time.Second, Reset: time.Hour},
	})
	bridge.Reporter = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	r.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{d}})

	status := func() reconcile.PodStatus {
		p, _ := r.Pod(d.Key)
		return p.Status
	}
	ctr := func(st reconcile.PodStatus, name string) reconcile.ContainerStatus {
		for _, c := range st.ContainerStatuses {
			if c.Name == name {
				return c
			}
		}
		return reconcile.ContainerStatus{}
	}
	podReady := func(st reconcile.PodStatus) bool {
		for _, c := range st.Conditions {
			if c.Type == "Ready" {
				return c.Status == "True"
			}
		}
		return false
	}
	waitFor := func(what string, ok func(reconcile.PodStatus) bool) reconcile.PodStatus {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			st := status()
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				for _, ev := range events.List() {
					t.Logf("event %s %s", ev.Reason, ev.Message)
				}
				t.Fatalf("%s: not within 60s; status %+v", what, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	running := func(name string) string {
		t.Helper()
		cs, err := e.rt.ListContainers(context.Background(), runtime.ContainerFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Name == name && c.State == runtime.ContainerRunning {
				return c.ID
			}
		}
		t.Fatalf("no running container %s", name)
		return ""
	}
	sh := func(name, script string) {
		t.Helper()
		var out bytes.Buffer
		if code, err := e.rt.Exec(context.Background(), running(name), runtime.ExecOptions{Cmd: []string{"/bin/sh", "-c", script}, Stdout: &out, Stderr: &out, Timeout: 30 * time.Second}); err != nil || code != 0 {
			t.Fatalf("exec %q in %s: %d %v %s", script, name, code, err, out.String())
		}
	}

	// Start: startup (tcpSocket) gates the rest; readiness (httpGet, grpc)
	// makes the pod Ready.
	waitFor("pod ready", func(st reconcile.PodStatus) bool {
		return podReady(st) && ctr(st, "web").Ready && ctr(st, "grpc").Ready
	})
	if st := status(); ctr(st, "web").RestartCount != 0 || ctr(st, "grpc").RestartCount != 0 {
		t.Fatalf("restarts before any failure: %+v", st.ContainerStatuses)
	}

	// Readiness flip, seen in the pod status: not ready, then ready again,
	// without a restart.
	sh("web", "rm /www/ready")
	waitFor("web not ready", func(st reconcile.PodStatus) bool { return !podReady(st) && !ctr(st, "web").Ready })
	sh("web", "echo ok > /www/ready")
	st := waitFor("web ready again", func(st reconcile.PodStatus) bool { return podReady(st) && ctr(st, "web").Ready })
	if ctr(st, "web").RestartCount != 0 {
		t.Fatalf("a readiness failure restarted the container: %+v", ctr(st, "web"))
	}

	// Liveness (exec) fails: the container is killed and restarted.
	sh("web", "touch /www/die")
	st = waitFor("web restarted once and ready", func(st reconcile.PodStatus) bool {
		c := ctr(st, "web")
		return c.RestartCount == 1 && c.Ready && c.State.Running != nil
	})
	if ctr(st, "web").LastState.Terminated == nil {
		t.Fatalf("no lastState after the liveness restart: %+v", ctr(st, "web"))
	}
	// gRPC liveness: NOT_SERVING restarts the grpc container.
	sh("grpc", "touch /notserving")
	waitFor("grpc restarted once and ready", func(st reconcile.PodStatus) bool {
		c := ctr(st, "grpc")
		return c.RestartCount == 1 && c.Ready
	})
	kills := 0
	for _, ev := range events.List() {
		if ev.Reason == "Killing" && strings.Contains(ev.Message, "failed liveness probe") {
			kills++
		}
	}
	if kills != 2 {
		t.Fatalf("%d liveness Killing events, want 2: %+v", kills, events.List())
	}

	// The manifest goes: preStop (2 s) runs first, then SIGTERM with what
	// is left of the 6 s grace.
	webID := running("web")
	r.SetDesired(reconcile.DesiredSet{})
	deadline := time.Now().Add(60 * time.Second)
	for {
		sbs, _ := e.rt.ListSandboxes(context.Background())
		if len(sbs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pod not removed within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(logDir, "web"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b))
	n := len(lines)
	if n < 2 || lines[n-2] != "prestop" || lines[n-1] != "TERM" {
		t.Fatalf("web log %q: want the preStop line right before TERM at the end", lines)
	}
	if strings.Count(string(b), "poststart") != 2 {
		t.Fatalf("web log %q: want one postStart line per start (2)", lines)
	}
	jr.mu.Lock()
	g, ok := jr.grace[webID]
	jr.mu.Unlock()
	if !ok || g > 4*time.Second {
		t.Fatalf("web's stop got grace %v (recorded %v): the 2 s preStop must come out of the 6 s", g, ok)
	}

	e.census.Check(t, 10*time.Second)
	if kids, _ := e.cg.Children(); len(kids) != 0 {
		t.Errorf("census: cgroups left below %s: %v", e.cg.Parent(), kids)
	}
}
