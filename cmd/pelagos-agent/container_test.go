package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vishvananda/netlink"

	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// TestContainerCLI drives `container run|ls|inspect|logs|exec|stop|rm`
// through the built binary and ends with a census: ls shows running
// containers (-a all) with 13-character IDs, which name a container too;
// JSON has the runtime's camelCase fields.
func TestContainerCLI(t *testing.T) {
	linuxtest.RequireRoot(t)
	bin := buildAgentBinary(t)
	tag := linuxtest.RandomName("pc", 4)
	runRoot, stateRoot := t.TempDir(), t.TempDir()
	subnet := fmt.Sprintf("10.202.%d.0/24", 251+rand.IntN(4))
	cgParent := "pelagos-test-" + tag
	global := []string{"--bridge", tag, "--subnet", subnet, "--netns-prefix", tag + "-", "--cgroup-parent", cgParent,
		"--run-root", runRoot, "--root", stateRoot, "--nft-table", tag, "--log-level", "error"}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(tag); err == nil {
			netlink.LinkDel(l)
		}
		if err := linuxtest.DeleteNFTable(tag); err != nil {
			t.Errorf("cleanup: nftables table %s: %v", tag, err)
		}
		if m, err := cgroups.New(cgParent); err == nil {
			if err := m.RemoveParent(); err != nil {
				t.Errorf("census: cgroup parent: %v", err)
			}
		}
	})
	agent := func(args ...string) (string, string, int) {
		return runCLI(t, bin, append(append([]string{}, global...), args...)...)
	}
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	if err := imagetest.WriteDockerArchive(archive, map[string]v1.Image{"pelagos.test/busybox:1": imagetest.Busybox(t)}); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := agent("image", "import", archive); code != 0 {
		t.Fatalf("image import: %d %s", code, errOut)
	}
	out, errOut, code := agent("sandbox", "create", "--name", "web")
	if code != 0 {
		t.Fatalf("sandbox create: %d %s", code, errOut)
	}
	sbID := strings.TrimSpace(out)

	out, errOut, code = agent("container", "run", "--sandbox", "web", "--name", "app", "--env", "GREETING=hi there",
		"--memory", "64Mi", "--cpus", "0.5", "pelagos.test/busybox:1", "--", "/bin/sh", "-c", `echo "$GREETING"; echo err >&2; exec sleep 1000`)
	if code != 0 {
		t.Fatalf("container run: %d %s", code, errOut)
	}
	id := strings.TrimSpace(out)

	out, _, code = agent("container", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 ||
		strings.Join(strings.Fields(lines[0]), " ") != "ID NAME POD SANDBOX IMAGE STATE ATTEMPT CREATED PID EXIT CODE" ||
		!strings.HasPrefix(lines[1], id[:13]+" ") || !strings.Contains(lines[1], " "+sbID[:13]+" ") || !strings.Contains(lines[1], "running") {
		t.Errorf("ls:\n%s", out)
	}
	out, _, _ = agent("container", "ls", "--sandbox", sbID, "-o", "json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Errorf("ls -o json: %v %s", err, out)
	}
	out, _, code = agent("container", "inspect", id[:13])
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil || code != 0 {
		t.Fatalf("inspect: %v %s", err, out)
	}
	for _, k := range []string{"id", "name", "sandboxID", "pod", "attempt", "image", "imageID", "state", "pid", "exitCode", "startedAt", "finishedAt", "logPath", "cgroupPath"} {
		if _, ok := info[k]; !ok {
			t.Errorf("inspect lacks %q: %s", k, out)
		}
	}
	if info["id"] != id || info["state"] != "running" || info["sandboxID"] != sbID || info["name"] != "app" || info["exitCode"] != nil {
		t.Errorf("inspect: %s", out)
	}
	// The limits reached the cgroup.
	memDir, _ := cgroupDir(t, cgParent, "memory", info["cgroupPath"].(string))
	if b, err := os.ReadFile(filepath.Join(memDir, "memory.limit_in_bytes")); err == nil && strings.TrimSpace(string(b)) != "67108864" {
		t.Errorf("memory limit %s", b)
	}

	out, _, code = agent("container", "logs", id)
	if code != 0 || (out != "hi there\nerr\n" && out != "err\nhi there\n") {
		t.Errorf("logs: %d %q", code, out)
	}
	out, _, code = agent("container", "exec", id, "--", "/bin/sh", "-c", "echo in-exec; exit 3")
	if code != 3 || out != "in-exec\n" {
		t.Errorf("exec: %d %q", code, out)
	}
	if _, errOut, code := agent("container", "rm", id); code == 0 || !strings.Contains(errOut, "running") {
		t.Errorf("rm of a running container: %d %s", code, errOut)
	}
	if _, errOut, code := agent("container", "stop", "--time", "1", id); code != 0 {
		t.Fatalf("stop: %d %s", code, errOut)
	}
	out, _, _ = agent("container", "inspect", id)
	json.Unmarshal([]byte(out), &info)
	if info["state"] != "exited" || info["exitCode"] == nil {
		t.Errorf("after stop: %s", out)
	}
	// Exited: only ls -a lists it.
	if out, _, _ = agent("container", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("ls lists an exited container:\n%s", out)
	}
	if out, _, _ = agent("container", "ls", "-a", "-q"); strings.TrimSpace(out) != id {
		t.Errorf("ls -a -q = %q, want %s", out, id)
	}
	out, _, code = agent("container", "logs", "-f", id) // exited: prints and returns
	if code != 0 || !strings.Contains(out, "hi there") {
		t.Errorf("logs -f of an exited container: %d %q", code, out)
	}
	if _, errOut, code := agent("container", "rm", id); code != 0 {
		t.Fatalf("rm: %d %s", code, errOut)
	}
	if _, _, code := agent("container", "inspect", id); code != 1 {
		t.Errorf("inspect after rm: exit %d, want 1", code)
	}
	if _, _, code := agent("container", "run", "pelagos.test/busybox:1"); code != 2 {
		t.Errorf("run without --sandbox: exit %d, want 2", code)
	}
	if _, errOut, code := agent("sandbox", "rm", sbID); code != 0 {
		t.Fatalf("sandbox rm: %d %s", code, errOut)
	}
	census := linuxtest.Census{NetNSPrefix: tag + "-", ProcessArg: runRoot, MountDirs: []string{runRoot, stateRoot}}
	census.Check(t, 10e9)
	if m, err := cgroups.New(cgParent); err == nil {
		if kids, _ := m.Children(); len(kids) != 0 {
			t.Errorf("census: cgroups left below %s: %v", m.Parent(), kids)
		}
	}
}

func cgroupDir(t *testing.T, parent, controller, path string) (string, error) {
	m, err := cgroups.New(parent)
	if err != nil {
		return "", err
	}
	rel := strings.TrimPrefix(path, m.Parent()+"/")
	return m.Dir(controller, rel)
}
