//go:build linux

package volume

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// The pod files live on a tmpfs capped at PodFilesSize: a writer gets
// ENOSPC there, a second PodFiles keeps what is there, and Teardown (or GC,
// through Sandboxes) removes it.
func TestPodFilesCappedTmpfs(t *testing.T) {
	m, _ := newManager(t)
	dir, fresh, err := m.PodFiles("sb1")
	if err != nil {
		t.Fatal(err)
	}
	if !fresh || dir != m.PodFilesDir("sb1") {
		t.Fatalf("PodFiles = %s, fresh %v", dir, fresh)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC || st.Flags&(unix.ST_NOSUID|unix.ST_NODEV|unix.ST_NOEXEC) != unix.ST_NOSUID|unix.ST_NODEV|unix.ST_NOEXEC {
		t.Errorf("pod files: type %#x flags %#x, want a nosuid,nodev,noexec tmpfs", st.Type, st.Flags)
	}
	f, err := os.Create(filepath.Join(dir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Write(bytes.Repeat([]byte("x"), 2*PodFilesSize))
	f.Close()
	if !errors.Is(err, unix.ENOSPC) || n > PodFilesSize {
		t.Errorf("writing twice the cap: %d bytes, %v; want ENOSPC at %d", n, err, PodFilesSize)
	}
	if _, fresh, err := m.PodFiles("sb1"); err != nil || fresh {
		t.Errorf("second PodFiles: fresh %v, %v; want the same tmpfs", fresh, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "hosts")); err != nil {
		t.Errorf("second PodFiles lost the files: %v", err)
	}
	if ids, _ := m.Sandboxes(); !slices.Contains(ids, "sb1") {
		t.Errorf("Sandboxes = %v: GC would not find sb1's pod files", ids)
	}
	if err := m.Teardown("sb1"); err != nil {
		t.Fatal(err)
	}
	census(t, m, "sb1")
}

// Something other than the capped tmpfs mounted at the pod files'
// directory is refused rather than written to.
func TestPodFilesRefusesOtherMounts(t *testing.T) {
	m, base := newManager(t)
	dir := m.PodFilesDir("sb2")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(base, "disk")
	if err := os.Mkdir(disk, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(disk, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.PodFiles("sb2"); err == nil {
		t.Error("PodFiles accepted a bind of a disk directory")
	}
	if err := m.Teardown("sb2"); err != nil {
		t.Fatal(err)
	}
	census(t, m, "sb2")
}
