package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
)

// withEnv adds an environment variable to every container of every Pod in a
// manifest file: a container spec change, which restarts each container.
func withEnv(t *testing.T, manifest string) string {
	t.Helper()
	var docs []string
	for _, doc := range strings.Split(manifest, "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		if obj["kind"] == "Pod" {
			for _, c := range obj["spec"].(map[string]any)["containers"].([]any) {
				c := c.(map[string]any)
				env, _ := c["env"].([]any)
				c["env"] = append(env, map[string]any{"name": "RESTARTED", "value": "yes"})
			}
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	return strings.Join(docs, "---\n")
}

// TestExamplesStopOnSIGTERM runs every pod of examples/pods on the real
// agent and changes each running container's spec, so that the agent stops
// it with SIGTERM and the default 30 s grace period. Every container must
// have ended by itself (exit 0, no signal): one that ignored SIGTERM — a
// shell or httpd as PID 1 without a trap — would be killed after the grace
// period and show exit code 137, and every edit, delete and Ctrl-C of the demo
// would wait 30 s in silence.
func TestExamplesStopOnSIGTERM(t *testing.T) {
	e := newAgentEnv(t, "--stop-pods-on-exit")
	// The examples publish fixed ports on the node; the test takes its own
	// so that it never meets a demo running on this machine.
	hostPort, nodePort := 20000+rand.IntN(10000), 30000+rand.IntN(10000)
	files, err := filepath.Glob("../../examples/pods/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	manifests := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := strings.ReplaceAll(string(b), "hostPort: 8080", fmt.Sprintf("hostPort: %d", hostPort))
		m = strings.ReplaceAll(m, "18081", fmt.Sprint(nodePort))
		manifests[filepath.Base(f)] = m
		e.write("rev1", filepath.Base(f), m)
	}
	e.start()

	pods := func() []reconcile.Pod {
		l, err := e.client.Pods(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	e.eventually("every example running (or done)", func() error {
		l := pods()
		if len(l) < len(files) {
			return fmt.Errorf("%d pods", len(l))
		}
		for _, p := range l {
			if p.Status.Phase == reconcile.PhaseSucceeded {
				continue
			}
			for _, c := range p.Status.ContainerStatuses {
				if c.State.Running == nil {
					return fmt.Errorf("%s/%s: container %s not running", p.Metadata.Namespace, p.Metadata.Name, c.Name)
				}
			}
		}
		return nil
	})
	done := map[string]bool{} // pods that ran to completion (restartPolicy Never)
	for _, p := range pods() {
		if p.Status.Phase == reconcile.PhaseSucceeded {
			done[p.Status.Pelagos.SourceFile] = true
		}
	}
	for file, m := range manifests {
		if !done[filepath.Join(e.current, file)] {
			e.write("rev1", file, withEnv(t, m))
		}
	}
	e.eventually("every running container stopped and started again", func() error {
		for _, p := range pods() {
			if p.Status.Phase == reconcile.PhaseSucceeded {
				continue
			}
			for _, c := range p.Status.ContainerStatuses {
				if c.LastState.Terminated == nil || c.State.Running == nil {
					return fmt.Errorf("%s/%s: container %s not restarted yet", p.Metadata.Namespace, p.Metadata.Name, c.Name)
				}
			}
		}
		return nil
	})
	for _, p := range pods() {
		for _, c := range p.Status.ContainerStatuses {
			if tm := c.LastState.Terminated; tm != nil && (tm.ExitCode != 0 || tm.Signal != 0) {
				t.Errorf("%s/%s container %s ended with exit code %d, signal %d (%s): it does not stop on SIGTERM",
					p.Metadata.Namespace, p.Metadata.Name, c.Name, tm.ExitCode, tm.Signal, tm.Reason)
			}
		}
	}
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}
