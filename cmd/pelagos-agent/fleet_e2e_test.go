package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// trap is a container command that stops at once on SIGTERM, so removals
// do not wait out grace periods.
const trap = `["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]`

func e2eDeployment(replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: %d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: busybox:1.36
        command: %s
`, replicas, trap)
}

// runningPods lists the pods that own a sandbox and run every container,
// by name, as the agent's API reports them.
func (e *agentEnv) runningPods() []string {
	e.t.Helper()
	l, err := e.client.Pods(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		if p.Status.Phase != reconcile.PhaseRunning || p.Status.Pelagos.SandboxID == "" {
			continue
		}
		ok := len(p.Status.ContainerStatuses) > 0
		for _, c := range p.Status.ContainerStatuses {
			ok = ok && c.State.Running != nil && c.Ready
		}
		if ok {
			out = append(out, p.Metadata.Name)
		}
	}
	slices.Sort(out)
	return out
}

// tableHas reports whether a line of a printed table starts with these
// columns.
func tableHas(out string, cols ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= len(cols) && slices.Equal(f[:len(cols)], cols) {
			return true
		}
	}
	return false
}

// fleetCensus is the agent's census with its IP leases and Job records.
func (e *agentEnv) fleetCensus() linuxtest.Census {
	c := e.census()
	c.StateRoot = e.stateRoot
	c.EmptyDirs = []string{filepath.Join(e.stateRoot, "workloads")}
	return c
}

// A Deployment scaled 1 -> 3 -> 0 on the real runtime: replicas named as
// Kubernetes names them, `get deployments` as kubectl prints it, one
// sandbox and netns per replica, nothing left at 0.
func TestAgentDeploymentScales(t *testing.T) {
	e := newAgentEnv(t, "--resync", "1h")
	e.start()
	e.write("rev1", "web.yaml", e2eDeployment(1))
	e.eventually("one replica", func() error {
		if r := e.runningPods(); len(r) != 1 {
			return fmt.Errorf("running %v", r)
		}
		return nil
	})
	first := e.runningPods()[0]
	if !strings.HasPrefix(first, "web-") || len(strings.Split(first, "-")) != 3 {
		t.Errorf("replica name %q is not web-<hash>-<5 characters>", first)
	}
	e.write("rev1", "web.yaml", e2eDeployment(3))
	e.eventually("three replicas", func() error {
		if r := e.runningPods(); len(r) != 3 || !slices.Contains(r, first) {
			return fmt.Errorf("running %v", r)
		}
		if ns := linuxtest.NetNS(e.tag + "-"); len(ns) != 3 {
			return fmt.Errorf("%d netns", len(ns))
		}
		out, _, code := e.cli("get", "deployments")
		if code != 0 || !tableHas(out, "web", "3/3", "3", "3") {
			return fmt.Errorf("get deployments (exit %d):\n%s", code, out)
		}
		return nil
	})
	out, _, code := e.cli("get", "pods", first, "-o", "json")
	if code != 0 || !strings.Contains(out, `"pod-template-hash"`) || !strings.Contains(out, `"kind": "Deployment"`) {
		t.Errorf("a replica's labels and owner (exit %d):\n%s", code, out)
	}
	// kubectl reads the Deployment from the agent's Kubernetes API.
	k := newKubectl(t, e)
	if out, errOut, code := k.run("get", "deployments"); code != 0 || !tableHas(out, "web", "3/3", "3", "3") {
		t.Errorf("kubectl get deployments (exit %d):\n%s%s", code, out, errOut)
	}
	if out, errOut, code := k.run("get", "pods", "-l", "app=web", "-o", "name"); code != 0 || strings.Count(out, "pod/web-") != 3 {
		t.Errorf("kubectl get pods -l app=web (exit %d):\n%s%s", code, out, errOut)
	}
	e.write("rev1", "web.yaml", e2eDeployment(0))
	e.eventually("no replica", func() error {
		l, err := e.client.Pods(context.Background(), "")
		if err != nil || len(l.Items) != 0 {
			return fmt.Errorf("%v: %d pods", err, len(l.Items))
		}
		return nil
	})
	out, _, _ = e.cli("get", "deploy", "web")
	if !tableHas(out, "web", "0/0", "0", "0") {
		t.Errorf("get deploy web:\n%s", out)
	}
	e.stop(syscall.SIGTERM)
	e.fleetCensus().Check(t, 10*time.Second)
}

// A Job whose container fails twice then succeeds (it counts its runs in
// a hostPath): three pods, the Job Complete; a restarted agent does not
// run it again; removing it removes its pods and its record.
func TestAgentJobFailsTwiceThenSucceeds(t *testing.T) {
	e := newAgentEnv(t, "--resync", "1h", "--backoff-initial", "200ms", "--backoff-max", "1s")
	data := t.TempDir()
	e.start()
	e.write("rev1", "count.yaml", fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: count
spec:
  backoffLimit: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: count
        image: busybox:1.36
        command: ["sh", "-c", "n=$(cat /data/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/runs; echo run $n; [ $n -ge 3 ]"]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes:
      - name: data
        hostPath: {path: %s}
`, data))
	e.eventually("the Job complete", func() error {
		out, _, code := e.cli("get", "jobs")
		if code != 0 || !tableHas(out, "count", "Complete", "1/1") {
			return fmt.Errorf("get jobs (exit %d):\n%s", code, out)
		}
		return nil
	})
	runs, err := os.ReadFile(filepath.Join(data, "runs"))
	if err != nil || strings.TrimSpace(string(runs)) != "3" {
		t.Fatalf("runs %q (%v), want 3", runs, err)
	}
	l, err := e.client.Pods(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	phases := map[string]int{}
	for _, p := range l.Items {
		phases[p.Status.Phase]++
	}
	if phases[reconcile.PhaseFailed] != 2 || phases[reconcile.PhaseSucceeded] != 1 || len(l.Items) != 3 {
		t.Errorf("pods by phase %v: want the two failed attempts and the success", phases)
	}
	out, _, _ := e.cli("get", "pods")
	if strings.Count(out, "Error") != 2 || strings.Count(out, "Completed") != 1 {
		t.Errorf("get pods:\n%s", out)
	}

	// The record survives the agent: a restart does not run the Job again.
	e.stop(syscall.SIGTERM)
	e.start()
	e.eventually("the Job still complete", func() error {
		out, _, code := e.cli("get", "job", "count", "-o", "json")
		if code != 0 || !strings.Contains(out, `"type": "Complete"`) || !strings.Contains(out, `"succeeded": 1`) || !strings.Contains(out, `"failed": 2`) {
			return fmt.Errorf("get job (exit %d):\n%s", code, out)
		}
		return nil
	})
	time.Sleep(time.Second) // a run would have started by now
	if runs, _ := os.ReadFile(filepath.Join(data, "runs")); strings.TrimSpace(string(runs)) != "3" {
		t.Errorf("the Job ran again after a restart: runs %q", runs)
	}

	if err := os.Remove(filepath.Join(e.repo, "rev1", "count.yaml")); err != nil {
		t.Fatal(err)
	}
	e.eventually("its pods gone", func() error {
		l, err := e.client.Pods(context.Background(), "")
		if err != nil || len(l.Items) != 0 {
			return fmt.Errorf("%v: %d pods", err, len(l.Items))
		}
		return nil
	})
	e.stop(syscall.SIGTERM)
	e.fleetCensus().Check(t, 10*time.Second)
}

