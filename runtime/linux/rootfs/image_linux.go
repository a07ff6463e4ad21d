package rootfs

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

// imageAttrs are an image volume's: read-only, as KEP-4639 asks, and
// never a way to gain privileges (a setuid file) or reach a device (a
// device node in a layer). Not noexec: the KEP dropped it (kubernetes/
// enhancements#5354) because tools images are mounted to be run, and
// critest checks that a binary of the volume runs.
const imageAttrs = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV

// mountImage mounts the merged tree of b.Layers (or b.SubPath of it) at
// b.Destination inside root. The tree is made detached, the subPath is
// resolved beneath it, and the result is attached to a target resolved in
// the root: no path inside the image or the rootfs reaches a mount call.
func mountImage(root *os.File, b *Bind) error {
	tree, err := imageTree(b.Layers)
	if err != nil {
		return err
	}
	defer tree.Close()
	src := tree
	if b.SubPath != "" {
		h, err := volume.OpenInTree(tree, b.SubPath)
		if err != nil {
			return err
		}
		defer h.Close()
		sub, err := cloneTree(h)
		if err != nil {
			return err
		}
		defer sub.Close()
		src = sub
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: src.Name(), Err: err}
	}
	tgt, err := volume.MountTarget(root, b.Destination, st.Mode&unix.S_IFMT == unix.S_IFDIR)
	if err != nil {
		return err
	}
	defer tgt.Close()
	return attach(int(src.Fd()), tgt)
}

// CheckImagePath resolves sub in the merged tree of layers as mountImage
// does, on a detached mount that is never attached anywhere and goes when
// it is closed: the agent can refuse a subPath before a container is made.
func CheckImagePath(layers []string, sub string) error {
	tree, err := imageTree(layers)
	if err != nil {
		return err
	}
	defer tree.Close()
	h, err := volume.OpenInTree(tree, sub)
	if err != nil {
		return err
	}
	return h.Close()
}

// imageTree returns a detached, read-only mount of the layers merged. A
// read-only overlay needs two lower layers at least; a one-layer image is
// that layer's directory, cloned.
func imageTree(layers []string) (*os.File, error) {
	if len(layers) == 1 {
		h, err := os.OpenFile(layers[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer h.Close()
		return cloneTree(h)
	}
	// One "lowerdir+" per layer, highest first (Linux 6.8+): fsconfig
	// takes at most 256 bytes a value, too few for a joined lowerdir.
	// Without an upper layer the overlay is read-only.
	opts := make([]fsOption, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		opts = append(opts, opt("lowerdir+", layers[i]))
	}
	return newFS("overlay", imageAttrs, opts...)
}

// cloneTree makes a detached copy of the mount at h (from h down) with
// the image attributes set on all of it.
func cloneTree(h *os.File) (*os.File, error) {
	fd, err := unix.OpenTree(int(h.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return nil, &os.PathError{Op: "open_tree", Path: h.Name(), Err: err}
	}
	attr := unix.MountAttr{Attr_set: imageAttrs}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "mount_setattr", Path: h.Name(), Err: err}
	}
	return os.NewFile(uintptr(fd), h.Name()), nil
}
