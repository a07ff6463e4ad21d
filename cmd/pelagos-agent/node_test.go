package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The node's labels and taints come from the flags or the settings file
// (a mapping and a list there), and bad ones stop the agent with the flag's
// name.
func TestNodeIdentityFromSettings(t *testing.T) {
	var stdout, stderr bytes.Buffer
	root, g := newRootCommand(&stdout, &stderr)
	var run *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == "run" {
			run = c
		}
	}
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, []byte("node-labels:\n  site: lab\n  disktype: ssd\nnode-taints: [dedicated=db:NoSchedule, maintenance:NoExecute]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run.ParseFlags([]string{"--config", cfg}); err != nil {
		t.Fatal(err)
	}
	if err := root.PersistentFlags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := loadConfigFile(run, g, &agentOptions{Config: cfg}); err != nil {
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
