package rootfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// These root tests run Setup for real: in a child (this test binary
// re-executed from TestMain) cloned into fresh mount and PID namespaces,
// as the container init is, against lower layers built by hand. The child
// reports what it sees after pivot_root; the parent checks the host.

const childName = "pelagos-rootfs-test-child"

func TestMain(m *testing.M) {
	if os.Args[0] == childName {
		childMain()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childReport is what the child saw.
type childReport struct {
	SetupError string            `json:"setupError,omitempty"`
	Facts      map[string]string `json:"facts,omitempty"`
	// SetupTime is how long Setup took, and FloorTime a bare
	// mount(2)+umount(2) of a tmpfs in the same child, for the benchmark.
	SetupTime time.Duration `json:"setupTime"`
	FloorTime time.Duration `json:"floorTime"`
}

func childMain() {
	var s Spec
	var rep childReport
	if err := json.NewDecoder(os.Stdin).Decode(&s); err != nil {
		rep.SetupError = "decode spec: " + err.Error()
		json.NewEncoder(os.Stdout).Encode(&rep)
		return
	}
	t0 := time.Now()
	if err := unix.Mount("floor", s.Upper, "tmpfs", 0, ""); err == nil {
		unix.Unmount(s.Upper, 0)
	}
	rep.FloorTime = time.Since(t0)
	t0 = time.Now()
	err := Setup(&s)
	rep.SetupTime = time.Since(t0)
	if err != nil {
		rep.SetupError = err.Error()
	} else if os.Getenv("PELAGOS_ROOTFS_TEST_OBSERVE") != "no" {
		rep.Facts = observe()
	}
	json.NewEncoder(os.Stdout).Encode(&rep)
}

// observe describes, from inside the container, every path Setup is
// responsible for.
func observe() map[string]string {
	f := map[string]string{}
	for _, p := range MaskedPaths {
		f["mask "+p] = describe(p)
	}
	for _, p := range ReadonlyPaths {
		f["ro "+p] = describe(p)
	}
	for _, p := range []string{"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"} {
		f["fs "+p] = describe(p)
	}
	for _, d := range Devices {
		f["dev "+d.Path] = describe(d.Path)
	}
	if link, err := os.Readlink("/dev/fd"); err == nil {
		f["link /dev/fd"] = link
	}
	// The attacker's write: the current value back, so that a failed
	// defence changes nothing on the host while the result still shows it.
	if cur, err := os.ReadFile("/proc/sys/kernel/core_pattern"); err != nil {
		f["write core_pattern"] = "read: " + err.Error()
	} else if err := os.WriteFile("/proc/sys/kernel/core_pattern", cur, 0); err != nil {
		f["write core_pattern"] = errno(err)
	} else {
		f["write core_pattern"] = "written"
	}
	if b, err := os.ReadFile("/etc/hosts"); err == nil {
		f["read /etc/hosts"] = string(b)
	}
	return f
}

func errno(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// mqueueMagic is MQUEUE_MAGIC of linux/magic.h, which x/sys lacks.
const mqueueMagic = 0x19800202

var fsNames = map[int64]string{
	unix.PROC_SUPER_MAGIC: "proc", unix.SYSFS_MAGIC: "sysfs", unix.TMPFS_MAGIC: "tmpfs",
	unix.DEVPTS_SUPER_MAGIC: "devpts", mqueueMagic: "mqueue", unix.OVERLAYFS_SUPER_MAGIC: "overlay",
}

// describe is "absent", "null" (the null device), "chr M:m", or the
// filesystem type with "ro"/"rw", plus "empty" for an empty directory.
func describe(p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "absent"
		}
		return errno(err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFCHR {
		if st.Rdev == unix.Mkdev(1, 3) {
			return "null"
		}
		return fmt.Sprintf("chr %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(p, &fs); err != nil {
		return errno(err)
	}
	name, ok := fsNames[int64(fs.Type)]
	if !ok {
		name = fmt.Sprintf("%#x", fs.Type)
	}
	mode := "rw"
	if fs.Flags&unix.ST_RDONLY != 0 {
		mode = "ro"
	}
	out := name + " " + mode
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if ents, err := os.ReadDir(p); err == nil && len(ents) == 0 {
			out += " empty"
		}
	}
	return out
}

// layer is a hand-built lower directory: each entry is "dir NAME",
// "file NAME CONTENT" or "symlink NAME TARGET".
func layer(t testing.TB, entries ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lower")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		f := strings.SplitN(e, " ", 3)
		p := filepath.Join(dir, f[1])
		var err error
		switch f[0] {
		case "dir":
			err = os.MkdirAll(p, 0o755)
		case "file":
			err = os.WriteFile(p, []byte(f[2]), 0o644)
		case "symlink":
			err = os.Symlink(f[2], p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runSetup runs Setup in a child in new mount and PID namespaces and
// returns its report.
func runSetup(t testing.TB, s Spec) childReport {
	t.Helper()
	base := t.TempDir()
	s.Rootfs, s.Upper, s.Work = filepath.Join(base, "rootfs"), filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{s.Rootfs, s.Upper, s.Work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := &exec.Cmd{
		Path: "/proc/self/exe", Args: []string{childName},
		Stdin: bytes.NewReader(in), Stdout: &out, Stderr: &errOut,
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID},
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\n%s", err, errOut.String())
	}
	var rep childReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("child report %q: %v\n%s", out.String(), err, errOut.String())
	}
	// The child's mount namespace died with it: nothing of it may be left
	// on the host, nor may anything have propagated out while it lived.
	if m := linuxtest.MountsUnder(base); len(m) > 0 {
		t.Errorf("host sees mounts of the child: %v", m)
	}
	return rep
}

// hostDir is a host directory that a hostile image points at; it must stay
// empty and unmounted.
func hostDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "host-target")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if m := linuxtest.MountsUnder(d); len(m) > 0 {
			t.Errorf("host directory %s got mounts: %v", d, m)
		}
		ents, _ := os.ReadDir(d)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if len(names) > 0 {
			t.Errorf("host directory %s was written: %v", d, names)
		}
	})
	return d
}

// TestSetupRefusesHostileImages: an image whose /proc, /sys or /dev is not
// a real directory does not start, with an error naming what it is, and
// the host is left as it was. (CVE-2019-19921, CVE-2023-27561 and
// CVE-2025-52881 are of this class.)
func TestSetupRefusesHostileImages(t *testing.T) {
	linuxtest.RequireRoot(t)
	for _, tc := range []struct {
		name    string
		entries func(t *testing.T) ([]string, string) // lower entries, wanted error
	}{
		{"proc-absolute-symlink", func(t *testing.T) ([]string, string) {
			return []string{"symlink proc /bad-proc", "dir bad-proc", "dir sys", "dir dev"},
				"rootfs: mount /proc: image's /proc is a symlink to /bad-proc: refused"
		}},
		{"proc-dotdot-symlink", func(t *testing.T) ([]string, string) {
			return []string{"symlink proc ../..", "dir sys", "dir dev"},
				"rootfs: mount /proc: image's /proc is a symlink to ../..: refused"
		}},
		// The image also holds the link's target inside the root, as an
		// attacker's would: a resolver that stays in the root is then
		// satisfied, and only a later look-up of the same path on the host
		// would land in the host directory.
		{"proc-to-host-directory", func(t *testing.T) ([]string, string) {
			h := hostDir(t)
			return []string{"symlink proc " + h, "dir " + h, "dir sys", "dir dev"},
				"rootfs: mount /proc: image's /proc is a symlink to " + h + ": refused"
		}},
		{"proc-regular-file", func(t *testing.T) ([]string, string) {
			return []string{"file proc not a directory", "dir sys", "dir dev"},
				"rootfs: mount /proc: image's /proc is a regular file, not a directory: refused"
		}},
		{"sys-to-root", func(t *testing.T) ([]string, string) {
			return []string{"dir proc", "symlink sys /", "dir dev"},
				"rootfs: mount /sys: image's /sys is a symlink to /: refused"
		}},
		{"sys-to-host-directory", func(t *testing.T) ([]string, string) {
			h := hostDir(t)
			return []string{"dir proc", "symlink sys " + h, "dir " + h, "dir dev"},
				"rootfs: mount /sys: image's /sys is a symlink to " + h + ": refused"
		}},
		{"dev-to-host-directory", func(t *testing.T) ([]string, string) {
			// Followed on the host, the device nodes would be made here
			// (the image's "/dev -> /tmp" would put them in the host's /tmp).
			h := hostDir(t)
			return []string{"dir proc", "dir sys", "symlink dev " + h, "dir " + h},
				"rootfs: mount /dev: image's /dev is a symlink to " + h + ": refused"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, want := tc.entries(t)
			rep := runSetup(t, Spec{Lower: []string{layer(t, entries...)}})
			if rep.SetupError != want {
				t.Errorf("Setup error = %q\n                 want %q", rep.SetupError, want)
			}
		})
	}
}

// TestSetupNeutralisesImageLinks: symlinks an image plants below /dev or at
// a bind target lead nowhere: /dev is a new tmpfs that hides the image's,
// and binds resolve inside the root (a target that does not exist there
// fails the start) rather than on the host.
func TestSetupNeutralisesImageLinks(t *testing.T) {
	linuxtest.RequireRoot(t)
	t.Run("dev-pts-symlink", func(t *testing.T) {
		h := hostDir(t)
		rep := runSetup(t, Spec{Lower: []string{layer(t, "dir proc", "dir sys", "dir dev", "symlink dev/pts "+h, "symlink dev/shm "+h)}})
		if rep.SetupError != "" {
			t.Fatalf("Setup: %s", rep.SetupError)
		}
		for p, want := range map[string]string{"fs /dev/pts": "devpts rw", "fs /dev/shm": "tmpfs rw empty"} {
			if got := rep.Facts[p]; got != want {
				t.Errorf("%s = %q, want %q", p, got, want)
			}
		}
	})
	t.Run("etc-hosts-symlink-to-host-file", func(t *testing.T) {
		hostFile := filepath.Join(hostDir(t), "..", "host-secret")
		if err := os.WriteFile(hostFile, []byte("host secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(t.TempDir(), "hosts")
		if err := os.WriteFile(src, []byte("pod hosts\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		rep := runSetup(t, Spec{
			Lower: []string{layer(t, "dir etc", "symlink etc/hosts "+hostFile)},
			Binds: []Bind{{Source: src, Destination: "/etc/hosts"}},
		})
		if !strings.HasPrefix(rep.SetupError, "rootfs: bind /etc/hosts: mount target \"/etc/hosts\"") ||
			!strings.Contains(rep.SetupError, "no such file or directory") {
			t.Errorf("Setup error = %q, want the bind refused (its target does not exist inside the root)", rep.SetupError)
		}
		if b, _ := os.ReadFile(hostFile); string(b) != "host secret\n" {
			t.Errorf("host file now holds %q", b)
		}
		if m := linuxtest.MountsUnder(hostFile); len(m) > 0 {
			t.Errorf("host file got a mount: %v", m)
		}
	})
}

// TestSetupAppliesMasks: after Setup every masked path is masked, every
// read-only path is read-only (writing kernel.core_pattern fails with
// EROFS), /sys is read-only, /dev is the minimal tmpfs; a privileged
// container gets them open, and readOnlyRootFilesystem makes / read-only.
func TestSetupAppliesMasks(t *testing.T) {
	linuxtest.RequireRoot(t)
	// No /proc, /sys or /dev in the image at all: Setup makes them.
	rep := runSetup(t, Spec{Lower: []string{layer(t, "dir etc")}})
	if rep.SetupError != "" {
		t.Fatalf("Setup: %s", rep.SetupError)
	}
	f := rep.Facts
	var maskedFiles, maskedDirs int
	for _, p := range MaskedPaths {
		// The container's procfs and sysfs are new instances of the host's:
		// what the host has, the container would have unless masked.
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if f["mask "+p] != "absent" {
				t.Errorf("%s: absent on the host but %q in the container", p, f["mask "+p])
			}
		case err != nil:
			t.Fatal(err)
		case fi.IsDir():
			maskedDirs++
			if got := f["mask "+p]; got != "tmpfs ro empty" {
				t.Errorf("mask %s = %q, want an empty read-only tmpfs", p, got)
			}
		default:
			maskedFiles++
			if got := f["mask "+p]; got != "null" {
				t.Errorf("mask %s = %q, want /dev/null", p, got)
			}
		}
	}
	// Which paths exist depends on the kernel's configuration (this one has
	// no /proc/kcore): the test only means something if some of each kind do.
	if maskedFiles == 0 || maskedDirs == 0 {
		t.Fatalf("host has %d masked files and %d masked directories: nothing to check", maskedFiles, maskedDirs)
	}
	for _, p := range ReadonlyPaths {
		_, err := os.Stat(p)
		if want := "proc ro"; err == nil && !strings.HasPrefix(f["ro "+p], want) {
			t.Errorf("read-only %s = %q, want %q", p, f["ro "+p], want)
		} else if err != nil && f["ro "+p] != "absent" {
			t.Errorf("read-only %s = %q: absent on the host", p, f["ro "+p])
		}
	}
	if got := f["write core_pattern"]; got != "EROFS" {
		t.Errorf("write to /proc/sys/kernel/core_pattern: %q, want EROFS", got)
	}
	for p, want := range map[string]string{
		"mask /proc/interrupts": "null", "ro /proc/sys": "proc ro",
		"fs /": "overlay rw", "fs /proc": "proc rw", "fs /sys": "sysfs ro", "fs /dev": "tmpfs rw",
		"fs /dev/pts": "devpts rw", "fs /dev/shm": "tmpfs rw empty", "fs /dev/mqueue": "mqueue rw empty",
		"link /dev/fd": "/proc/self/fd",
	} {
		if got := f[p]; got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	for _, d := range Devices {
		want := fmt.Sprintf("chr %d:%d", d.Major, d.Minor)
		if d.Path == "/dev/null" {
			want = "null"
		}
		if got := f["dev "+d.Path]; got != want {
			t.Errorf("%s = %q, want %q", d.Path, got, want)
		}
	}

	t.Run("privileged", func(t *testing.T) {
		rep := runSetup(t, Spec{Lower: []string{layer(t, "dir etc")}, Privileged: true})
		if rep.SetupError != "" {
			t.Fatalf("Setup: %s", rep.SetupError)
		}
		for p, want := range map[string]string{"fs /sys": "sysfs rw", "ro /proc/sys": "proc rw", "mask /proc/interrupts": "proc rw"} {
			if got := rep.Facts[p]; got != want {
				t.Errorf("%s = %q, want %q", p, got, want)
			}
		}
	})
	t.Run("read-only-root-with-bind", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "hosts")
		if err := os.WriteFile(src, []byte("pod hosts\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		rep := runSetup(t, Spec{Lower: []string{layer(t, "dir etc")}, ReadOnly: true,
			Binds: []Bind{{Source: src, Destination: "/etc/hosts"}}})
		if rep.SetupError != "" {
			t.Fatalf("Setup: %s", rep.SetupError)
		}
		for p, want := range map[string]string{"fs /": "overlay ro", "fs /dev": "tmpfs rw", "read /etc/hosts": "pod hosts\n"} {
			if got := rep.Facts[p]; got != want {
				t.Errorf("%s = %q, want %q", p, got, want)
			}
		}
	})
}

// The masked and read-only lists name absolute paths below /proc or /sys
// only: restrict applies nothing else.
func TestMaskListsAreUnderProcOrSys(t *testing.T) {
	for _, p := range slices.Concat(MaskedPaths, ReadonlyPaths) {
		if !strings.HasPrefix(p, "/proc/") && !strings.HasPrefix(p, "/sys/") {
			t.Errorf("%s is neither below /proc nor /sys", p)
		}
	}
}

// BenchmarkSetup measures Setup itself in the child (overlay, /proc with
// its masks, /sys, /dev, two binds, pivot_root) against a bare tmpfs
// mount+umount in the same child, the floor of any mount work.
//
//	go test -run '^$' -bench BenchmarkSetup -benchtime 200x ./runtime/linux/rootfs/
func BenchmarkSetup(b *testing.B) {
	linuxtest.RequireRoot(b)
	b.Setenv("PELAGOS_ROOTFS_TEST_OBSERVE", "no")
	lower := layer(b, "dir etc", "dir proc", "dir sys", "dir dev", "file etc/hosts image")
	src := filepath.Join(b.TempDir(), "hosts")
	if err := os.WriteFile(src, []byte("pod\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	spec := Spec{Lower: []string{lower}, Binds: []Bind{
		{Source: src, Destination: "/etc/hosts"}, {Source: filepath.Dir(src), Destination: "/data", ReadOnly: true},
	}}
	var setup, floor []time.Duration
	for b.Loop() {
		rep := runSetup(b, spec)
		if rep.SetupError != "" {
			b.Fatal(rep.SetupError)
		}
		setup, floor = append(setup, rep.SetupTime), append(floor, rep.FloorTime)
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	ms, mf := median(setup), median(floor)
	b.ReportMetric(float64(ms.Microseconds()), "setup-us")
	b.ReportMetric(float64(mf.Microseconds()), "floor-us")
	b.ReportMetric(float64(ms)/float64(mf), "setup/floor")
	b.ReportMetric(0, "ns/op")
}
