//go:build linux

package volume

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// ErrEscape is returned when a subPath or mount target would resolve outside
// its root (through "..", an absolute symlink or a symlink leading out).
var ErrEscape = errors.New("path escapes its root")

// beneath resolves strictly inside the starting directory: "..", absolute
// symlinks and symlinks leading out fail with EXDEV instead of being
// followed, and /proc magic links are refused. This is the defence against
// the kubelet subPath CVEs (CVE-2017-1002101, CVE-2021-25741), where a
// container swapped a path component for a symlink to the host.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

func openBeneath(dirfd int, name string, flags uint64) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: beneath})
		if err == unix.EAGAIN || err == unix.EINTR {
			continue // a concurrent rename in the tree; retry as the man page says
		}
		if err == unix.EXDEV || err == unix.ELOOP {
			return -1, fmt.Errorf("%q: %w", name, ErrEscape)
		}
		return fd, err
	}
}

// checkSubPath refuses subPaths Kubernetes' validation refuses.
func checkSubPath(sub string) error {
	if sub == "" || path.IsAbs(sub) {
		return fmt.Errorf("%w: subPath %q must be a non-empty relative path", runtime.ErrInvalidConfig, sub)
	}
	for _, c := range strings.Split(sub, "/") {
		if c == ".." {
			return fmt.Errorf("%w: subPath %q: %w", runtime.ErrInvalidConfig, sub, ErrEscape)
		}
	}
	return nil
}

// openSubPath opens sub inside root as an O_PATH descriptor, creating missing
// directories one component at a time, each step resolved beneath the one
// before, so nothing the container changes in the volume can redirect it.
func openSubPath(root, sub string) (*os.File, error) {
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open volume", Path: root, Err: err}
	}
	defer unix.Close(rootFd)
	fd, err := openBeneath(rootFd, sub, unix.O_PATH)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(root, sub)), nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("subPath %q in %s: %w", sub, root, err)
	}
	cur, err := unix.Dup(rootFd)
	if err != nil {
		return nil, err
	}
	for _, c := range strings.Split(path.Clean(sub), "/") {
		if err := unix.Mkdirat(cur, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(cur)
			return nil, fmt.Errorf("subPath %q in %s: mkdir %q: %w", sub, root, c, err)
		}
		next, err := openBeneath(cur, c, unix.O_PATH|unix.O_DIRECTORY)
		unix.Close(cur)
		if err != nil {
			return nil, fmt.Errorf("subPath %q in %s: %w", sub, root, err)
		}
		cur = next
	}
	return os.NewFile(uintptr(cur), filepath.Join(root, sub)), nil
}

// PrepareSubPath resolves subPath inside the volume's host directory and
// bind-mounts exactly what it resolved to (through the O_PATH descriptor, so
// no path is looked up twice) at a fixed place under the run root, which it
// returns. The container runtime then mounts that path like any other
// source. A subPath that escapes the volume fails with ErrEscape.
func (m *Manager) PrepareSubPath(sandboxID, container string, index int, volumeDir, subPath string) (string, error) {
	if err := checkID("sandbox", sandboxID); err != nil {
		return "", err
	}
	if err := checkID("container", container); err != nil {
		return "", err
	}
	if err := checkSubPath(subPath); err != nil {
		return "", fmt.Errorf("container %s: %w", container, err)
	}
	target := filepath.Join(m.subRoot, sandboxID, container, strconv.Itoa(index))
	if mounted, err := isMountPoint(target); err == nil && mounted {
		return target, nil
	}
	src, err := openSubPath(volumeDir, subPath)
	if err != nil {
		return "", fmt.Errorf("container %s: %w", container, err)
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return "", &os.PathError{Op: "fstat", Path: src.Name(), Err: err}
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o644)
		if err == nil {
			err = f.Close()
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if err := bindFd(int(src.Fd()), target); err != nil {
		return "", fmt.Errorf("container %s: subPath %q: %w", container, subPath, err)
	}
	return target, nil
}

// bindFd clones the mount tree at fd (a detached bind of exactly that inode)
// and attaches it at target.
func bindFd(fd int, target string) error {
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return &os.PathError{Op: "open_tree", Path: target, Err: err}
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "move_mount", Path: target, Err: err}
	}
	return nil
}

// CleanupSubPaths unmounts and removes the subPath mounts of one container
// (before it restarts with a new configuration, or goes).
func (m *Manager) CleanupSubPaths(sandboxID, container string) error {
	if err := checkID("sandbox", sandboxID); err != nil {
		return err
	}
	if err := checkID("container", container); err != nil {
		return err
	}
	if err := unmountAndRemove(filepath.Join(m.subRoot, sandboxID, container)); err != nil {
		return fmt.Errorf("sandbox %s: container %s: remove subPaths: %w", sandboxID, container, err)
	}
	return nil
}

// OpenInTree opens the existing sub inside the tree at root (an image
// volume's mount) as an O_PATH descriptor, resolved beneath root as
// openSubPath resolves a volume's subPath: a symlink or ".." that would
// leave the tree fails with ErrEscape. Nothing is created: the tree is
// read-only, and a subPath it lacks is the caller's error.
func OpenInTree(root *os.File, sub string) (*os.File, error) {
	if err := checkSubPath(sub); err != nil {
		return nil, err
	}
	fd, err := openBeneath(int(root.Fd()), sub, unix.O_PATH)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("subPath %q: not in the image: %w", sub, runtime.ErrInvalidConfig)
	}
	if errors.Is(err, ErrEscape) {
		return nil, fmt.Errorf("subPath %w", err) // openBeneath named it
	}
	if err != nil {
		return nil, fmt.Errorf("subPath %q: %w", sub, err)
	}
	return os.NewFile(uintptr(fd), path.Join(root.Name(), sub)), nil
}
