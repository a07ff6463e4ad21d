package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

// step wraps err with the step that failed, so a failed start names it.
func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("rootfs: %s: %w", name, err)
}

func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return &os.PathError{Op: "mount " + fstype, Path: target, Err: err}
	}
	return nil
}

// Setup builds the root filesystem described by s and pivots into it. It
// runs in the container init, in a fresh mount namespace, as root with all
// capabilities.
func Setup(s *Spec) error {
	// Nothing mounted from here may propagate to the host; host unmounts
	// still propagate in (slave), so we never pin a host mount.
	if err := step("make / rslave", mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, "")); err != nil {
		return err
	}
	if err := step("overlay", mountOverlay(s)); err != nil {
		return err
	}
	root := s.Rootfs
	flags := uintptr(unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV)
	if err := step("/proc", mountAt(root, "/proc", "proc", "proc", flags, "")); err != nil {
		return err
	}
	sysFlags := flags
	if !s.Privileged {
		sysFlags |= unix.MS_RDONLY
	}
	if err := step("/sys", mountAt(root, "/sys", "sysfs", "sysfs", sysFlags, "")); err != nil {
		return err
	}
	if err := step("/dev", setupDev(root, s.ShmSize)); err != nil {
		return err
	}
	for _, b := range s.Binds {
		if err := step("bind "+b.Destination, volume.BindInto(root, b.Source, b.Destination, b.ReadOnly)); err != nil {
			return err
		}
	}
	if !s.Privileged {
		for _, p := range MaskedPaths {
			if err := step("mask "+p, mask(filepath.Join(root, p))); err != nil {
				return err
			}
		}
		for _, p := range ReadonlyPaths {
			if err := step("read-only "+p, readonly(filepath.Join(root, p))); err != nil {
				return err
			}
		}
	}
	if s.ReadOnly {
		// Only the root mount: /dev, /proc, volumes keep their own modes.
		if err := step("read-only rootfs", mount("", root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")); err != nil {
			return err
		}
	}
	return step("pivot_root", pivot(root))
}

func mountOverlay(s *Spec) error {
	data, err := overlayOptions(s)
	if err != nil {
		return err
	}
	return mount("overlay", s.Rootfs, "overlay", 0, data)
}

// mountAt mounts fstype at dest inside root, creating the directory. The
// destinations are fixed paths (/proc, /sys, /dev...), but the image could
// have planted symlinks there: MountTarget resolves them inside the root.
func mountAt(root, dest, source, fstype string, flags uintptr, data string) error {
	h, err := volume.MountTarget(root, dest, true)
	if err != nil {
		return err
	}
	defer h.Close()
	target := "/proc/self/fd/" + strconv.Itoa(int(h.Fd()))
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return &os.PathError{Op: "mount " + fstype, Path: filepath.Join(root, dest), Err: err}
	}
	return nil
}

func setupDev(root string, shmSize int64) error {
	if shmSize <= 0 {
		shmSize = 64 << 20
	}
	if err := mountAt(root, "/dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	dev := filepath.Join(root, "dev")
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range Devices {
		p := filepath.Join(root, d.Path)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.Major, d.Minor))); err != nil {
			return &os.PathError{Op: "mknod", Path: p, Err: err}
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC,
		"newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	if err := mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV,
		"mode=1777,size="+strconv.FormatInt(shmSize, 10)); err != nil {
		return err
	}
	if err := mount("mqueue", filepath.Join(dev, "mqueue"), "mqueue", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV, ""); err != nil {
		return err
	}
	for link, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore",
	} {
		if err := os.Symlink(target, filepath.Join(dev, link)); err != nil {
			return err
		}
	}
	return nil
}

// mask hides p: /dev/null over a file, an empty read-only tmpfs over a
// directory. A path the kernel does not have is already hidden.
func mask(p string) error {
	st, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		return mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "")
	}
	return mount("/dev/null", p, "", unix.MS_BIND, "")
}

// readonly bind-mounts p on itself and makes the bind read-only.
func readonly(p string) error {
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return mount(p, p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}

// pivot makes root the new / and detaches the old root, so the container
// cannot reach the host's tree (chroot could be escaped).
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return &os.PathError{Op: "chdir", Path: root, Err: err}
	}
	// pivot_root(".", ".") stacks the old root under the new one; detaching
	// "." afterwards removes it without needing a directory for it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return &os.PathError{Op: "pivot_root", Path: root, Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "umount old root", Path: root, Err: err}
	}
	return unix.Chdir("/")
}
