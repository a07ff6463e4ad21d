//go:build linux

package volume

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// inRoot resolves like chroot(2) would: absolute symlinks and ".." stay
// inside the root. A container's image may hold /var/run -> /run style links
// that must work, but never lead out of the rootfs.
const inRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

func openInRoot(rootfd int, name string, flags uint64) (int, error) {
	for {
		fd, err := unix.Openat2(rootfd, name, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: inRoot})
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// MountTarget opens (creating as needed) the mount point for containerPath
// inside rootfs, resolving every component inside the rootfs, and returns an
// O_PATH descriptor for it. A directory is made when dir is set, otherwise an
// empty file (parents are always directories).
func MountTarget(rootfs, containerPath string, dir bool) (*os.File, error) {
	if !path.IsAbs(containerPath) {
		return nil, fmt.Errorf("mount target %q: not absolute", containerPath)
	}
	rootfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open rootfs", Path: rootfs, Err: err}
	}
	defer unix.Close(rootfd)
	comps := strings.Split(strings.Trim(path.Clean(containerPath), "/"), "/")
	if len(comps) == 1 && comps[0] == "" {
		comps = nil
	}
	// Walk from the root, creating what is missing; each step resolves the
	// prefix so far in the root, so a symlink component is followed but
	// confined.
	cur := "/"
	for i, c := range comps {
		next := path.Join(cur, c)
		last := i == len(comps)-1
		fd, err := openInRoot(rootfd, next, unix.O_PATH)
		if err == nil {
			unix.Close(fd)
			cur = next
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("mount target %q in %s: %w", containerPath, rootfs, &os.PathError{Op: "openat2", Path: next, Err: err})
		}
		parent, err := openInRoot(rootfd, cur, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return nil, fmt.Errorf("mount target %q in %s: %w", containerPath, rootfs, &os.PathError{Op: "openat2", Path: cur, Err: err})
		}
		if !last || dir {
			err = unix.Mkdirat(parent, c, 0o755)
		} else {
			var f int
			f, err = unix.Openat(parent, c, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			if err == nil {
				unix.Close(f)
			}
		}
		unix.Close(parent)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("mount target %q in %s: create %q: %w", containerPath, rootfs, next, err)
		}
		cur = next
	}
	fd, err := openInRoot(rootfd, cur, unix.O_PATH)
	if err != nil {
		return nil, fmt.Errorf("mount target %q in %s: %w", containerPath, rootfs, err)
	}
	return os.NewFile(uintptr(fd), path.Join(rootfs, containerPath)), nil
}

// BindInto bind-mounts source at containerPath inside rootfs. The target is
// resolved inside the rootfs (MountTarget) and the mount is attached to that
// descriptor, so a symlink in the image cannot redirect it onto the host.
// readOnly makes the whole bind read-only, recursively (mount_setattr with
// AT_RECURSIVE), so submounts of a hostPath are read-only too.
//
// It runs in the mount namespace the container will use, before pivot_root.
func BindInto(rootfs, source, containerPath string, readOnly bool) error {
	srcfd, err := unix.Open(source, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open mount source", Path: source, Err: err}
	}
	defer unix.Close(srcfd)
	var st unix.Stat_t
	if err := unix.Fstat(srcfd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: source, Err: err}
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	tgt, err := MountTarget(rootfs, containerPath, isDir)
	if err != nil {
		return err
	}
	defer tgt.Close()
	tree, err := unix.OpenTree(srcfd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return &os.PathError{Op: "open_tree", Path: source, Err: err}
	}
	defer unix.Close(tree)
	if readOnly {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return &os.PathError{Op: "mount_setattr rdonly", Path: source, Err: err}
		}
	}
	if err := unix.MoveMount(tree, "", int(tgt.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind %s at %s in %s: %w", source, containerPath, rootfs, &os.PathError{Op: "move_mount", Path: tgt.Name(), Err: err})
	}
	return nil
}
