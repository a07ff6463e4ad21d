package cri

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// hugePagesReserved reports whether the host reserved huge pages of size
// (kubelet's spelling: "2MB", "1GB"); an unknown size counts as reserved,
// so that a limit this runtime cannot apply is refused.
func hugePagesReserved(size string) bool {
	kb, ok := hugePageKB(size)
	if !ok {
		return true
	}
	b, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-" + strconv.FormatInt(kb, 10) + "kB/nr_hugepages")
	if os.IsNotExist(err) {
		return false // no such size on this host: nothing to use
	}
	if err != nil {
		return true
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return err != nil || n != 0
}

func hugePageKB(size string) (int64, bool) {
	for _, u := range []struct {
		suffix string
		kb     int64
	}{{"KB", 1}, {"MB", 1 << 10}, {"GB", 1 << 20}} {
		if v, ok := strings.CutSuffix(size, u.suffix); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n * u.kb, err == nil && n > 0
		}
	}
	return 0, false
}

// fsUsage is what ImageFsInfo reports of a directory tree: the bytes its
// files take on disk and its inode count, with the filesystem's identity.
type fsUsage struct {
	Bytes, Inodes uint64
}

// treeUsage walks dir without following symlinks and sums the blocks and
// inodes of what lies on dir's own filesystem; hard links count once.
func treeUsage(dir string) (fsUsage, error) {
	var u fsUsage
	var root syscall.Stat_t
	if err := syscall.Lstat(dir, &root); err != nil {
		if err == syscall.ENOENT {
			return u, nil // not made yet: nothing used
		}
		return u, &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	seen := map[uint64]bool{}
	var walk func(string) error
	walk = func(p string) error {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			if os.IsNotExist(err) {
				return nil // removed while walking
			}
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		if st.Dev != root.Dev {
			return nil // a mount below (a running container's rootfs)
		}
		if st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		u.Bytes += uint64(st.Blocks) * 512
		u.Inodes++
		if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := walk(p + "/" + n); err != nil {
				return err
			}
		}
		return nil
	}
	return u, walk(dir)
}
