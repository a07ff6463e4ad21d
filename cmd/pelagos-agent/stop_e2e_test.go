package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
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
