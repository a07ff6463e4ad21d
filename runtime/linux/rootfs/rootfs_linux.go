package rootfs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

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
//
// Everything inside the rootfs is reached from one descriptor of its root,
// without following the image's symlinks for /proc, /sys and /dev, and
// every mount is attached to a descriptor (see fd_linux.go). Masks and
// read-only paths are applied by descriptor beneath the procfs and sysfs
// instances Setup itself mounted, never by path, and any failure to apply
// one fails the start.
func Setup(s *Spec) error {
	// Nothing mounted from here may propagate to the host; host unmounts
	// still propagate in (slave), so we never pin a host mount.
	if err := step("make / rslave", mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, "")); err != nil {
		return err
	}
	if err := step("overlay", mountOverlay(s)); err != nil {
		return err
	}
	root, err := openRoot(s.Rootfs)
	if err != nil {
		return step("overlay", err)
	}
	defer root.Close()
	if err := step("mount /proc", setupKernelFS(root, "proc", "proc", noSUIDExecDev, s.Privileged)); err != nil {
		return err
	}
	sysAttrs := noSUIDExecDev
	if !s.Privileged {
		sysAttrs |= unix.MOUNT_ATTR_RDONLY
	}
	if err := step("mount /sys", setupKernelFS(root, "sys", "sysfs", sysAttrs, s.Privileged)); err != nil {
		return err
	}
	if err := step("mount /dev", setupDev(root, s.ShmSize)); err != nil {
		return err
	}
	for _, b := range s.Binds {
		if len(b.Layers) > 0 {
			if err := step("image volume at "+b.Destination, mountImage(root, &b)); err != nil {
				return err
			}
			continue
		}
		if err := step("bind "+b.Destination, volume.BindInto(root, b.Source, b.Destination, b.ReadOnly)); err != nil {
			return err
		}
	}
	if s.ReadOnly {
		// Only the root mount: /dev, /proc, volumes keep their own modes.
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(int(root.Fd()), "", unix.AT_EMPTY_PATH, &attr); err != nil {
			return step("read-only rootfs", &os.PathError{Op: "mount_setattr", Path: s.Rootfs, Err: err})
		}
	}
	return step("pivot_root", pivot(root))
}

func mountOverlay(s *Spec) error {
	data, err := overlayOptions(s)
	if err != nil {
		return err
	}
	// The target is the agent's own directory under its state root, not
	// a path inside the image, and the overlay is then only reached
	// through openRoot's descriptor.
	return mount("overlay", s.Rootfs, "overlay", 0, data)
}

// openRoot opens the overlay just mounted at dir, and checks it is one.
func openRoot(dir string) (*os.File, error) {
	root, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(root.Fd()), &st); err != nil {
		root.Close()
		return nil, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if st.Type != unix.OVERLAYFS_SUPER_MAGIC {
		root.Close()
		return nil, fmt.Errorf("%s: not the overlay just mounted (filesystem %#x)", dir, st.Type)
	}
	return root, nil
}

// noSUIDExecDev are the attributes of every filesystem Setup mounts, but
// /dev (device nodes) and /dev/pts (its own nodes).
const noSUIDExecDev = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NODEV

// setupKernelFS mounts a new instance of fstype (proc, sysfs) with the
// attributes attrs on the image's directory name, then, unless privileged,
// masks and makes read-only what containers must not see or change there.
func setupKernelFS(root *os.File, name, fstype string, attrs int, privileged bool) error {
	target, err := imageDir(root, name)
	if err != nil {
		return err
	}
	defer target.Close()
	mnt, err := newFS(fstype, attrs)
	if err != nil {
		return err
	}
	defer mnt.Close()
	if err := attach(int(mnt.Fd()), target); err != nil {
		return err
	}
	if privileged {
		return nil
	}
	return restrict(mnt, "/"+name)
}

// restrict applies the masked and read-only paths below prefix ("/proc",
// "/sys") to the filesystem mnt that was just mounted there. Each path is
// resolved beneath mnt's own root, without symlinks and without crossing
// onto another mount, so it is always the kernel's file in this very
// instance. A path this instance does not have (ENOENT) is already hidden;
// any other failure fails the start.
func restrict(mnt *os.File, prefix string) error {
	for _, p := range MaskedPaths {
		if rel, ok := strings.CutPrefix(p, prefix+"/"); ok {
			if err := mask(mnt, prefix, rel); err != nil {
				return fmt.Errorf("mask %s: %w", p, err)
			}
		}
	}
	for _, p := range ReadonlyPaths {
		if rel, ok := strings.CutPrefix(p, prefix+"/"); ok {
			if err := readonly(mnt, prefix, rel); err != nil {
				return fmt.Errorf("read-only %s: %w", p, err)
			}
		}
	}
	return nil
}

