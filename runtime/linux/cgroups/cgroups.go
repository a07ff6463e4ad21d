// Package cgroups creates, limits, reads and removes the pod and container
// cgroups of the agent, on cgroup v2 (unified) hosts and on v1/hybrid hosts
// where memory, cpu and pids live on v1 hierarchies.
//
// Every path it touches is below one parent, which defaults to a child of the
// agent's own cgroup: the package never writes outside that subtree and never
// moves a process out of its ancestry.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Resources are the limits written to a cgroup. Zero means unset; a
// negative value is refused (Validate), never taken as "no limit". Values
// beyond what the kernel can express saturate at the largest finite limit
// it takes (see the Max* bounds), so a huge limit stays a limit.
type Resources struct {
	MemoryMax       int64 // bytes
	CPULimitMilli   int64 // millicores: quota over a 100 ms period
	CPURequestMilli int64 // millicores: shares (v1) or weight (v2)
	PidsMax         int64
	// RestrictDevices admits only the minimal /dev nodes (v1 devices
	// controller): a container with CAP_MKNOD can make a node for a host
	// disk, but not open it.
	RestrictDevices bool
}

// Kernel bounds the conversions saturate at.
const (
	// CFSPeriod is the CFS period the agent uses, in µs.
	CFSPeriod = 100000
	// MinCFSQuota is the kernel's smallest quota (1 ms), in µs.
	MinCFSQuota = 1000
	// MaxCFSQuota is the kernel's largest quota in µs: it keeps CFS
	// bandwidth in 44 bits and refuses more with EINVAL.
	MaxCFSQuota = 1<<44 - 1
	// MinShares and MaxShares bound v1 cpu.shares (the kernel clamps to
	// them too); cpu.weight maps the same range onto [1, 10000].
	MinShares = 2
	MaxShares = 262144
	// MaxPids is the kernel's PID_MAX_LIMIT on 64-bit hosts, the largest
	// pids.max it accepts as a number.
	MaxPids = 4 << 20
)

// MaxMemory is the largest finite memory limit: the kernel counts a limit
// in pages up to LONG_MAX/PAGE_SIZE, and that many pages means "no limit"
// (v1 reads it back as 9223372036854771712, v2 as "max"). One page less is
// the most a limit can be and still be one.
func MaxMemory() int64 {
	ps := int64(os.Getpagesize())
	return (math.MaxInt64/ps - 1) * ps
}

// Validate refuses negative limits: a value that wrapped on its way here
// must fail the container, not run it without a limit.
func (r Resources) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"memory limit", r.MemoryMax}, {"CPU limit", r.CPULimitMilli}, {"CPU request", r.CPURequestMilli}, {"pids limit", r.PidsMax}} {
		if f.v < 0 {
			return fmt.Errorf("cgroup: %s %d is negative", f.name, f.v)
		}
	}
	return nil
}

// AllowedDevices is the v1 devices whitelist of a restricted container:
// null, zero, full, random, urandom, tty, ptmx, the pts, and mknod (but no
// access) of anything, as Docker allows.
var AllowedDevices = []string{
	"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
	"c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm",
	"c *:* m", "b *:* m",
}

// Stats is a usage sample of one cgroup.
type Stats struct {
	CPUUsageNanos uint64
	MemoryBytes   uint64
	Pids          uint64
}

// v1Controllers are the v1 hierarchies the agent creates cgroups in; the
// others (freezer, blkio...) are inherited from the shim.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "devices"}

// Manager works on the cgroups below one parent.
type Manager struct {
	// Unified is true on a pure cgroup v2 host.
	Unified bool
	// dirs maps a hierarchy ("" on v2, else a v1 controller) to the absolute
	// directory of the parent cgroup.
	dirs map[string]string
	// parent is the parent's cgroup path, as /proc/<pid>/cgroup prints it
	// (for the first v1 controller on v1 hosts).
	parent string
}

const cgroupRoot = "/sys/fs/cgroup"

