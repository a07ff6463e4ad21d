//go:build linux

package volume

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Size limits on directories of the state root (persistent volumes and
// emptyDirs with a sizeLimit), enforced by the filesystem where it can:
//
//   - btrfs: the directory is a subvolume with a qgroup limit on what it
//     refers to, once quotas are enabled on the filesystem (`btrfs quota
//     enable`; the agent never turns them on for the whole filesystem).
//   - XFS and ext4: a project quota (the directory gets a project ID that
//     its new files inherit, and the ID a block limit), when the
//     filesystem is mounted with project quotas (prjquota).
//
// Anywhere else the size is advisory, and Quota.Reason says why. The
// helpers are hand-written: the maintained Go packages for both (in
// moby and containerd) need cgo, and the agent is static.

// Quota is how a directory's size limit is held.
type Quota struct {
	Size     int64  `json:"size,omitempty"`      // bytes; 0: none asked
	Enforced bool   `json:"enforced"`            // the filesystem refuses writes beyond Size
	Method   string `json:"method,omitempty"`    // "btrfs qgroup" or "project quota 1234"
	Reason   string `json:"reason,omitempty"`    // why it is advisory
	Project  uint32 `json:"projectID,omitempty"` // the project ID, for project quotas
}

// Linux ioctl numbers and quotactl commands (uapi linux/fs.h, btrfs.h,
// dqblk_xfs.h, quota.h), which golang.org/x/sys does not define.
const (
	fsIOCFSGetXattr   = 0x801c581f // _IOR('X', 31, struct fsxattr)
	fsIOCFSSetXattr   = 0x401c5820 // _IOW('X', 32, struct fsxattr)
	fsXflagProjInhert = 0x00000200

	btrfsIOCSubvolCreate = 0x5000940e // _IOW(0x94, 14, struct btrfs_ioctl_vol_args)
	btrfsIOCQgroupLimit  = 0x8030942b // _IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args)
	btrfsLimitMaxRfer    = 1
	btrfsFirstFreeObject = 256 // the inode number of a subvolume's root

	prjQuota      = 2
	qXSetQLim     = 0x5804 // XQM_CMD(4)
	qXGetQStatV   = 0x5808 // XQM_CMD(8)
	fsProjQuota   = 2      // fs_disk_quota.d_flags
	fsDQBHard     = 1 << 3 // fs_disk_quota.d_fieldmask
	fsQuotaPDQEnf = 1 << 5 // fs_quota_statv.qs_flags: project limits enforced
)

// fsxattr is struct fsxattr.
type fsxattr struct {
	Xflags     uint32
	Extsize    uint32
	Nextents   uint32
	Projid     uint32
	Cowextsize uint32
	Pad        [8]byte
}

// makeLimitable creates dir so that a size limit can later be put on it:
// a btrfs subvolume on btrfs, a plain directory elsewhere. It is a no-op
// when dir exists.
func makeLimitable(dir string, mode os.FileMode) error {
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(dir), &st); err != nil {
		return &os.PathError{Op: "statfs", Path: filepath.Dir(dir), Err: err}
	}
	if uint32(st.Type) == unix.BTRFS_SUPER_MAGIC {
		if err := btrfsSubvolume(dir); err != nil {
			return err
		}
	} else if err := os.Mkdir(dir, mode); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

func btrfsSubvolume(dir string) error {
	parent, err := os.Open(filepath.Dir(dir))
	if err != nil {
		return err
	}
	defer parent.Close()
	var args struct {
		Fd   int64
		Name [4088]byte
	}
	name := filepath.Base(dir)
	if len(name) >= len(args.Name) {
		return fmt.Errorf("btrfs subvolume %s: name too long", dir)
	}
	copy(args.Name[:], name)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, parent.Fd(), btrfsIOCSubvolCreate, uintptr(unsafe.Pointer(&args))); errno != 0 {
		return &os.PathError{Op: "create btrfs subvolume", Path: dir, Err: errno}
	}
	return nil
}