// mask hides rel beneath mnt: /dev/null over a file, an empty read-only
// tmpfs over a directory.
func mask(mnt *os.File, where, rel string) error {
	h, err := openat2(mnt, where, rel, 0, beneath)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: h.Name(), Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		empty, err := newFS("tmpfs", unix.MOUNT_ATTR_RDONLY|noSUIDExecDev)
		if err != nil {
			return err
		}
		defer empty.Close()
		return attach(int(empty.Fd()), h)
	}
	null, err := devNull()
	if err != nil {
		return err
	}
	defer unix.Close(null)
	return attach(null, h)
}

// devNull returns a detached bind of the host's /dev/null, checked to be
// the null device so that masking never exposes another file.
func devNull() (int, error) {
	fd, err := unix.Open("/dev/null", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: "/dev/null", Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return -1, &os.PathError{Op: "fstat", Path: "/dev/null", Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		return -1, errors.New("/dev/null is not the null device")
	}
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return -1, &os.PathError{Op: "open_tree", Path: "/dev/null", Err: err}
	}
	return tree, nil
}

// readonly covers rel beneath mnt with a read-only clone of itself
// (recursively: whatever is mounted below is read-only too).
func readonly(mnt *os.File, where, rel string) error {
	h, err := openat2(mnt, where, rel, 0, beneath)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer h.Close()
	tree, err := unix.OpenTree(int(h.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return &os.PathError{Op: "open_tree", Path: h.Name(), Err: err}
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | noSUIDExecDev}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return &os.PathError{Op: "mount_setattr", Path: h.Name(), Err: err}
	}
	return attach(tree, h)
}

// setupDev mounts a new tmpfs on the image's /dev directory and fills it:
// device nodes, pts, shm, mqueue and the usual symlinks, all made beneath
// the new tmpfs, so whatever the image had in /dev is hidden and unused.
func setupDev(root *os.File, shmSize int64) error {
	if shmSize <= 0 {
		shmSize = 64 << 20
	}
	target, err := imageDir(root, "dev")
	if err != nil {
		return err
	}
	defer target.Close()
	dev, err := newFS("tmpfs", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_STRICTATIME, opt("mode", "755"), opt("size", "65536k"))
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := attach(int(dev.Fd()), target); err != nil {
		return err
	}
	dfd := int(dev.Fd())
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range Devices {
		name := strings.TrimPrefix(d.Path, "/dev/")
		if err := unix.Mknodat(dfd, name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.Major, d.Minor))); err != nil {
			return &os.PathError{Op: "mknod", Path: d.Path, Err: err}
		}
	}
	for _, sub := range []struct {
		name, fstype string
		attrs        int
		opts         []fsOption
	}{
		{"pts", "devpts", unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC,
			[]fsOption{flag("newinstance"), opt("ptmxmode", "0666"), opt("mode", "0620"), opt("gid", "5")}},
		{"shm", "tmpfs", noSUIDExecDev, []fsOption{opt("mode", "1777"), opt("size", strconv.FormatInt(shmSize, 10))}},
		{"mqueue", "mqueue", noSUIDExecDev, nil},
	} {
		if err := unix.Mkdirat(dfd, sub.name, 0o755); err != nil {
			return &os.PathError{Op: "mkdir", Path: "/dev/" + sub.name, Err: err}
		}
		mnt, err := newFS(sub.fstype, sub.attrs, sub.opts...)
		if err != nil {
			return err
		}
		err = attachIn(mnt, dev, "/dev", sub.name)
		mnt.Close()
		if err != nil {
			return err
		}
	}
	for link, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore",
	} {
		if err := unix.Symlinkat(target, dfd, link); err != nil {
			return &os.PathError{Op: "symlink", Path: "/dev/" + link, Err: err}
		}
	}
	return nil
}

// pivot makes root the new / and detaches the old root, so the container
// cannot reach the host's tree (chroot could be escaped).
func pivot(root *os.File) error {
	if err := unix.Fchdir(int(root.Fd())); err != nil {
		return &os.PathError{Op: "fchdir", Path: root.Name(), Err: err}
	}
	// pivot_root(".", ".") stacks the old root under the new one; detaching
	// "." afterwards removes it without needing a directory for it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return &os.PathError{Op: "pivot_root", Path: root.Name(), Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "umount old root", Path: root.Name(), Err: err}
	}
	return unix.Chdir("/")
}
