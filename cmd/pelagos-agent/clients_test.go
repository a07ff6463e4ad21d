package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
)

// TestGetAndEventsGolden: the tables of get pods and events, and their
// namespace handling, are the contract: -n (default "default"), -A with a
// NAMESPACE column, the node's events in the default namespace, and the
// node's address as the IP of a host-network pod.
func TestGetAndEventsGolden(t *testing.T) {
	a := newDescribedAgent(t)
	a.measureAges()
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"get/pods.golden", []string{"get", "pods"}},
		{"get/pods-all-wide.golden", []string{"get", "pods", "-A", "-o", "wide"}},
		{"get/pods-infra.golden", []string{"get", "pods", "-n", "infra"}},
		{"events/default.golden", []string{"events"}},
		{"events/all.golden", []string{"events", "-A"}},
		{"events/infra.golden", []string{"events", "-n", "infra"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, errOut, err := a.cli(tc.args...)
			if err != nil || errOut != "" {
				t.Fatalf("%v: %v %s", tc.args, err, errOut)
			}
			golden(t, tc.golden, a.normalize(out))
		})
	}
	if out, errOut, err := a.cli("events", "-n", "empty"); err != nil || out != "" || errOut != "No events found in empty namespace.\n" {
		t.Errorf("events -n empty: %v %q %q", err, out, errOut)
	}
	// The served pod: the node's address as hostIP, and as the pod's own
	// on the host's network.
	out, _, err := a.cli("get", "pod", "edge", "-n", "infra", "-o", "json")
	var pod struct {
		Status struct {
			HostIP string `json:"hostIP"`
			PodIP  string `json:"podIP"`
		} `json:"status"`
	}
	if err != nil || json.Unmarshal([]byte(out), &pod) != nil || pod.Status.HostIP != cliNodeIP || pod.Status.PodIP != cliNodeIP {
		t.Errorf("edge: %v %+v", err, pod.Status)
	}
	out, _, _ = a.cli("get", "pod", "web", "-o", "json")
	if !strings.Contains(out, `"hostIP": "`+cliNodeIP+`"`) {
		t.Errorf("web has no hostIP:\n%s", out)
	}
}

// TestEventsWatchNamespace: --watch streams the events of the namespace
// asked for, in columns (the time is the local clock's).
func TestEventsWatchNamespace(t *testing.T) {
	a := newDescribedAgent(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"events", "-w", "-n", "infra", "--socket", a.sock}, &stdout, &stderr); err != nil {
		t.Fatalf("%v %s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	want := []string{
		"Normal Started pod/edge spec.containers{proxy} Started container proxy",
		"Normal Started pod/report spec.containers{report} Started container report",
	}
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "LAST SEEN TYPE REASON OBJECT MESSAGE" {
		t.Fatalf("events -w -n infra:\n%s", stdout.String())
	}
	for i, l := range lines[1:] {
		if strings.Join(strings.Fields(l)[1:], " ") != want[i] || strings.Index(lines[0], "OBJECT") != strings.Index(l, "pod/") {
			t.Errorf("events -w -n infra: line %q, want %q in the columns of\n%s", l, want[i], lines[0])
		}
	}
}

// TestClientsEscapeTerminalControls is written as the attacker: a
// container whose exec probe prints terminal control sequences (an OSC
// that retitles the terminal, a screen clear, a carriage return that hides
// what came before) gets them into an event, which an administrator reads
// with events and describe. No ESC or CR may reach the terminal; they are
// shown as ^[ and \r, as kubectl does.
func TestClientsEscapeTerminalControls(t *testing.T) {
	a := newCLIAgent(t, map[string]string{"db.yaml": cliDB})
	const payload = "\x1b]0;owned\x07\x1b[2J\rReadiness probe failed: all good"
	a.rec.Events().Record(reconcile.EventWarning, "Unhealthy",
		reconcile.ObjectRef{Kind: "Pod", Namespace: "default", Name: "db", FieldPath: "spec.containers{db}"}, "Readiness probe failed: "+payload)
	for _, args := range [][]string{{"events"}, {"events", "-A"}, {"describe", "pod", "db"}} {
		out, errOut, err := a.cli(args...)
		if err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
		if strings.ContainsAny(out, "\x1b\r") || !strings.Contains(out, `^[]0;owned`+"\x07"+`^[[2J\rReadiness`) {
			t.Errorf("%v passes terminal controls through:\n%q", args, out)
		}
	}
}
