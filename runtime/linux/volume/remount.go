//go:build linux

package volume

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// remountSize grows (never shrinks below use) the tmpfs at dir.
func remountSize(dir string, size int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if st.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("%s: not a tmpfs", dir)
	}
	if cur := int64(st.Blocks) * st.Bsize; cur >= size {
		return nil
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("%s,size=%d", sensitiveTmpfsMode, size)); err != nil {
		return &os.PathError{Op: "remount tmpfs", Path: dir, Err: err}
	}
	return nil
}
