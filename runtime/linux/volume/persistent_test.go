//go:build linux

package volume

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

func claim(ns, name string, size int64) []runtime.VolumeConfig {
	return []runtime.VolumeConfig{{Name: "data", Persistent: &runtime.PersistentVolume{Namespace: ns, Name: name, Size: size}}}
}

// writeBytes writes n bytes to path in 1 MiB chunks, syncing, and returns
// the first error.
func writeBytes(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{'x'}, 1<<20)
	for written := 0; written < n; written += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// A persistent volume is made on first use, outlives the sandbox that
// used it, is found again by the next one, and goes only by an explicit
// removal that no user of it holds back.
func TestPersistentVolumeOutlivesSandboxes(t *testing.T) {
	m, _ := newManager(t)
	paths, err := m.Setup("sb1", claim("default", "data", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(m.persistentRoot(), "default", "data", "data"); paths["data"] != want {
		t.Fatalf("path %s, want %s", paths["data"], want)
	}
	if err := os.WriteFile(filepath.Join(paths["data"], "kept"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown("sb1"); err != nil {
		t.Fatal(err)
	}
	census(t, m, "sb1")
	paths, err = m.Setup("sb2", claim("default", "data", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(paths["data"], "kept")); err != nil || string(b) != "v1" {
		t.Fatalf("the next sandbox reads %q, %v; want v1", b, err)
	}
	v, err := m.GetPersistent("default", "data")
	if err != nil {
		t.Fatal(err)
	}
	if v.Created.IsZero() || v.Used < 2 || v.Quota.Size != 1<<20 {
		t.Errorf("volume %+v: want a creation time, the bytes used and the size", v)
	}
	// The state root here is whatever the test's temporary directory is
	// on: either the size is enforced, or the record says why not.
	if v.Quota.Enforced {
		if err := writeBytes(filepath.Join(paths["data"], "big"), 4<<20); !errors.Is(err, unix.EDQUOT) && !errors.Is(err, unix.ENOSPC) {
			t.Errorf("4 MiB into a 1 MiB volume whose quota is enforced: %v", err)
		}
	} else if v.Quota.Reason == "" {
		t.Errorf("an advisory size without a reason: %+v", v.Quota)
	}

	if err := m.RemovePersistent("default", "data", func() ([]string, error) { return []string{"pod default/db"}, nil }); !errors.Is(err, runtime.ErrConflict) ||
		!strings.Contains(err.Error(), "pod default/db") {
		t.Fatalf("removal of a volume in use: %v, want a conflict naming its user", err)
	}
	if _, err := os.Stat(filepath.Join(paths["data"], "kept")); err != nil {
		t.Fatalf("a refused removal touched the data: %v", err)
	}
	list, err := m.ListPersistent()
	if err != nil || len(list) != 1 || list[0].Name != "data" || list[0].Namespace != "default" {
		t.Fatalf("list %+v, %v", list, err)
	}
	if err := m.Teardown("sb2"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemovePersistent("default", "data", func() ([]string, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m.persistentRoot(), "default")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the namespace directory outlived its last volume: %v", err)
	}
	if _, err := m.GetPersistent("default", "data"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("removed volume: %v, want ErrNotFound", err)
	}
	if err := m.RemovePersistent("default", "data", func() ([]string, error) { return nil, nil }); err != nil {
		t.Errorf("removing a missing volume: %v", err)
	}
	census(t, m, "sb2")
}

func TestPersistentVolumeNamesStayBelowTheRoot(t *testing.T) {
	m, _ := newManager(t)
	for _, c := range [][2]string{{"default", ".."}, {"..", "x"}, {"default", "a/b"}, {"", "x"}} {
		if _, err := m.Setup("sb1", claim(c[0], c[1], 0)); !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("claim %q/%q: %v, want ErrInvalidConfig", c[0], c[1], err)
		}
	}
	census(t, m, "sb1")
}

// mountImage makes a filesystem image of size bytes with mkfs (args), and
// loop-mounts it with opts at dir; the loop device goes with the unmount.
func mountImage(t *testing.T, dir string, size int64, opts string, mkfs ...string) error {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs[0], append(mkfs[1:], img)...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", mkfs, err, out)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-o", "loop"+opts, img, dir).CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
		// Census: the loop device went with the mount.
		if out, _ := exec.Command("losetup", "-j", img).Output(); len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("census: loop device left: %s", out)
		}
	})
	return nil
}

// requireTool finds a program, installing its Debian package when it is
// missing (a fresh machine lacks btrfs-progs).
func requireTool(t *testing.T, prog, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	if out, err := exec.Command("apt-get", "install", "-y", "-qq", pkg).CombinedOutput(); err != nil {
		t.Logf("apt-get install %s: %v\n%s", pkg, err, out)
	}
	p, err := exec.LookPath(prog)
	linuxtest.Require(t, err == nil, prog+" (Debian package "+pkg+")")
	return p
}

// On btrfs a persistent volume (and an emptyDir with a sizeLimit) is a
// subvolume, and its size a qgroup limit once quotas are on: the kernel
// refuses writes beyond it. Before quotas are on, the size is advisory and
// says how to turn them on.
func TestSizeLimitsOnBtrfs(t *testing.T) {
	linuxtest.RequireRoot(t)
	requireTool(t, "mkfs.btrfs", "btrfs-progs")
	btrfs := requireTool(t, "btrfs", "btrfs-progs")
	m, base := newManager(t)
	state := filepath.Join(base, "state")
	if err := mountImage(t, state, 512<<20, "", "mkfs.btrfs", "-q"); err != nil {
		t.Fatalf("mount btrfs: %v", err)
	}

	paths, err := m.Setup("sb1", claim("default", "db", 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	v, err := m.GetPersistent("default", "db")
	if err != nil {
		t.Fatal(err)
	}
	if v.Quota.Enforced || !strings.Contains(v.Quota.Reason, "btrfs quota enable") {
		t.Fatalf("quotas off: %+v, want advisory, saying how to turn them on", v.Quota)
	}
	var st unix.Stat_t
	if err := unix.Stat(paths["data"], &st); err != nil || st.Ino != btrfsFirstFreeObject {
		t.Fatalf("the volume is not a subvolume (inode %d, %v)", st.Ino, err)
	}

	if out, err := exec.Command(btrfs, "quota", "enable", state).CombinedOutput(); err != nil {
		t.Fatalf("btrfs quota enable: %v\n%s", err, out)
	}
	// The next sandbox that uses the volume finds the quota on.
	paths, err = m.Setup("sb2", append(claim("default", "db", 8<<20),
		runtime.VolumeConfig{Name: "scratch", EmptyDir: &runtime.EmptyDirVolume{SizeLimit: 4 << 20}}))
	if err != nil {
		t.Fatal(err)
	}
	if v, err = m.GetPersistent("default", "db"); err != nil || !v.Quota.Enforced || v.Quota.Method != "btrfs qgroup" {
		t.Fatalf("quotas on: %+v, %v; want an enforced qgroup", v.Quota, err)
	}
	if err := writeBytes(filepath.Join(paths["data"], "fits"), 4<<20); err != nil {
		t.Fatalf("4 MiB into an 8 MiB volume: %v", err)
	}
	if err := writeBytes(filepath.Join(paths["data"], "big"), 16<<20); !errors.Is(err, unix.EDQUOT) {
		t.Fatalf("16 MiB more into an 8 MiB volume: %v, want EDQUOT", err)
	}
	if err := writeBytes(filepath.Join(paths["scratch"], "big"), 8<<20); !errors.Is(err, unix.EDQUOT) {
		t.Fatalf("8 MiB into a 4 MiB emptyDir: %v, want EDQUOT", err)
	}
	// A larger claim raises the limit of the existing volume.
	if _, err := m.setupPersistent(&runtime.PersistentVolume{Namespace: "default", Name: "db", Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := writeBytes(filepath.Join(paths["data"], "big"), 16<<20); err != nil {
		t.Fatalf("16 MiB after the volume grew to 64 MiB: %v", err)
	}

	for _, id := range []string{"sb1", "sb2"} {
		if err := m.Teardown(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.RemovePersistent("default", "db", func() ([]string, error) { return nil, nil }); err != nil {
		t.Fatalf("remove a subvolume: %v", err)
	}
	census(t, m, "sb1", "sb2")
}

// kernelConfig reports a kernel build option (from /proc/config.gz).
func kernelConfig(t *testing.T, option string) bool {
	t.Helper()
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		t.Fatalf("the kernel's configuration: %v", err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte("\n"+option+"=y\n"))
}

// On ext4 mounted with project quotas, a size is a project quota the
// kernel enforces. A kernel built without ext4 quota support (no
// CONFIG_QFMT_V2, as on the development machine) cannot mount such a
// filesystem; then the test proves that, and that plain ext4 reports the
// size as advisory with the reason.
func TestSizeLimitsOnExt4(t *testing.T) {
	linuxtest.RequireRoot(t)
	m, base := newManager(t)
	state := filepath.Join(base, "state")
	err := mountImage(t, state, 128<<20, ",prjquota", "mkfs.ext4", "-q", "-O", "quota,project", "-E", "quotatype=prjquota")
	if err != nil {
		if kernelConfig(t, "CONFIG_QFMT_V2") {
			t.Fatalf("ext4 with project quotas does not mount on a kernel with CONFIG_QFMT_V2: %v", err)
		}
		t.Logf("this kernel has no ext4 quota support (CONFIG_QFMT_V2): %v; testing the advisory size on plain ext4", err)
		if err := mountImage(t, state, 128<<20, "", "mkfs.ext4", "-q"); err != nil {
			t.Fatal(err)
		}
	}
	paths, err := m.Setup("sb1", claim("default", "db", 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	v, err := m.GetPersistent("default", "db")
	if err != nil {
		t.Fatal(err)
	}
	if v.Quota.Enforced {
		if !strings.HasPrefix(v.Quota.Method, "project quota ") || v.Quota.Project == 0 {
			t.Errorf("quota %+v, want a project quota", v.Quota)
		}
		if err := writeBytes(filepath.Join(paths["data"], "big"), 16<<20); !errors.Is(err, unix.EDQUOT) {
			t.Errorf("16 MiB into an 8 MiB volume: %v, want EDQUOT", err)
		}
	} else if !strings.Contains(v.Quota.Reason, "ext4") || !strings.Contains(v.Quota.Reason, "prjquota") {
		t.Errorf("advisory size %+v: the reason must name ext4 and prjquota", v.Quota)
	}
	if err := m.Teardown("sb1"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemovePersistent("default", "db", func() ([]string, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	census(t, m, "sb1")
}
