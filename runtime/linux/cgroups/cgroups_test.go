package cgroups

import (
	"fmt"
	"math"
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
	}{
		{0, 2, 1}, {1, 2, 1}, {1000, 1024, 39}, {100000, 102400, 3906}, {10000000, 262144, 10000},
		{255999, 262142, 9999}, {256000, 262144, 10000},
		// 1e13 cores once wrapped to 2 shares.
		{1e16, 262144, 10000}, {math.MaxInt64, 262144, 10000},
	} {
		if s, w := Shares(c.milli), Weight(c.milli); s != c.shares || w != c.weight {
			t.Errorf("%dm: shares %d weight %d, want %d %d", c.milli, s, w, c.shares, c.weight)
		}
	}
	for _, c := range []struct{ milli, quota int64 }{
		{1, MinCFSQuota}, {10, MinCFSQuota}, {11, 1100}, {500, 50000}, {2000, 200000},
		{MaxCFSQuota / 100, MaxCFSQuota / 100 * 100}, {MaxCFSQuota/100 + 1, MaxCFSQuota},
		// 1e11 cores once wrapped to 1000 µs: 1 % of one CPU.
		{1e14, MaxCFSQuota}, {math.MaxInt64, MaxCFSQuota},
	} {
		if q := Quota(c.milli); q != c.quota {
			t.Errorf("Quota(%d) = %d, want %d", c.milli, q, c.quota)
		}
	}
	if ps := int64(os.Getpagesize()); MaxMemory()%ps != 0 || MaxMemory() != math.MaxInt64/ps*ps-ps {
		t.Errorf("MaxMemory = %d is not one page under the kernel's unlimited", MaxMemory())
	}
}

// fakeV1 is a Manager for parent over plain directories standing in for
// the v1 hierarchies, the agent's own cgroup being own in each; it returns
// the root of the fake tree.
func fakeV1(t *testing.T, own, parent string) (*Manager, string) {
	t.Helper()
	root := t.TempDir()
	mounts, owns := map[string]string{}, map[string]string{}
	for _, c := range v1Controllers {
		mounts[c] = filepath.Join(root, c)
		owns[c] = own
	}
	m, err := newManager(false, mounts, owns, parent)
	if err != nil {
		t.Fatal(err)
	}
	return m, root
}