// New detects the host's cgroup layout and returns a Manager for parent. An
// empty parent means "pelagos" below the calling process's own cgroup; a
// relative parent is taken below the own cgroup; an absolute one from the
// hierarchy root. The parent is created by the first Create.
func New(parent string) (*Manager, error) {
	unified, err := isUnified(cgroupRoot)
	if err != nil {
		return nil, err
	}
	own, err := ownCgroups("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	mounts := map[string]string{"": cgroupRoot}
	if !unified {
		mounts, err = v1Mounts("/proc/self/mountinfo")
		if err != nil {
			return nil, err
		}
	}
	return newManager(unified, mounts, own, parent)
}

func newManager(unified bool, mounts, own map[string]string, parent string) (*Manager, error) {
	if parent == "" {
		parent = "pelagos"
	}
	if strings.Contains(parent, "..") {
		return nil, fmt.Errorf("cgroup parent %q: must not contain ..", parent)
	}
	m := &Manager{Unified: unified, dirs: map[string]string{}}
	hierarchies := []string{""}
	if !unified {
		hierarchies = v1Controllers
	}
	for _, h := range hierarchies {
		mnt, ok := mounts[h]
		if !ok {
			return nil, fmt.Errorf("cgroup v1 controller %q is not mounted", h)
		}
		p := parent
		if !path.IsAbs(p) {
			p = path.Join(own[h], p)
		}
		p = path.Clean(p)
		if m.parent == "" {
			m.parent = p
		}
		m.dirs[h] = filepath.Join(mnt, p)
	}
	// The parent is made by the first Create, not here: looking at cgroups
	// (removal, GC, stats) must not leave a parent behind.
	return m, nil
}

func isUnified(root string) (bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		return false, &os.PathError{Op: "statfs", Path: root, Err: err}
	}
	const cgroup2Magic = 0x63677270
	return st.Type == cgroup2Magic, nil
}

// ownCgroups parses /proc/self/cgroup into hierarchy -> path ("" for v2).
func ownCgroups(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, sc.Err()
}

// v1Mounts maps each v1 controller to its mount point. A mount whose root is
// not "/" (inside a container) is refused: paths would not line up.
func v1Mounts(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, fl := range fields {
			if fl == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+4 || fields[sep+1] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(fields[sep+3], ",") {
			for _, c := range v1Controllers {
				if opt == c {
					if fields[3] != "/" {
						return nil, fmt.Errorf("cgroup v1 %s is mounted from %s, not its root", c, fields[3])
					}
					out[c] = fields[4]
				}
			}
		}
	}
	return out, sc.Err()
}

// Parent is the parent's cgroup path as /proc/<pid>/cgroup prints it.
func (m *Manager) Parent() string { return m.parent }

// Path is the cgroup path of rel below the parent, for status output.
func (m *Manager) Path(rel string) string { return path.Join(m.parent, rel) }

// Dir is the directory of rel in a hierarchy: a v1 controller name, or ""
// on v2. Tests read kernel files there.
func (m *Manager) Dir(hierarchy, rel string) (string, error) { return m.dir(hierarchy, rel) }

func (m *Manager) dir(h, rel string) (string, error) {
	rel = path.Clean("/" + rel)
	if rel == "/" {
		return "", fmt.Errorf("cgroup: empty name below the parent")
	}
	return filepath.Join(m.dirs[h], rel), nil
}

func (m *Manager) hierarchies() []string {
	if m.Unified {
		return []string{""}
	}
	return v1Controllers
}

