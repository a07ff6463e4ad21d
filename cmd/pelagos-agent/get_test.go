package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
)

func TestPodStatusColumn(t *testing.T) {
	waiting := func(r string) reconcile.ContainerStatus {
		return reconcile.ContainerStatus{State: reconcile.ContainerState{Waiting: &reconcile.StateWaiting{Reason: r}}}
	}
	running := reconcile.ContainerStatus{State: reconcile.ContainerState{Running: &reconcile.StateRunning{}}, Ready: true}
	term := func(code int, reason string) reconcile.ContainerStatus {
		return reconcile.ContainerStatus{State: reconcile.ContainerState{Terminated: &reconcile.StateTerminated{ExitCode: code, Reason: reason}}}
	}
	for _, tc := range []struct {
		name string
		st   reconcile.PodStatus
		want string
	}{
		{"running", reconcile.PodStatus{Phase: "Running", ContainerStatuses: []reconcile.ContainerStatus{running}}, "Running"},
		{"crash loop", reconcile.PodStatus{Phase: "Running", ContainerStatuses: []reconcile.ContainerStatus{running, waiting("CrashLoopBackOff")}}, "CrashLoopBackOff"},
		{"creating", reconcile.PodStatus{Phase: "Pending", ContainerStatuses: []reconcile.ContainerStatus{waiting("ContainerCreating")}}, "ContainerCreating"},
		{"init running", reconcile.PodStatus{Phase: "Pending",
			InitContainerStatuses: []reconcile.ContainerStatus{term(0, "Completed"), running},
			ContainerStatuses:     []reconcile.ContainerStatus{waiting("PodInitializing")}}, "Init:1/2"},
		{"init failed", reconcile.PodStatus{Phase: "Failed", InitContainerStatuses: []reconcile.ContainerStatus{term(1, "Error")}}, "Init:Error"},
		{"completed", reconcile.PodStatus{Phase: "Succeeded", ContainerStatuses: []reconcile.ContainerStatus{term(0, "Completed")}}, "Completed"},
		{"oom", reconcile.PodStatus{Phase: "Failed", ContainerStatuses: []reconcile.ContainerStatus{term(137, "OOMKilled")}}, "OOMKilled"},
		{"terminating", reconcile.PodStatus{Phase: "Running", Reason: "Terminating"}, "Terminating"},
	} {
		if got := podStatus(reconcile.Pod{Status: tc.st}); got != tc.want {
			t.Errorf("%s: STATUS %q, want %q", tc.name, got, tc.want)
		}
	}
}

// Native sidecars count as containers of the pod in READY, as kubectl
// counts them, and a started one is not "Init".
func TestPrintPodsSidecars(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	yes := true
	runningReady := reconcile.ContainerStatus{Name: "proxy", Ready: true, Started: &yes, RestartCount: 1,
		State: reconcile.ContainerState{Running: &reconcile.StateRunning{}}}
	p := reconcile.Pod{Metadata: reconcile.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: map[string]any{"initContainers": []any{map[string]any{"name": "setup"}, map[string]any{"name": "proxy", "restartPolicy": "Always"}}},
		Status: reconcile.PodStatus{Phase: "Running", InitContainerStatuses: []reconcile.ContainerStatus{
			{Name: "setup", State: reconcile.ContainerState{Terminated: &reconcile.StateTerminated{Reason: "Completed"}}}, runningReady},
			ContainerStatuses: []reconcile.ContainerStatus{{Name: "app", Ready: true, State: reconcile.ContainerState{Running: &reconcile.StateRunning{}}}}}}
	var b bytes.Buffer
	printPods(&b, []reconcile.Pod{p}, false, false, now)
	want := "NAME   READY   STATUS    RESTARTS   AGE         IP\nweb    2/2     Running   1          <unknown>   <none>\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPrintPodsTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	created := now.Add(-90 * time.Second)
	p := reconcile.Pod{Metadata: reconcile.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: &created},
		Status: reconcile.PodStatus{Phase: "Running", PodIP: "10.88.0.2", ContainerStatuses: []reconcile.ContainerStatus{
			{Ready: true, State: reconcile.ContainerState{Running: &reconcile.StateRunning{}}, RestartCount: 2,
				LastState: reconcile.ContainerState{Terminated: &reconcile.StateTerminated{FinishedAt: now.Add(-30 * time.Second)}}},
			{State: reconcile.ContainerState{Waiting: &reconcile.StateWaiting{Reason: "CrashLoopBackOff"}}},
		}}}
	var b bytes.Buffer
	printPods(&b, []reconcile.Pod{p}, false, false, now)
	want := "NAME   READY   STATUS             RESTARTS      AGE   IP\nweb    1/2     CrashLoopBackOff   2 (30s ago)   90s   10.88.0.2\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestClientCommandsWithoutAgent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{{"get", "pods"}, {"describe", "pod", "web"}, {"logs", "web"}, {"events"}, {"exec", "web", "--", "true"}} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"--socket", sock}, args...), &stdout, &stderr)
		if exitCode(err) != exitFailure || !strings.Contains(stderr.String(), "the agent is not running") ||
			strings.Contains(stderr.String(), "goroutine") {
			t.Errorf("%v: exit %d, stderr %q", args, exitCode(err), stderr.String())
		}
	}
}

// An aggregated event reads as kubectl shows one: "8s (x7 over 20s)".
func TestPrintEventsAggregated(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pod := reconcile.ObjectRef{Kind: "Pod", Namespace: "default", Name: "crash", FieldPath: "spec.containers{app}"}
	evs := []reconcile.Event{
		{Type: "Normal", Reason: "Pulled", InvolvedObject: pod, Message: "image present", Count: 1,
			FirstTimestamp: now.Add(-40 * time.Second), LastTimestamp: now.Add(-40 * time.Second)},
		{Type: "Warning", Reason: "BackOff", InvolvedObject: pod, Message: "Back-off restarting failed container", Count: 7,
			FirstTimestamp: now.Add(-20 * time.Second), LastTimestamp: now.Add(-8 * time.Second)},
	}
	var b bytes.Buffer
	printEvents(&b, evs, false, now)
	want := "LAST SEEN          TYPE      REASON    OBJECT                           MESSAGE\n" +
		"40s                Normal    Pulled    pod/crash spec.containers{app}   image present\n" +
		"8s (x7 over 20s)   Warning   BackOff   pod/crash spec.containers{app}   Back-off restarting failed container\n"
	if b.String() != want {
		t.Errorf("events:\n%s\nwant:\n%s", b.String(), want)
	}
}
