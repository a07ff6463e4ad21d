package cgroups

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestV2ValuesWritten runs the v2 code against a plain directory tree that
// stands in for /sys/fs/cgroup, and checks the exact values written.
func TestV2ValuesWritten(t *testing.T) {
	root := t.TempDir()
	own := "/system.slice/agent.service"
	parentDir := filepath.Join(root, own, "pods")
	if err := os.MkdirAll(parentDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A fake tree: every directory offers the controllers.
	mk := func(d string) {
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	}
	mk(parentDir)
	mk(filepath.Join(parentDir, "pod-a"))
	m, err := newManager(true, map[string]string{"": root}, map[string]string{"": own}, "pods")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Create("pod-a/ctr-1", Resources{MemoryMax: 64 << 20, CPULimitMilli: 500, CPURequestMilli: 250, PidsMax: 100}); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(parentDir, "pod-a", "ctr-1")
	for file, want := range map[string]string{
		"memory.max": "67108864",
		"cpu.max":    "50000 100000",
		"cpu.weight": "10", // shares 256 -> 1 + 254*9999/262142
		"pids.max":   "100",
	} {
		if got := readFile(t, filepath.Join(d, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if got := readFile(t, filepath.Join(parentDir, "cgroup.subtree_control")); got != "+memory +cpu +pids" {
		t.Errorf("parent subtree_control = %q", got)
	}
	if got := readFile(t, filepath.Join(parentDir, "pod-a", "cgroup.subtree_control")); got != "+memory +cpu +pids" {
		t.Errorf("pod subtree_control = %q", got)
	}
	if m.Path("pod-a/ctr-1") != own+"/pods/pod-a/ctr-1" {
		t.Errorf("Path = %q", m.Path("pod-a/ctr-1"))
	}
	if _, err := newManager(true, map[string]string{"": root}, map[string]string{"": own}, "../escape"); err == nil {
		t.Error("a parent with .. was accepted")
	}
}

func TestV1ValuesWritten(t *testing.T) {
	root := t.TempDir()
	mounts, own := map[string]string{}, map[string]string{}
	for _, c := range v1Controllers {
		mounts[c] = filepath.Join(root, c)
		own[c] = "/"
	}
	own["memory"] = "/process_api/x"
	m, err := newManager(false, mounts, own, "pelagos-t")
	if err != nil {
		t.Fatal(err)
	}
	// memsw exists only with swap accounting: pretend it does.
	memDir := filepath.Join(root, "memory", "process_api/x/pelagos-t/pod/ctr")
	os.MkdirAll(memDir, 0o755)
	os.WriteFile(filepath.Join(memDir, "memory.memsw.limit_in_bytes"), nil, 0o644)
	if err := m.Create("pod/ctr", Resources{MemoryMax: 1 << 20, CPULimitMilli: 2000, CPURequestMilli: 1, PidsMax: 7}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"memory/process_api/x/pelagos-t/pod/ctr/memory.limit_in_bytes":       "1048576",
		"memory/process_api/x/pelagos-t/pod/ctr/memory.memsw.limit_in_bytes": "1048576",
		"cpu/pelagos-t/pod/ctr/cpu.cfs_quota_us":                             "200000",
		"cpu/pelagos-t/pod/ctr/cpu.cfs_period_us":                            "100000",
		"cpu/pelagos-t/pod/ctr/cpu.shares":                                   "2",
		"pids/pelagos-t/pod/ctr/pids.max":                                    "7",
	} {
		if got := readFile(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "cpuacct/pelagos-t/pod/ctr")); err != nil {
		t.Errorf("cpuacct cgroup not made: %v", err)
	}
}

func TestConversions(t *testing.T) {
	for _, c := range []struct {
		milli          int64
		shares, weight uint64
	}{{0, 2, 1}, {1, 2, 1}, {1000, 1024, 39}, {100000, 102400, 3906}, {10000000, 262144, 10000}} {
		if s, w := Shares(c.milli), Weight(c.milli); s != c.shares || w != c.weight {
			t.Errorf("%dm: shares %d weight %d, want %d %d", c.milli, s, w, c.shares, c.weight)
		}
	}
}

// TestHostCgroups creates real cgroups below a unique parent, puts a process
// in one, reads it back, kills it through the cgroup and checks nothing is
// left.
func TestHostCgroups(t *testing.T) {
	linuxtest.RequireRoot(t)
	parent := fmt.Sprintf("pelagos-cgtest-%d", os.Getpid())
	m, err := New(parent)
	if err != nil {
		t.Fatal(err)
	}
	h := "pids"
	if m.Unified {
		h = ""
	}
	probe, _ := m.Dir(h, "probe")
	if _, err := os.Stat(filepath.Dir(probe)); err == nil {
		t.Errorf("New made the parent %s", filepath.Dir(probe))
	}
	if kids, err := m.Children(); err != nil || len(kids) != 0 {
		t.Errorf("children of a missing parent: %v %v", kids, err)
	}
	t.Cleanup(func() {
		if err := m.RemoveParent(); err != nil {
			t.Errorf("census: parent cgroup left: %v", err)
		}
	})
	if err := m.Create("pod-x/ctr-y", Resources{MemoryMax: 32 << 20, PidsMax: 16, CPULimitMilli: 500}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Join("pod-x/ctr-y", cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	pids, err := m.Procs("pod-x/ctr-y")
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("Procs = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	own, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	if !strings.Contains(string(own), m.Path("pod-x/ctr-y")) {
		t.Errorf("/proc/pid/cgroup does not name %s:\n%s", m.Path("pod-x/ctr-y"), own)
	}
	st, err := m.Stats("pod-x/ctr-y")
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids != 1 {
		t.Errorf("Stats.Pids = %d, want 1", st.Pids)
	}
	if oom, err := m.OOMKilled("pod-x/ctr-y"); err != nil || oom {
		t.Errorf("OOMKilled = %v, %v", oom, err)
	}
	if err := m.Remove("pod-x"); err == nil {
		t.Error("removing a cgroup with a live process succeeded")
	}
	if n, err := m.Signal("pod-x/ctr-y", syscall.SIGKILL); err != nil || n != 1 {
		t.Errorf("Signal = %d, %v", n, err)
	}
	cmd.Wait()
	if err := m.Remove("pod-x"); err != nil {
		t.Fatal(err)
	}
	if m.Exists("pod-x") {
		t.Error("census: pod cgroup left after Remove")
	}
	kids, err := m.Children()
	if err != nil || len(kids) != 0 {
		t.Errorf("census: children below parent %v, %v", kids, err)
	}
}
