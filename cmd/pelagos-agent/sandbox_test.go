package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// TestSandboxCLI drives the built binary as a user would: create, ls (table
// with 13-character IDs, --no-trunc, and JSON with the runtime's camelCase
// fields), inspect by name and by the beginning of an ID, rm by name and
// ID, the refusals, ls after the pause is killed, gc, and a census at the
// end.
func TestSandboxCLI(t *testing.T) {
	linuxtest.RequireRoot(t)
	bin := buildAgentBinary(t)
	tag := linuxtest.RandomName("pt", 4)
	runRoot, stateRoot := t.TempDir(), t.TempDir()
	subnet := fmt.Sprintf("10.201.%d.0/24", 251+rand.IntN(4))
	global := []string{"--bridge", tag, "--subnet", subnet, "--netns-prefix", tag + "-", "--cgroup-parent", tag,
		"--run-root", runRoot, "--root", stateRoot, "--nft-table", tag, "--log-level", "error"}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(tag); err == nil {
			netlink.LinkDel(l)
		}
		// The networking code keeps its table across restarts by design;
		// a test's table goes with the test, whatever family it used.
		if err := linuxtest.DeleteNFTable(tag); err != nil {
			t.Errorf("cleanup: nftables table %s: %v", tag, err)
		}
	})
	agent := func(args ...string) (string, string, int) {
		return runCLI(t, bin, append(append([]string{}, global...), args...)...)
	}
	// A test that stops early still removes what it made (before the
	// bridge and the table go: cleanups run last first).
	t.Cleanup(func() {
		out, _, _ := agent("sandbox", "ls", "-q")
		for _, id := range strings.Fields(out) {
			agent("sandbox", "rm", id)
		}
	})

	out, errOut, code := agent("sandbox", "create", "--name", "web")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	webID := strings.TrimSpace(out)
	out, errOut, code = agent("sandbox", "create")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	otherID := strings.TrimSpace(out)
	if webID == "" || otherID == "" || webID == otherID || strings.Contains(webID, "\n") {
		t.Fatalf("create printed %q and %q; want one distinct ID each", webID, otherID)
	}

	out, _, code = agent("sandbox", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID NAME NAMESPACE STATUS IP NS_NAME CREATED" {
		t.Fatalf("ls = exit %d:\n%s", code, out)
	}
	ids := map[string]bool{}
	for _, l := range lines[1:] {
		ids[strings.Fields(l)[0]] = true
	}
	if !ids[webID[:13]] || !ids[otherID[:13]] || !strings.Contains(out, " web ") || strings.Count(out, "running") != 2 {
		t.Errorf("ls lacks the sandboxes (13 characters of each ID):\n%s", out)
	}
	if out, _, _ = agent("sandbox", "ls", "--no-trunc"); !strings.Contains(out, webID+" ") {
		t.Errorf("ls --no-trunc lacks %s:\n%s", webID, out)
	}
	if out, _, _ = agent("sandbox", "ls", "-q"); len(strings.Fields(out)) != 2 || !strings.Contains(out, webID+"\n") {
		t.Errorf("ls -q:\n%s", out)
	}

	// The deprecated --json still works, and says what replaces it.
	out, errOut, code = agent("sandbox", "ls", "--json")
	if code != 0 || !strings.Contains(errOut, "use -o json") {
		t.Errorf("ls --json: exit %d, stderr %q", code, errOut)
	}
	var entries []map[string]any
	if err := json.Unmarshal([]byte(out), &entries); err != nil || code != 0 || len(entries) != 2 {
		t.Fatalf("ls --json: exit %d, %v:\n%s", code, err, out)
	}
	for _, e := range entries {
		for _, k := range []string{"id", "pod", "pausePID", "netnsName", "vethHost", "ip", "state", "createdAt"} {
			if v, ok := e[k]; !ok || v == "" || v == float64(0) {
				t.Errorf("ls -o json entry lacks %s: %v", k, e)
			}
		}
		if e["netnsName"] != tag+"-"+e["id"].(string) {
			t.Errorf("netnsName %v; want %s-<id>", e["netnsName"], tag)
		}
	}
	if out, _, code = agent("sandbox", "ls", "-o", "yaml"); code != 0 || !strings.Contains(out, "pausePID: ") {
		t.Errorf("ls -o yaml: exit %d\n%s", code, out)
	}

	var sb map[string]any
	for _, arg := range []string{"web", webID[:13]} {
		out, _, code = agent("sandbox", "inspect", arg)
		if err := json.Unmarshal([]byte(out), &sb); err != nil || code != 0 || sb["id"] != webID {
			t.Errorf("inspect %s: exit %d, %v:\n%s", arg, code, err, out)
		}
	}
	if out, _, code = agent("sandbox", "inspect", "-o", "table", "web"); code != 0 || !strings.Contains(out, "Pause PID:") {
		t.Errorf("inspect -o table: exit %d\n%s", code, out)
	}

	for _, bad := range []string{"", "../x", "/etc", ".."} {
		_, errOut, code = agent("sandbox", "rm", bad)
		if code != 1 || !strings.Contains(errOut, "not an ID or name") {
			t.Errorf("rm %q: exit %d, %q; want 1 and a refusal", bad, code, errOut)
		}
	}
	_, errOut, code = agent("sandbox", "rm", "nosuchsandbox")
	if code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("rm unknown: exit %d, %q; want 1 and not found", code, errOut)
	}

	if _, errOut, code = agent("sandbox", "rm", "web"); code != 0 {
		t.Fatalf("rm web: exit %d: %s", code, errOut)
	}

	// Kill the other's pause: ls shows it dead, rm still cleans it.
	pid := int(entries[0]["pausePID"].(float64))
	if entries[0]["id"] != otherID {
		pid = int(entries[1]["pausePID"].(float64))
	}
	p, _ := os.FindProcess(pid)
	p.Kill()
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, _, _ = agent("sandbox", "ls")
		if strings.Contains(out, "dead") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(out, otherID) || !strings.Contains(out, "dead") {
		t.Errorf("after kill -9 ls:\n%s", out)
	}
	if _, errOut, code = agent("sandbox", "rm", otherID); code != 0 {
		t.Fatalf("rm %s: exit %d: %s", otherID, code, errOut)
	}
	out, errOut, code = agent("sandbox", "gc")
	if code != 0 {
		t.Errorf("gc: exit %d: %s %s", code, out, errOut)
	}
	out, _, _ = agent("sandbox", "ls", "-o", "json")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("ls -o json after rm = %s; want []", out)
	}
	linuxtest.Census{
		NetNSPrefix: tag + "-",
		Bridge:      tag,
		ProcessArg:  runRoot,
		EmptyDirs:   []string{runRoot, filepath.Join(stateRoot, "ipam", strings.ReplaceAll(subnet, "/", "_"), "ip")},
	}.Check(t, 10*time.Second)
}
