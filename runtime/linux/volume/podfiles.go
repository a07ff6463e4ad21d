//go:build linux

package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// PodFilesSize is the size of the tmpfs that holds a pod's own files: its
// /etc/hosts, /etc/resolv.conf and /etc/hostname, and the termination-log
// file of every container. Containers may write to all of them (Kubernetes
// mounts them read-write), so they live on a filesystem of their own with a
// small cap: a pod that writes without end gets ENOSPC at the cap instead
// of filling the host's disk, and the pages are charged to the memory
// cgroup of the container that wrote them. The agent's own content is a
// few KiB (a hosts line per pod on the node), far below it.
const PodFilesSize = 1 << 20

// podFilesOptions are the tmpfs options: the cap, and a root only the agent
// reaches (containers see single files, bound by descriptor).
var podFilesOptions = "size=" + strconv.Itoa(PodFilesSize) + ",mode=0700"

// PodFilesDir is the directory of the sandbox's pod files,
// <RunRoot>/pod-files/<sandbox>: a tmpfs mount once PodFiles made it.
func (m *Manager) PodFilesDir(sandboxID string) string {
	return filepath.Join(m.filesRoot, sandboxID)
}

// PodFiles mounts the sandbox's pod-files tmpfs, unless it is mounted
// already, and returns its directory; fresh reports a new (empty) one,
// whose files the caller has to write. Teardown unmounts and removes it
// with the volumes, and GC finds it by the sandbox ID like them.
func (m *Manager) PodFiles(sandboxID string) (dir string, fresh bool, err error) {
	if err := checkID("sandbox", sandboxID); err != nil {
		return "", false, err
	}
	dir = m.PodFilesDir(sandboxID)
	if err := os.MkdirAll(m.filesRoot, 0o700); err != nil {
		return "", false, fmt.Errorf("sandbox %s: pod files: %w", sandboxID, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", false, fmt.Errorf("sandbox %s: pod files: %w", sandboxID, err)
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return "", false, fmt.Errorf("sandbox %s: pod files: %w", sandboxID, err)
	}
	if !mounted {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, podFilesOptions); err != nil {
			return "", false, fmt.Errorf("sandbox %s: pod files: %w", sandboxID, &os.PathError{Op: "mount tmpfs", Path: dir, Err: err})
		}
		fresh = true
	}
	// Whatever is mounted there must be the capped tmpfs: files written on
	// anything else would be the uncapped host disk again.
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", false, fmt.Errorf("sandbox %s: pod files: %w", sandboxID, &os.PathError{Op: "statfs", Path: dir, Err: err})
	}
	if st.Type != unix.TMPFS_MAGIC || st.Blocks*uint64(st.Bsize) > PodFilesSize {
		return "", false, fmt.Errorf("sandbox %s: pod files: %s is not a tmpfs of at most %d bytes", sandboxID, dir, PodFilesSize)
	}
	return dir, fresh, nil
}

// removePodFiles unmounts the pod-files tmpfs at dir and removes the
// directory. Nothing is ever mounted below it (containers get its files by
// bind mounts in their own namespaces), so unlike the volumes it needs no
// look at the mount table: unmounting until dir is no mount point is
// enough before the removal.
func removePodFiles(dir string) error {
	for range 8 {
		err := unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not (or no longer) a mount point, or gone
		}
		if err != nil {
			return &os.PathError{Op: "unmount", Path: dir, Err: err}
		}
	}
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if mounted, err := isMountPoint(dir); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("%s: still mounted after unmount", dir)
	}
	return os.RemoveAll(dir)
}