// enableControllers turns on memory, cpu and pids for the children of rel
// ("" is the parent itself) on v2, creating rel if needed.
func (m *Manager) enableControllers(rel string) error {
	d := m.dirs[""]
	if rel != "" {
		d = filepath.Join(d, rel)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("cgroup %s: %w", d, err)
	}
	avail, err := os.ReadFile(filepath.Join(d, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", d, err)
	}
	var want []string
	for _, c := range []string{"memory", "cpu", "pids"} {
		if strings.Contains(" "+strings.TrimSpace(string(avail))+" ", " "+c+" ") {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	return write(d, "cgroup.subtree_control", strings.Join(want, " "))
}

// Create makes rel (and its missing ancestors below the parent) in every
// hierarchy and writes res to it. Creating an existing cgroup rewrites its
// limits.
func (m *Manager) Create(rel string, res Resources) error {
	if err := res.Validate(); err != nil {
		return err
	}
	if m.Unified {
		// The parent and every ancestor below it must delegate the
		// controllers.
		if err := m.enableControllers(""); err != nil {
			return err
		}
		parts := strings.Split(strings.Trim(path.Clean("/"+rel), "/"), "/")
		for i := 1; i < len(parts); i++ {
			if err := m.enableControllers(path.Join(parts[:i]...)); err != nil {
				return err
			}
		}
	}
	dirs := map[string]string{}
	for _, h := range m.hierarchies() {
		d, err := m.dir(h, rel)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
		dirs[h] = d
	}
	return m.set(dirs, res)
}

// LimitParent creates the parent if needed and writes res to it: limits
// that every pod below it shares (all pods together).
func (m *Manager) LimitParent(res Resources) error {
	if err := res.Validate(); err != nil {
		return err
	}
	if m.Unified {
		if err := m.enableControllers(""); err != nil {
			return err
		}
	}
	for _, h := range m.hierarchies() {
		if err := os.MkdirAll(m.dirs[h], 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", m.dirs[h], err)
		}
	}
	return m.set(m.dirs, res)
}

// set writes res into the directories of one cgroup, by hierarchy.
func (m *Manager) set(dirs map[string]string, res Resources) error {
	if m.Unified {
		d := dirs[""]
		if res.MemoryMax > 0 {
			if err := write(d, "memory.max", strconv.FormatInt(memoryLimit(res.MemoryMax), 10)); err != nil {
				return err
			}
			// Kubernetes without swap: a memory limit is a hard limit.
			if err := writeIfExists(d, "memory.swap.max", "0"); err != nil {
				return err
			}
		}
		if res.CPULimitMilli > 0 {
			if err := write(d, "cpu.max", fmt.Sprintf("%d %d", Quota(res.CPULimitMilli), CFSPeriod)); err != nil {
				return err
			}
		}
		if res.CPURequestMilli > 0 {
			if err := write(d, "cpu.weight", strconv.FormatUint(Weight(res.CPURequestMilli), 10)); err != nil {
				return err
			}
		}
		if res.PidsMax > 0 {
			if err := write(d, "pids.max", strconv.FormatInt(min(res.PidsMax, MaxPids), 10)); err != nil {
				return err
			}
		}
		return nil
	}
	if res.MemoryMax > 0 {
		v := strconv.FormatInt(memoryLimit(res.MemoryMax), 10)
		if err := write(dirs["memory"], "memory.limit_in_bytes", v); err != nil {
			return err
		}
		// memsw exists only with swap accounting; it must be >= the limit.
		if err := writeIfExists(dirs["memory"], "memory.memsw.limit_in_bytes", v); err != nil {
			return err
		}
	}
	if res.CPULimitMilli > 0 {
		if err := write(dirs["cpu"], "cpu.cfs_period_us", strconv.Itoa(CFSPeriod)); err != nil {
			return err
		}
		if err := write(dirs["cpu"], "cpu.cfs_quota_us", strconv.FormatInt(Quota(res.CPULimitMilli), 10)); err != nil {
			return err
		}
	}
	if res.CPURequestMilli > 0 {
		if err := write(dirs["cpu"], "cpu.shares", strconv.FormatUint(Shares(res.CPURequestMilli), 10)); err != nil {
			return err
		}
	}
	if res.PidsMax > 0 {
		if err := write(dirs["pids"], "pids.max", strconv.FormatInt(min(res.PidsMax, MaxPids), 10)); err != nil {
			return err
		}
	}
	if res.RestrictDevices {
		d := dirs["devices"]
		if err := write(d, "devices.deny", "a"); err != nil {
			return err
		}
		for _, rule := range AllowedDevices {
			if err := write(d, "devices.allow", rule); err != nil {
				return err
			}
		}
	}
	return nil
}

// memoryLimit saturates a memory limit at the largest finite one.
func memoryLimit(b int64) int64 { return min(b, MaxMemory()) }

// Quota is the CFS quota in µs per 100 ms period of a CPU limit, within
// the kernel's [1 ms, MaxCFSQuota]. It saturates: a limit too large to
// express is the largest quota, never a wrapped small one.
func Quota(milli int64) int64 {
	// milli/1000 CPUs for CFSPeriod µs is milli*100 µs.
	if milli > MaxCFSQuota/100 {
		return MaxCFSQuota
	}
	return max(milli*100, MinCFSQuota)
}

// Shares converts a CPU request to v1 cpu.shares as the kubelet does,
// within [MinShares, MaxShares]; it saturates instead of overflowing.
func Shares(milli int64) uint64 {
	if milli >= MaxShares*1000/1024 {
		return MaxShares
	}
	return uint64(max(milli*1024/1000, MinShares))
}

// Weight converts a CPU request to v2 cpu.weight with the kubelet's mapping
// of shares [2, 262144] onto weight [1, 10000].
func Weight(milli int64) uint64 {
	return 1 + ((Shares(milli)-MinShares)*9999)/(MaxShares-MinShares)
}

// Join moves pid into rel in every hierarchy.
func (m *Manager) Join(rel string, pid int) error {
	for _, h := range m.hierarchies() {
		d, err := m.dir(h, rel)
		if err != nil {
			return err
		}
		if err := write(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// ThreadFiles are the files through which a thread moves itself into rel
// by writing 0 to each: the tasks file of every v1 hierarchy. Moving a
// process by PID (Join) takes the kernel's global threadgroup lock, whose
// writer waits out an RCU grace period (~15 ms on the development machine,
// the longest step of a container start); the calling thread moving
// itself does not take it. A process that then execs from that thread is
// wholly in rel. On v2, where a thread moves alone only within a threaded
// subtree, there are none: the process is moved by PID.
func (m *Manager) ThreadFiles(rel string) ([]string, error) {
	if m.Unified {
		return nil, nil
	}
	var out []string
	for _, h := range m.hierarchies() {
		d, err := m.dir(h, rel)
		if err != nil {
			return nil, err
		}
		out = append(out, filepath.Join(d, "tasks"))
	}
	return out, nil
}

// procsDir is the hierarchy that sees every process of a cgroup.
func (m *Manager) procsDir(rel string) (string, error) {
	if m.Unified {
		return m.dir("", rel)
	}
	return m.dir("pids", rel)
}

// Procs lists the processes of rel (not of its children). A missing cgroup
// has none.
func (m *Manager) Procs(rel string) ([]int, error) {
	d, err := m.procsDir(rel)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// Signal sends sig to every process of rel once and returns how many it
// signalled. Processes forked meanwhile are caught by calling it again.
func (m *Manager) Signal(rel string, sig syscall.Signal) (int, error) {
	pids, err := m.Procs(rel)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err == nil {
			n++
		}
	}
	return n, nil
}

// Remove deletes rel and its children in every hierarchy. A missing cgroup is
// already removed. It fails (EBUSY) while processes remain.
func (m *Manager) Remove(rel string) error {
	for _, h := range m.hierarchies() {
		d, err := m.dir(h, rel)
		if err != nil {
			return err
		}
		if err := removeTree(d); err != nil {
			return err
		}
	}
	return nil
}

func removeTree(d string) error {
	entries, err := os.ReadDir(d)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(d, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: d, Err: err}
	}
	return nil
}

// RemoveParent deletes the parent itself when it is empty; used by tests and
// by an agent that owns its parent exclusively.
func (m *Manager) RemoveParent() error {
	for _, h := range m.hierarchies() {
		if err := removeTree(m.dirs[h]); err != nil {
			return err
		}
	}
	return nil
}

// Children lists the cgroups directly below the parent in the first
// hierarchy, for censuses and GC.
func (m *Manager) Children() ([]string, error) {
	entries, err := os.ReadDir(m.dirs[m.hierarchies()[0]])
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Exists reports whether rel exists in any hierarchy.
func (m *Manager) Exists(rel string) bool {
	for _, h := range m.hierarchies() {
		d, err := m.dir(h, rel)
		if err == nil {
			if _, err := os.Stat(d); err == nil {
				return true
			}
		}
	}
	return false
}

// OOMKilled reports whether the kernel's OOM killer killed a process of rel.
func (m *Manager) OOMKilled(rel string) (bool, error) {
	h, file := "memory", "memory.oom_control"
	if m.Unified {
		h, file = "", "memory.events"
	}
	d, err := m.dir(h, rel)
	if err != nil {
		return false, err
	}
	kv, err := readKV(filepath.Join(d, file))
	if err != nil {
		return false, err
	}
	return kv["oom_kill"] > 0, nil
}

// Stats reads CPU time, memory use and the process count of rel.
func (m *Manager) Stats(rel string) (*Stats, error) {
	var s Stats
	if m.Unified {
		d, err := m.dir("", rel)
		if err != nil {
			return nil, err
		}
		kv, err := readKV(filepath.Join(d, "cpu.stat"))
		if err != nil {
			return nil, err
		}
		s.CPUUsageNanos = kv["usage_usec"] * 1000
		if s.MemoryBytes, err = readUint(filepath.Join(d, "memory.current")); err != nil {
			return nil, err
		}
		if s.Pids, err = readUint(filepath.Join(d, "pids.current")); err != nil {
			return nil, err
		}
		return &s, nil
	}
	var err error
	d, _ := m.dir("cpuacct", rel)
	if s.CPUUsageNanos, err = readUint(filepath.Join(d, "cpuacct.usage")); err != nil {
		return nil, err
	}
	d, _ = m.dir("memory", rel)
	if s.MemoryBytes, err = readUint(filepath.Join(d, "memory.usage_in_bytes")); err != nil {
		return nil, err
	}
	d, _ = m.dir("pids", rel)
	if s.Pids, err = readUint(filepath.Join(d, "pids.current")); err != nil {
		return nil, err
	}
	return &s, nil
}

func write(dir, file, val string) error {
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
		return fmt.Errorf("cgroup: write %q to %s: %w", val, p, err)
	}
	return nil
}

func writeIfExists(dir, file, val string) error {
	if _, err := os.Stat(filepath.Join(dir, file)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return write(dir, file, val)
}

func readUint(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup: parse %s: %w", p, err)
	}
	return v, nil
}

func readKV(p string) (map[string]uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out, nil
}

// BusyChildrenPidsMax sums pids.max over the cgroups directly below rel
// that hold processes ("max" counts as MaxPids), saturating at MaxPids. A
// missing rel has none.
func (m *Manager) BusyChildrenPidsMax(rel string) (int64, error) {
	h := "pids"
	if m.Unified {
		h = ""
	}
	d, err := m.dir(h, rel)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir(d)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		child := filepath.Join(d, e.Name())
		cur, err := readUint(filepath.Join(child, "pids.current"))
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return 0, err
		}
		if cur == 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(child, "pids.max"))
		if err != nil {
			return 0, err
		}
		v := int64(MaxPids)
		if s := strings.TrimSpace(string(b)); s != "max" {
			if v, err = strconv.ParseInt(s, 10, 64); err != nil {
				return 0, fmt.Errorf("cgroup: parse %s/pids.max: %w", child, err)
			}
		}
		sum = min(sum+min(v, MaxPids), MaxPids)
	}
	return sum, nil
}