// Two agents with different labels and taints share one manifest
// directory, as a fleet synced from one Git repository does: each runs the
// pods meant for it, the two sets are disjoint, and each shows the others
// as NodeMismatch. Restarted with other labels, an agent starts and removes
// pods to match; an edited manifest moves a pod.
func TestAgentFleetTwoNodesOneDirectory(t *testing.T) {
	a := newAgentEnv(t, "--resync", "1h", "--node-labels", "site=a,role=edge")
	b := newAgentEnv(t, "--resync", "1h", "--node-labels", "site=b", "--node-taints", "dedicated=gpu:NoSchedule")
	// One directory for both: b's manifest directory is a's.
	if err := os.Remove(b.current); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(a.repo, "rev1"), b.current); err != nil {
		t.Fatal(err)
	}
	pod := func(name, extra string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n%s  terminationGracePeriodSeconds: 2\n"+
			"  containers:\n  - name: app\n    image: busybox:1.36\n    command: %s\n", name, extra, trap)
	}
	const gpu = "  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n"
	a.write("rev1", "alpha.yaml", pod("alpha", "  nodeSelector: {site: a}\n"))
	a.write("rev1", "beta.yaml", pod("beta", "  nodeSelector: {site: b}\n"+gpu))
	a.write("rev1", "plain.yaml", pod("plain", ""))
	a.write("rev1", "affine.yaml", pod("affine", "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n"+
		"        nodeSelectorTerms:\n        - matchExpressions: [{key: site, operator: In, values: [b, c]}]\n  tolerations: [{operator: Exists}]\n"))
	a.write("rev1", "edge.yaml", strings.NewReplacer("kind: Deployment", "kind: DaemonSet", "name: web", "name: edge", "app: web", "app: edge",
		"  replicas: 0\n", "", "    spec:\n", "    spec:\n      nodeSelector: {role: edge}\n").Replace(e2eDeployment(0)))
	a.write("rev1", "web.yaml", strings.Replace(e2eDeployment(2), "    spec:\n", "    spec:\n      nodeSelector: {site: b}\n"+
		strings.ReplaceAll(gpu, "  tolerations", "      tolerations"), 1))
	a.start()
	b.start()

	onA := func(r []string) bool {
		return len(r) == 3 && r[0] == "alpha" && strings.HasPrefix(r[1], "edge-") && r[2] == "plain"
	}
	onB := func(r []string) bool {
		return len(r) == 4 && r[0] == "affine" && r[1] == "beta" && strings.HasPrefix(r[2], "web-") && strings.HasPrefix(r[3], "web-")
	}
	a.eventually("a's pods", func() error {
		if r := a.runningPods(); !onA(r) {
			return fmt.Errorf("a runs %v", r)
		}
		return nil
	})
	b.eventually("b's pods", func() error {
		if r := b.runningPods(); !onB(r) {
			return fmt.Errorf("b runs %v", r)
		}
		return nil
	})
	// Disjoint: each agent's kernel objects are its own pods'.
	if n, m := len(linuxtest.NetNS(a.tag+"-")), len(linuxtest.NetNS(b.tag+"-")); n != 3 || m != 4 {
		t.Errorf("netns: a %d, b %d; want 3 and 4", n, m)
	}
	mismatch := func(e *agentEnv, name, msg string) {
		t.Helper()
		e.eventually(name+" shown as meant for another node", func() error {
			p, err := e.pod(name)
			if err != nil {
				return err
			}
			if p.Status.Phase != reconcile.PhasePending || p.Status.Reason != reconcile.ReasonNodeMismatch ||
				!strings.Contains(p.Status.Message, msg) || p.Status.Pelagos.SandboxID != "" || p.Status.Pelagos.LastError != nil {
				return fmt.Errorf("status %s %s %q %+v", p.Status.Phase, p.Status.Reason, p.Status.Message, p.Status.Pelagos)
			}
			return nil
		})
	}
	mismatch(a, "beta", "nodeSelector site=b does not match (the node has site=a)")
	mismatch(a, "affine", "required node affinity does not match: site In (b,c) (the node has site=a)")
	mismatch(b, "alpha", "nodeSelector site=a does not match (the node has site=b)")
	mismatch(b, "plain", "taint dedicated=gpu:NoSchedule is not tolerated")
	out, _, _ := b.cli("get", "pods")
	if strings.Count(out, "NodeMismatch") != 2 {
		t.Errorf("b's get pods:\n%s", out)
	}
	if out, _, _ := b.cli("describe", "pod", "alpha"); !regexp.MustCompile(`(?m)^Message:\s+nodeSelector site=a does not match \(the node has site=b\)$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\s+Normal\s+NodeMismatch\s`).MatchString(out) {
		t.Errorf("b's describe pod alpha:\n%s", out)
	}
	if out, _, _ := a.cli("describe", "pod", "plain"); !regexp.MustCompile(`(?m)^Status:\s+Running$`).MatchString(out) {
		t.Errorf("a's describe pod plain:\n%s", out)
	}
	if out, _, _ := b.cli("get", "daemonsets"); !tableHas(out, "edge", "0", "0", "0") {
		t.Errorf("b's get daemonsets:\n%s", out)
	}
	if out, _, _ := a.cli("get", "daemonsets"); !tableHas(out, "edge", "1", "1", "1", "1", "1", "role=edge") {
		t.Errorf("a's get daemonsets:\n%s", out)
	}
	// Not an error: no manifest error is reported for pods of other nodes.
	if out, _, _ := a.cli("get", "pods"); strings.Contains(out, "Manifest errors") {
		t.Errorf("a pod for another node is reported as an error:\n%s", out)
	}

	// An edit moves a pod: alpha now belongs to b (with the toleration).
	a.write("rev1", "alpha.yaml", pod("alpha", "  nodeSelector: {site: b}\n"+gpu))
	a.eventually("alpha gone from a", func() error {
		if r := a.runningPods(); slices.Contains(r, "alpha") || len(linuxtest.NetNS(a.tag+"-")) != 2 {
			return fmt.Errorf("a runs %v", r)
		}
		return nil
	})
	b.eventually("alpha on b", func() error {
		if r := b.runningPods(); !slices.Contains(r, "alpha") {
			return fmt.Errorf("b runs %v", r)
		}
		return nil
	})

	// b restarted with a's labels and no taint: it adopts what still
	// matches (nothing of site=b does), removes the rest, starts the rest.
	b.stop(syscall.SIGTERM)
	b.extra = []string{"--resync", "1h", "--node-labels", "site=a,role=edge"}
	b.start()
	b.eventually("b matching its new labels", func() error {
		r := b.runningPods()
		if len(r) != 2 || !strings.HasPrefix(r[0], "edge-") || r[1] != "plain" {
			return fmt.Errorf("b runs %v", r)
		}
		if n := len(linuxtest.NetNS(b.tag + "-")); n != 2 {
			return fmt.Errorf("b has %d netns", n)
		}
		return nil
	})

	for _, e := range []*agentEnv{a, b} {
		e.removeAll() // each points its own manifest link at an empty directory
		e.stop(syscall.SIGTERM)
		e.fleetCensus().Check(t, 10*time.Second)
	}
}
