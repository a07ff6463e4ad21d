package main

import (
	"os"
	"strings"
	"testing"
)

// The node's labels and taints come from the flags or the settings file
// (a mapping and a list there), and bad ones stop the agent with the flag's
// name.
func TestNodeIdentityFromSettings(t *testing.T) {
	cfg := writeSettings(t, "node-labels:\n  site: lab\n  disktype: ssd\nnode-taints: [dedicated=db:NoSchedule, maintenance:NoExecute]\n")
	run, _, err := parseFor(t, "run", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	labels, _ := run.Flags().GetStringToString("node-labels")
	taints, _ := run.Flags().GetStringSlice("node-taints")
	n, err := nodeIdentity(&agentOptions{NodeLabels: labels, NodeTaints: taints})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if n.Name != strings.ToLower(host) || n.Labels["site"] != "lab" || n.Labels["disktype"] != "ssd" || n.Labels["kubernetes.io/hostname"] != n.Name ||
		len(n.Taints) != 2 || n.Taints[0].String() != "dedicated=db:NoSchedule" || n.Taints[1].String() != "maintenance:NoExecute" {
		t.Errorf("node %+v", n)
	}
	for _, tc := range []struct {
		o    agentOptions
		want string
	}{
		{agentOptions{NodeLabels: map[string]string{"kubernetes.io/os": "plan9"}}, "--node-labels/--node-taints: node label kubernetes.io/os: set by the agent itself"},
		{agentOptions{NodeTaints: []string{"dedicated=db"}}, "--node-taints: node taint \"dedicated=db\": must be key[=value]:Effect"},
	} {
		if _, err := nodeIdentity(&tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}
