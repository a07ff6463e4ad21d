package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// --stop-pods-on-exit removes every pod when the agent is stopped, and does
// so in parallel: each pod here ignores SIGTERM (sleep as PID 1) and so takes
// its whole grace period, yet every pod's Killing comes before the first
// sandbox removal. Nothing is left afterwards.
func TestAgentStopPodsOnExit(t *testing.T) {
	e := newAgentEnv(t, "--stop-pods-on-exit")
	e.start()
	names := []string{"slow-a", "slow-b", "slow-c"}
	for _, n := range names {
		e.write("rev1", n+".yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 2
  containers: [{name: app, image: "busybox:1.36", command: [sleep, "3600"]}]
`, n))
	}
	for _, n := range names {
		e.running(n)
	}
	e.stop(syscall.SIGTERM)

	f, err := os.Open(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	killing, removedBeforeAllKilled := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct{ Event, Action string }
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch {
		case l.Event == "Killing":
			killing++
		case l.Action == "RemoveSandbox" && killing < len(names):
			removedBeforeAllKilled = true
		}
	}
	if killing != len(names) {
		t.Errorf("%d Killing events logged, want %d", killing, len(names))
	}
	if removedBeforeAllKilled {
		t.Errorf("a sandbox was removed before every pod was told to stop: pods were stopped one after another")
	}
	e.census().Check(t, 10*time.Second)
}

// SIGTERM while a container's stop waits out a 30 s grace period (issue
// 12): the agent ends at once, abandoning the stop — the container, which
// ignores SIGTERM, is still there with its shim afterwards, which proves
// the agent did not sit out the grace and kill it — and the restarted agent
// finishes the removal.
func TestAgentSIGTERMDuringGracePeriod(t *testing.T) {
	e := newAgentEnv(t)
	e.start()
	e.write("rev1", "stubborn.yaml", `apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 30
  containers: [{name: app, image: "busybox:1.36", command: [sleep, "3600"]}]
`)
	e.running("stubborn")
	before := e.podProcesses()
	if len(before) == 0 {
		t.Fatal("no container process")
	}
	if err := os.Remove(filepath.Join(e.repo, "rev1", "stubborn.yaml")); err != nil {
		t.Fatal(err)
	}
	e.eventually("the stop under way", func() error {
		p, err := e.pod("stubborn")
		if err != nil {
			return err
		}
		if p.Status.Reason != "Terminating" {
			return fmt.Errorf("status %s %s", p.Status.Phase, p.Status.Reason)
		}
		return nil
	})
	t0 := time.Now()
	e.stop(syscall.SIGTERM)
	t.Logf("agent exited %s after SIGTERM, with a 30 s grace period under way", time.Since(t0).Round(time.Millisecond))
	alive := 0
	for _, pid := range before {
		if _, err := os.Stat("/proc/" + pid); err == nil {
			alive++
		}
	}
	if alive == 0 {
		t.Fatalf("the container is gone after the agent exited: the agent waited out the grace period instead of leaving")
	}
	// The next agent adopts the pod and finishes the job.
	e.start()
	e.gone("stubborn")
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}
