package agent

import (
	"time"

	"golang.org/x/sys/unix"
)

// fileCreated is when a manifest file was created, for the admission
// order: its birth time where the filesystem records one (statx), else its
// modification time; zero when the file cannot be read.
func fileCreated(path string) time.Time {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_BTIME|unix.STATX_MTIME, &st); err != nil {
		return time.Time{}
	}
	if st.Mask&unix.STATX_BTIME != 0 {
		return time.Unix(st.Btime.Sec, int64(st.Btime.Nsec))
	}
	return time.Unix(st.Mtime.Sec, int64(st.Mtime.Nsec))
}