// fakeV2 is a Manager for parent over a plain directory tree standing in
// for the unified hierarchy; dirs are made and offer the controllers.
func fakeV2(t *testing.T, own, parent string, dirs ...string) (*Manager, string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range dirs {
		os.MkdirAll(filepath.Join(root, d), 0o755)
		os.WriteFile(filepath.Join(root, d, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644)
	}
	m, err := newManager(true, map[string]string{"": root}, map[string]string{"": own}, parent)
	if err != nil {
		t.Fatal(err)
	}
	return m, root
}

// extremes are limits far beyond what any kernel can express; each must
// saturate at the largest finite value, never wrap or become unlimited.
var extremes = Resources{MemoryMax: math.MaxInt64, CPULimitMilli: 1e14, CPURequestMilli: 1e16, PidsMax: math.MaxInt64}

// TestExtremeValuesSaturate checks the exact values written for extreme
// limits, on fake v1 and v2 trees, and that negative limits are refused
// before anything is made.
func TestExtremeValuesSaturate(t *testing.T) {
	maxMem := fmt.Sprint(MaxMemory())
	t.Run("v1", func(t *testing.T) {
		m, root := fakeV1(t, "/", "p")
		memDir := filepath.Join(root, "memory/p/pod/ctr")
		os.MkdirAll(memDir, 0o755)
		os.WriteFile(filepath.Join(memDir, "memory.memsw.limit_in_bytes"), nil, 0o644)
		if err := m.Create("pod/ctr", extremes); err != nil {
			t.Fatal(err)
		}
		for file, want := range map[string]string{
			"memory/p/pod/ctr/memory.limit_in_bytes":       maxMem,
			"memory/p/pod/ctr/memory.memsw.limit_in_bytes": maxMem,
			"cpu/p/pod/ctr/cpu.cfs_quota_us":               "17592186044415",
			"cpu/p/pod/ctr/cpu.cfs_period_us":              "100000",
			"cpu/p/pod/ctr/cpu.shares":                     "262144",
			"pids/p/pod/ctr/pids.max":                      "4194304",
		} {
			if got := readFile(t, filepath.Join(root, file)); got != want {
				t.Errorf("%s = %q, want %q", file, got, want)
			}
		}
		for _, bad := range []Resources{{MemoryMax: -1}, {CPULimitMilli: -1}, {CPURequestMilli: math.MinInt64}, {PidsMax: -7}} {
			if err := m.Create("pod/neg", bad); err == nil || !strings.Contains(err.Error(), "negative") {
				t.Errorf("Create(%+v) = %v, want a refusal", bad, err)
			}
			if err := m.LimitParent(bad); err == nil {
				t.Errorf("LimitParent(%+v) accepted a negative limit", bad)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "pids/p/pod/neg")); err == nil {
			t.Error("a refused Create made its cgroup")
		}
	})
	t.Run("v2", func(t *testing.T) {
		m, root := fakeV2(t, "/", "p", "p", "p/pod")
		if err := m.Create("pod/ctr", extremes); err != nil {
			t.Fatal(err)
		}
		for file, want := range map[string]string{
			"memory.max": maxMem,
			"cpu.max":    "17592186044415 100000",
			"cpu.weight": "10000",
			"pids.max":   "4194304",
		} {
			if got := readFile(t, filepath.Join(root, "p/pod/ctr", file)); got != want {
				t.Errorf("%s = %q, want %q", file, got, want)
			}
		}
		if err := m.Create("pod/neg", Resources{MemoryMax: -1}); err == nil {
			t.Error("a negative memory limit was accepted")
		}
	})
}

// TestParentLimits: the pids limit of all pods together lands on the
// parent itself, on v1 and v2.
func TestParentLimits(t *testing.T) {
	t.Run("v1", func(t *testing.T) {
		m, root := fakeV1(t, "/agent", "pods")
		if err := m.LimitParent(Resources{PidsMax: 29492}); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(root, "pids/agent/pods/pids.max")); got != "29492" {
			t.Errorf("parent pids.max = %q", got)
		}
	})
	t.Run("v2", func(t *testing.T) {
		m, root := fakeV2(t, "/agent", "pods", "agent/pods")
		if err := m.LimitParent(Resources{PidsMax: 1000}); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(root, "agent/pods/pids.max")); got != "1000" {
			t.Errorf("parent pids.max = %q", got)
		}
		if got := readFile(t, filepath.Join(root, "agent/pods/cgroup.subtree_control")); got != "+memory +cpu +pids" {
			t.Errorf("parent subtree_control = %q", got)
		}
	})
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

// TestHostExtremeValues writes extreme limits to real cgroups and reads
// back what the kernel kept: the largest finite values, never "unlimited"
// and never a wrapped small number.
func TestHostExtremeValues(t *testing.T) {
	linuxtest.RequireRoot(t)
	m, err := New(fmt.Sprintf("pelagos-cgextreme-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.RemoveParent(); err != nil {
			t.Errorf("census: parent cgroup left: %v", err)
		}
	})
	if err := m.Create("pod/ctr", extremes); err != nil {
		t.Fatal(err)
	}
	want := map[[2]string]string{
		{"pids", "pids.max"}: "4194304",
	}
	if m.Unified {
		want = map[[2]string]string{
			{"", "memory.max"}: fmt.Sprint(MaxMemory()),
			{"", "cpu.max"}:    "17592186044415 100000",
			{"", "cpu.weight"}: "10000",
			{"", "pids.max"}:   "4194304",
		}
	} else {
		want[[2]string{"memory", "memory.limit_in_bytes"}] = fmt.Sprint(MaxMemory())
		want[[2]string{"cpu", "cpu.cfs_quota_us"}] = "17592186044415"
		want[[2]string{"cpu", "cpu.shares"}] = "262144"
	}
	for k, v := range want {
		d, _ := m.Dir(k[0], "pod/ctr")
		if got := readFile(t, filepath.Join(d, k[1])); got != v {
			t.Errorf("%s/%s = %q, want %q", k[0], k[1], got, v)
		}
	}
	if err := m.Remove("pod"); err != nil {
		t.Fatal(err)
	}
}

