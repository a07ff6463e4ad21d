package rootfs

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The mount plumbing of Setup works on file descriptors only: a filesystem
// is made detached (fsopen, fsconfig, fsmount) and attached to a directory
// that was opened without following any symlink (openat2, then move_mount
// with MOVE_MOUNT_T_EMPTY_PATH). No path string inside the rootfs reaches a
// mount call, so a symlink in the image has nothing to redirect.

// Resolution rules. inImage is for the directories of the image that /proc,
// /sys and /dev are mounted on: resolved inside the root, and no symlink at
// all, not even one that would stay inside. beneath is for paths inside a
// filesystem Setup just mounted: they may not leave it, cross onto another
// mount, or pass through any symlink.
const (
	inImage = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS
	beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS
)

// openat2 opens name below dir as an O_PATH descriptor (plus extra flags)
// with the given resolution rules. where names dir in errors.
func openat2(dir *os.File, where, name string, extra uint64, resolve uint64) (*os.File, error) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC | extra, Resolve: resolve}
	full := strings.TrimSuffix(where, "/") + "/" + name
	for range 64 {
		fd, err := unix.Openat2(int(dir.Fd()), name, how)
		if err == unix.EAGAIN || err == unix.EINTR {
			// A rename or mount raced the walk: the kernel asks for a retry.
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "openat2", Path: full, Err: err}
		}
		return os.NewFile(uintptr(fd), full), nil
	}
	return nil, &os.PathError{Op: "openat2", Path: full, Err: unix.EAGAIN}
}

// imageDir opens the image's top-level directory name (proc, sys, dev) to
// mount on, making it when the image has none. Anything but a real
// directory fails: a symlink, even one that stays inside the rootfs, would
// move a kernel filesystem to where the image chose and leave /proc, /sys or
// /dev for the image to fill.
func imageDir(root *os.File, name string) (*os.File, error) {
	h, err := openat2(root, "", name, unix.O_DIRECTORY, inImage)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdirat(int(root.Fd()), name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, &os.PathError{Op: "mkdir", Path: "/" + name, Err: err}
		}
		h, err = openat2(root, "", name, unix.O_DIRECTORY, inImage)
	}
	if err == nil {
		return h, nil
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, notADir(root, name, err)
	}
	return nil, err
}

// notADir says what the image has instead of a directory at /name.
func notADir(root *os.File, name string, cause error) error {
	var st unix.Stat_t
	if err := unix.Fstatat(int(root.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("image's /%s is not a directory: refused: %w", name, cause)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(int(root.Fd()), name, buf)
		if err != nil {
			return fmt.Errorf("image's /%s is a symlink: refused", name)
		}
		return fmt.Errorf("image's /%s is a symlink to %s: refused", name, buf[:n])
	case unix.S_IFREG:
		return fmt.Errorf("image's /%s is a regular file, not a directory: refused", name)
	default:
		return fmt.Errorf("image's /%s is not a directory (mode %#o): refused", name, st.Mode&unix.S_IFMT)
	}
}

// fsOption is one fsconfig call: a key with a value, or a flag.
type fsOption struct{ key, value string }

func opt(key, value string) fsOption { return fsOption{key, value} }
func flag(key string) fsOption       { return fsOption{key: key} }

// newFS makes a new instance of fstype as a detached mount with the given
// MOUNT_ATTR_* attributes and returns its descriptor, which is the root of
// the new filesystem until it is attached somewhere.
func newFS(fstype string, attrs int, opts ...fsOption) (*os.File, error) {
	fsfd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("fsopen "+fstype, err)
	}
	defer unix.Close(fsfd)
	for _, o := range opts {
		if o.value == "" {
			err = unix.FsconfigSetFlag(fsfd, o.key)
		} else {
			err = unix.FsconfigSetString(fsfd, o.key, o.value)
		}
		if err != nil {
			return nil, fsError(fsfd, fstype, "fsconfig "+o.key, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fsError(fsfd, fstype, "fsconfig create", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return nil, fsError(fsfd, fstype, "fsmount", err)
	}
	return os.NewFile(uintptr(mfd), fstype), nil
}

// fsError adds what the filesystem logged on its context (the kernel's
// reason for refusing an option, for instance) to a failed call.
func fsError(fsfd int, fstype, op string, err error) error {
	var msgs []string
	buf := make([]byte, 256)
	for range 8 {
		n, rerr := unix.Read(fsfd, buf)
		if rerr != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s %s: %w (%s)", op, fstype, err, strings.Join(msgs, "; "))
	}
	return fmt.Errorf("%s %s: %w", op, fstype, err)
}

// attach moves the detached (or cloned) mount mnt onto the directory or
// file target, both descriptors.
func attach(mnt int, target *os.File) error {
	if err := unix.MoveMount(mnt, "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "move_mount", Path: target.Name(), Err: err}
	}
	return nil
}

// attachIn attaches mnt on the directory name inside the filesystem dir
// (which Setup made), resolved beneath it.
func attachIn(mnt *os.File, dir *os.File, where, name string) error {
	tgt, err := openat2(dir, where, name, unix.O_DIRECTORY, beneath)
	if err != nil {
		return err
	}
	defer tgt.Close()
	return attach(int(mnt.Fd()), tgt)
}
