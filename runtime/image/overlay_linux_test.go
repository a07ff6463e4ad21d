package image_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// mountRootfs mounts an overlay of the image's layers at target, as the
// container helper will. overlayfs wants the highest layer first.
func mountRootfs(t testing.TB, s *image.Store, ref, scratch string) string {
	t.Helper()
	dirs, _, err := s.LayerDirs(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	upper, work, target := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work"), filepath.Join(scratch, "rootfs")
	for _, d := range []string{upper, work, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	lower := slices.Clone(dirs)
	slices.Reverse(lower)
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay at %s: %v", target, err)
	}
	return target
}

// mountsUnder lists mount points below dir (the leak census).
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			out = append(out, fields[4])
		}
	}
	return out
}

// TestOverlayRootfs mounts a real overlay of unpacked layers: whiteouts
// hide lower files, opaque directories hide lower content, upper layers
// win. This is what proves the whiteout form is the kernel's.
func TestOverlayRootfs(t *testing.T) {
	linuxtest.RequireRoot(t)
	root := t.TempDir()
	s := newStoreAt(t, filepath.Join(root, "state"))
	img := imagetest.Image(t, v1.Config{}, imagetest.Gzip,
		[]imagetest.Entry{
			imagetest.Dir("etc/", 0o755), imagetest.File("etc/a", 0o644, []byte("a")), imagetest.File("etc/b", 0o644, []byte("b1")),
			imagetest.Dir("var/", 0o755), imagetest.Dir("var/x/", 0o755), imagetest.File("var/x/old", 0o644, []byte("old")),
		},
		[]imagetest.Entry{
			imagetest.Dir("etc/", 0o755), imagetest.Whiteout("etc/a"), imagetest.File("etc/b", 0o644, []byte("b2")),
			imagetest.Dir("var/", 0o755), imagetest.Dir("var/x/", 0o755), imagetest.Opaque("var/x"), imagetest.File("var/x/new", 0o644, []byte("new")),
		},
		[]imagetest.Entry{imagetest.Dir("etc/", 0o755), imagetest.File("etc/c", 0o644, []byte("c"))},
	)
	imagetest.ImportInto(t, s, "overlay:1", img)
	scratch := filepath.Join(root, "run")
	rootfs := mountRootfs(t, s, "overlay:1", scratch)
	defer func() {
		if err := unix.Unmount(rootfs, 0); err != nil {
			t.Errorf("unmount %s: %v", rootfs, err)
		}
		if left := mountsUnder(t, root); len(left) != 0 {
			t.Errorf("mounts left under %s: %v", root, left)
		}
	}()
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(rootfs, p))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/a")); !os.IsNotExist(err) {
		t.Errorf("etc/a visible through its whiteout: %v", err)
	}
	if got := read("etc/b"); got != "b2" {
		t.Errorf("etc/b = %q, want the upper layer's b2", got)
	}
	if got := read("etc/c"); got != "c" {
		t.Errorf("etc/c = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "var/x/old")); !os.IsNotExist(err) {
		t.Errorf("var/x/old visible through an opaque directory: %v", err)
	}
	if got := read("var/x/new"); got != "new" {
		t.Errorf("var/x/new = %q", got)
	}
}

// TestBusyboxRootfsRuns chroots into the mounted busybox image and runs a
// shell: the image the container issue builds on really works.
func TestBusyboxRootfsRuns(t *testing.T) {
	linuxtest.RequireRoot(t)
	root := t.TempDir()
	s := newStoreAt(t, filepath.Join(root, "state"))
	imagetest.ImportBusybox(t, s, "busybox:1.36")
	rootfs := mountRootfs(t, s, "busybox:1.36", filepath.Join(root, "run"))
	defer func() {
		if err := unix.Unmount(rootfs, 0); err != nil {
			t.Errorf("unmount %s: %v", rootfs, err)
		}
		if left := mountsUnder(t, root); len(left) != 0 {
			t.Errorf("mounts left under %s: %v", root, left)
		}
	}()
	out, err := chrootRun(rootfs, "/bin/sh", "-c", "echo hello from $(basename $(readlink /bin/sh)); id -un")
	if err != nil {
		t.Fatalf("sh in the busybox rootfs: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "hello from busybox\nroot" {
		t.Errorf("output %q", got)
	}
}
