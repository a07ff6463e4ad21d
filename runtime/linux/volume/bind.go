//go:build linux

package volume

import (
	"errors"
	"fmt"
	"os"
	"path"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// MountTarget opens (creating as needed) the mount point for containerPath
// inside the root directory root and returns an O_PATH descriptor for it.
// Every component is resolved as chroot(2) would (absolute symlinks and ".."
// stay inside the root, through pathrs-lite's openat2 RESOLVE_IN_ROOT walk),
// so an image's /var/run -> /run style links work but never lead out of the
// rootfs. A directory is made when dir is set, otherwise an empty file.
//
// The root is a descriptor, not a path: the caller opened the rootfs once,
// and nothing can swap it between the look-ups of several mounts.
func MountTarget(root *os.File, containerPath string, dir bool) (*os.File, error) {
	if !path.IsAbs(containerPath) {
		return nil, fmt.Errorf("mount target %q: not absolute", containerPath)
	}
	rootfs := root.Name()
	clean := path.Clean(containerPath)
	if dir || clean == "/" {
		h, err := pathrs.MkdirAllHandle(root, clean, 0o755)
		if err != nil {
			return nil, fmt.Errorf("mount target %q in %s: %w", containerPath, rootfs, err)
		}
		return h, nil
	}
	parent, err := pathrs.MkdirAllHandle(root, path.Dir(clean), 0o755)
	if err != nil {
		return nil, fmt.Errorf("mount target %q in %s: %w", containerPath, rootfs, err)
	}
	defer parent.Close()
	name := path.Base(clean)
	fd, err := unix.Openat(int(parent.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err == nil {
		unix.Close(fd)
	} else if !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("mount target %q in %s: %w", containerPath, rootfs, &os.PathError{Op: "create", Path: name, Err: err})
	}
	// Whatever is there now (our empty file, the image's file, or a symlink
	// to one) is opened in the root.
	h, err := pathrs.OpenatInRoot(root, clean)
	if err != nil {
		return nil, fmt.Errorf("mount target %q in %s: %w", containerPath, rootfs, err)
	}
	return h, nil
}

// BindInto bind-mounts source at containerPath inside the root directory
// root. The target is resolved inside the root (MountTarget) and the mount
// is attached to that descriptor, so a symlink in the image cannot redirect
// it onto the host.
// readOnly makes the whole bind read-only, recursively (mount_setattr with
// AT_RECURSIVE), so submounts of a hostPath are read-only too.
//
// It runs in the mount namespace the container will use, before pivot_root.
func BindInto(root *os.File, source, containerPath string, readOnly bool) error {
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
	tgt, err := MountTarget(root, containerPath, isDir)
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
		return fmt.Errorf("bind %s at %s in %s: %w", source, containerPath, root.Name(), &os.PathError{Op: "move_mount", Path: tgt.Name(), Err: err})
	}
	return nil
}