// TestBusyChildrenPidsMax: only children with processes count, "max"
// counts as the kernel's largest, and the sum saturates.
func TestBusyChildrenPidsMax(t *testing.T) {
	m, root := fakeV1(t, "/", "p")
	if n, err := m.BusyChildrenPidsMax("pod"); err != nil || n != 0 {
		t.Errorf("missing pod: %d, %v", n, err)
	}
	child := func(name, current, max string) {
		d := filepath.Join(root, "pids/p/pod", name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "pids.current"), []byte(current+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "pids.max"), []byte(max+"\n"), 0o644)
	}
	child("ctr-a", "3", "100")
	child("ctr-exited", "0", "4096")
	child("ctr-b", "1", "28")
	if n, err := m.BusyChildrenPidsMax("pod"); err != nil || n != 128 {
		t.Errorf("sum = %d, %v; want 128", n, err)
	}
	child("ctr-unlimited", "1", "max")
	child("ctr-c", "1", "4194304")
	if n, err := m.BusyChildrenPidsMax("pod"); err != nil || n != MaxPids {
		t.Errorf("sum = %d, %v; want it saturated at %d", n, err, MaxPids)
	}
}

// TestThreadFiles: on v1, the tasks file of every hierarchy the agent
// limits; on v2 none (the process is moved by PID).
func TestThreadFiles(t *testing.T) {
	mounts, own := map[string]string{}, map[string]string{}
	for _, c := range v1Controllers {
		mounts[c] = "/sys/fs/cgroup/" + c
		own[c] = "/"
	}
	own["memory"] = "/process_api/x"
	m, err := newManager(false, mounts, own, "pelagos-t")
	if err != nil {
		t.Fatal(err)
	}
	files, err := m.ThreadFiles("pod/ctr")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/sys/fs/cgroup/memory/process_api/x/pelagos-t/pod/ctr/tasks",
		"/sys/fs/cgroup/cpu/pelagos-t/pod/ctr/tasks",
		"/sys/fs/cgroup/cpuacct/pelagos-t/pod/ctr/tasks",
		"/sys/fs/cgroup/pids/pelagos-t/pod/ctr/tasks",
		"/sys/fs/cgroup/devices/pelagos-t/pod/ctr/tasks",
	}
	if strings.Join(files, "\n") != strings.Join(want, "\n") {
		t.Errorf("ThreadFiles:\n%s\nwant\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}
	if _, err := m.ThreadFiles(""); err == nil {
		t.Error("ThreadFiles of the parent itself was accepted")
	}
	v2, err := newManager(true, map[string]string{"": "/sys/fs/cgroup"}, map[string]string{"": "/a"}, "pods")
	if err != nil {
		t.Fatal(err)
	}
	if files, err := v2.ThreadFiles("pod/ctr"); err != nil || files != nil {
		t.Errorf("v2 ThreadFiles = %v, %v; want none", files, err)
	}
}

// TestHostThreadJoin checks the kernel behaviour ThreadFiles relies on:
// a single-threaded process that writes 0 to the tasks files of a v1
// hierarchy's cgroup is in it, and stays there across execve.
func TestHostThreadJoin(t *testing.T) {
	linuxtest.RequireRoot(t)
	m, err := New(fmt.Sprintf("pelagos-cgthread-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if m.Unified {
		// No tasks files on v2: the process is moved by PID there.
		if files, err := m.ThreadFiles("pod/ctr"); err != nil || files != nil {
			t.Errorf("v2 ThreadFiles = %v, %v; want none", files, err)
		}
		return
	}
	t.Cleanup(func() {
		if err := m.RemoveParent(); err != nil {
			t.Errorf("census: parent cgroup left: %v", err)
		}
	})
	if err := m.Create("pod/ctr", Resources{PidsMax: 16}); err != nil {
		t.Fatal(err)
	}
	files, err := m.ThreadFiles("pod/ctr")
	if err != nil {
		t.Fatal(err)
	}
	script := ""
	for _, f := range files {
		script += "echo 0 > " + f + " && "
	}
	out, err := exec.Command("/bin/sh", "-c", script+"exec cat /proc/self/cgroup").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, c := range v1Controllers {
		ok := false
		for _, line := range strings.Split(string(out), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && strings.Contains(","+parts[1]+",", ","+c+",") {
				ok = strings.HasSuffix(parts[2], "/pod/ctr")
			}
		}
		if !ok {
			t.Errorf("%s: the process is not in pod/ctr:\n%s", c, out)
		}
	}
	if err := m.Remove("pod"); err != nil {
		t.Fatal(err)
	}
}