// limitDir puts size (bytes; 0 lifts the limit) on dir, made by
// makeLimitable, and says how it is held. key names the directory for a
// project ID (a persistent volume keeps its ID once it has one). Only an
// I/O error that leaves the directory unusable is returned as an error;
// a filesystem that cannot limit the size gives an advisory Quota.
func limitDir(dir string, size int64, key string) (Quota, error) {
	q := Quota{Size: size}
	f, err := os.Open(dir)
	if err != nil {
		return q, err
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return q, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	switch uint32(st.Type) {
	case unix.BTRFS_SUPER_MAGIC:
		return limitBtrfs(f, q)
	case unix.XFS_SUPER_MAGIC, unix.EXT4_SUPER_MAGIC:
		return limitProject(f, q, key, fsName(uint32(st.Type)))
	}
	q.Reason = fmt.Sprintf("%s cannot limit the size of a directory (project quotas need XFS or ext4, qgroups btrfs)", fsName(uint32(st.Type)))
	return q, nil
}

func fsName(magic uint32) string {
	switch magic {
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.XFS_SUPER_MAGIC:
		return "XFS"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("the filesystem (type 0x%x)", magic)
}

func limitBtrfs(f *os.File, q Quota) (Quota, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return q, &os.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	if st.Ino != btrfsFirstFreeObject {
		q.Reason = "btrfs: the directory is not a subvolume (it was made before it had a size)"
		return q, nil
	}
	var args struct {
		QgroupID uint64
		Flags    uint64
		MaxRfer  uint64
		MaxExcl  uint64
		RsvRfer  uint64
		RsvExcl  uint64
	}
	args.Flags = btrfsLimitMaxRfer
	args.MaxRfer = uint64(q.Size) // 0 lifts the limit
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), btrfsIOCQgroupLimit, uintptr(unsafe.Pointer(&args)))
	switch {
	case errno == unix.ENOTCONN:
		q.Reason = "btrfs quotas are not enabled on this filesystem (`btrfs quota enable <mount point>` turns them on)"
		return q, nil
	case errno != 0:
		return q, &os.PathError{Op: "btrfs qgroup limit", Path: f.Name(), Err: errno}
	}
	q.Enforced, q.Method = q.Size > 0, "btrfs qgroup"
	return q, nil
}

func limitProject(f *os.File, q Quota, key, fs string) (Quota, error) {
	fd := int(f.Fd())
	// The filesystem must enforce project limits, not only account them.
	statv := make([]byte, 160) // struct fs_quota_statv
	statv[0] = 1               // FS_QSTATV_VERSION1
	if err := quotactlFd(fd, qXGetQStatV, 0, unsafe.Pointer(&statv[0])); err != nil {
		q.Reason = fmt.Sprintf("%s: project quotas are not enabled (%v); mount the filesystem with prjquota to enforce sizes", fs, err)
		return q, nil
	}
	if binary.NativeEndian.Uint16(statv[2:4])&fsQuotaPDQEnf == 0 {
		q.Reason = fs + ": project quota limits are not enforced on this filesystem; mount it with prjquota"
		return q, nil
	}
	var x fsxattr
	if err := ioctlPtr(fd, fsIOCFSGetXattr, unsafe.Pointer(&x)); err != nil {
		return q, &os.PathError{Op: "get project ID", Path: f.Name(), Err: err}
	}
	if x.Projid == 0 {
		x.Projid = projectID(key)
		x.Xflags |= fsXflagProjInhert
		if err := ioctlPtr(fd, fsIOCFSSetXattr, unsafe.Pointer(&x)); err != nil {
			q.Reason = fmt.Sprintf("%s: cannot set a project ID (%v)", fs, err)
			return q, nil
		}
	}
	q.Project = x.Projid
	dq := make([]byte, 112) // struct fs_disk_quota
	dq[0], dq[1] = 1, fsProjQuota
	binary.NativeEndian.PutUint16(dq[2:4], fsDQBHard)
	binary.NativeEndian.PutUint32(dq[4:8], x.Projid)
	binary.NativeEndian.PutUint64(dq[8:16], uint64((q.Size+511)/512)) // basic blocks; 0 lifts the limit
	if err := quotactlFd(fd, qXSetQLim, x.Projid, unsafe.Pointer(&dq[0])); err != nil {
		return q, &os.PathError{Op: "set project quota", Path: f.Name(), Err: err}
	}
	q.Enforced, q.Method = q.Size > 0, fmt.Sprintf("project quota %d", x.Projid)
	return q, nil
}

// projectID derives a project ID from a volume's key, in a range other
// tools leave alone by convention (the high half of the 32-bit space).
func projectID(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return 1<<31 | h.Sum32()&(1<<31-1)
}

func quotactlFd(fd int, cmd, id uint32, addr unsafe.Pointer) error {
	_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL_FD, uintptr(fd), uintptr(cmd<<8|prjQuota), uintptr(id), uintptr(addr), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}
