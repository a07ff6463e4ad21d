package agent

import (
	"os"
	"strings"
	"testing"
)

// The node's labels and taints come from the options, and bad ones stop
// the agent with the flag's name.
func TestNodeIdentity(t *testing.T) {
	n, err := nodeIdentity(&Options{NodeLabels: map[string]string{"site": "lab", "disktype": "ssd"},
		NodeTaints: []string{"dedicated=db:NoSchedule", "maintenance:NoExecute"}})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if n.Name != strings.ToLower(host) || n.Labels["site"] != "lab" || n.Labels["disktype"] != "ssd" || n.Labels["kubernetes.io/hostname"] != n.Name ||
		len(n.Taints) != 2 || n.Taints[0].String() != "dedicated=db:NoSchedule" || n.Taints[1].String() != "maintenance:NoExecute" {
		t.Errorf("node %+v", n)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{NodeLabels: map[string]string{"kubernetes.io/os": "plan9"}}, "--node-labels/--node-taints: node label kubernetes.io/os: set by the agent itself"},
		{Options{NodeTaints: []string{"dedicated=db"}}, "--node-taints: node taint \"dedicated=db\": must be key[=value]:Effect"},
	} {
		if _, err := nodeIdentity(&tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestSingleInstanceLock(t *testing.T) {
	root := t.TempDir()
	f, err := lockStateRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockStateRoot(root); err == nil || !strings.Contains(err.Error(), "already uses the state root") ||
		!strings.Contains(err.Error(), "pid ") {
		t.Errorf("second lock: %v", err)
	}
	f.Close()
	g, err := lockStateRoot(root)
	if err != nil {
		t.Errorf("lock after release: %v", err)
	}
	g.Close()
}
