// Package console gives a container process a terminal, as runc's console
// socket does: the init opens a pseudo-terminal of the container's own
// devpts instance (in the container's mount namespace, never the host's),
// makes its slave the process's controlling terminal and stdio, and passes
// the master to its supervisor (the shim, or the agent for exec) over a
// unix socket with SCM_RIGHTS before it execs. The master never reaches the
// workload: it is close-on-exec everywhere and the init closes its copy.
package console

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// ptmx is the multiplexer of the devpts instance mounted at /dev/pts in the
// caller's mount namespace: for a container, the instance made for it
// (rootfs mounts devpts with newinstance), so its ptys are numbered apart
// from the host's and from other containers'.
const ptmx = "/dev/pts/ptmx"

// Open opens a new pty of the devpts at /dev/pts and returns its master
// and slave, both close-on-exec. The multiplexer is opened without
// following any symlink and checked to be a devpts ptmx, so a container
// that rearranged its /dev (exec runs in a container that may have) cannot
// hand the init another device or file. The slave is opened from the
// master (TIOCGPTPEER), never by a path a container could redirect, and is
// owned by uid, as a pty a user opens is.
func Open(uid int) (master, slave int, err error) {
	how := &unix.OpenHow{
		Flags:   unix.O_RDWR | unix.O_NOCTTY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	master, err = unix.Openat2(unix.AT_FDCWD, ptmx, how)
	if err != nil {
		return -1, -1, &os.PathError{Op: "open", Path: ptmx, Err: err}
	}
	fail := func(err error) (int, int, error) {
		unix.Close(master)
		return -1, -1, err
	}
	if err := IsMaster(master); err != nil {
		return fail(err)
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fail(os.NewSyscallError("ioctl(TIOCSPTLCK)", err))
	}
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		return fail(os.NewSyscallError("ioctl(TIOCGPTPEER)", errno))
	}
	slave = int(fd)
	if err := unix.Fchown(slave, uid, -1); err != nil {
		unix.Close(slave)
		return fail(os.NewSyscallError("fchown pty", err))
	}
	return master, slave, nil
}

// IsMaster checks that fd is the master side of a devpts pty: the ptmx
// character device (5, 2) on a devpts filesystem.
func IsMaster(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat pty master", err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return os.NewSyscallError("fstatfs pty master", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(5, 2) || fs.Type != unix.DEVPTS_SUPER_MAGIC {
		return fmt.Errorf("%s is not a devpts multiplexer (mode %#o, device %d:%d, filesystem %#x)",
			ptmx, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), fs.Type)
	}
	return nil
}

// MakeControlling makes slave the calling process's controlling terminal,
// in a session of its own, and its stdin, stdout and stderr. The process
// must not lead a process group (a child started without Setpgid does not).
func MakeControlling(slave int) error {
	if _, err := unix.Setsid(); err != nil {
		return os.NewSyscallError("setsid", err)
	}
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return os.NewSyscallError("ioctl(TIOCSCTTY)", err)
	}
	for fd := range 3 {
		if fd == slave {
			continue
		}
		// dup3 without O_CLOEXEC: these survive the workload's execve.
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return os.NewSyscallError("dup3 pty", err)
		}
	}
	return nil
}

// SetSize sets the window size of the terminal behind fd (either side);
// the kernel signals the foreground process group (SIGWINCH). A zero size
// is left alone.
func SetSize(fd int, s runtime.TermSize) error {
	if s.Width == 0 && s.Height == 0 {
		return nil
	}
	ws := &unix.Winsize{Row: s.Height, Col: s.Width}
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws); err != nil {
		return os.NewSyscallError("ioctl(TIOCSWINSZ)", err)
	}
	return nil
}

// Send passes fd over the unix socket sock.
func Send(sock, fd int) error {
	if err := unix.Sendmsg(sock, []byte{0}, unix.UnixRights(fd), nil, 0); err != nil {
		return os.NewSyscallError("sendmsg pty master", err)
	}
	return nil
}

// ErrNoTerminal is a console socket closed without a terminal: the process
// ended before it made one.
var ErrNoTerminal = errors.New("the process sent no terminal")

// Receive reads the master that the process at the other end of sock sent
// and returns it as a pollable, close-on-exec file (so it can be read with
// deadlines and never leaks into a process started later). Anything but
// exactly one pty master is refused and closed.
func Receive(sock *os.File) (*os.File, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, os.NewSyscallError("recvmsg pty master", err)
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for i := range msgs {
			if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if n == 0 && len(fds) == 0 {
		return nil, ErrNoTerminal
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("console socket: %d descriptors received, want one pty master", len(fds))
	}
	if err := IsMaster(fds[0]); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, os.NewSyscallError("set pty master non-blocking", err)
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

// Pair returns a connected pair of unix sockets for passing a master: the
// caller keeps the first (pollable, for Receive) and hands the second to
// the process. Both are close-on-exec; the child gets its copy through
// os.StartProcess's file list.
func Pair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, os.NewSyscallError("set console socket non-blocking", err)
	}
	return os.NewFile(uintptr(fds[0]), "console-socket"), os.NewFile(uintptr(fds[1]), "console-socket"), nil
}

// BindDevConsole makes /dev/console the terminal behind slave (a bind
// mount, as runc does for a container with a terminal), for programs that
// write to the console. It runs in the container's fresh mount namespace
// after pivot_root, where /dev is the tmpfs the init made: nothing of the
// container has run there yet. No symlink is followed.
func BindDevConsole(slave int) error {
	dev, err := unix.Openat2(unix.AT_FDCWD, "/dev", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return &os.PathError{Op: "open", Path: "/dev", Err: err}
	}
	defer unix.Close(dev)
	target, err := unix.Openat(dev, "console", unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "create", Path: "/dev/console", Err: err}
	}
	defer unix.Close(target)
	tree, err := unix.OpenTree(slave, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return os.NewSyscallError("open_tree pty", err)
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "move_mount", Path: "/dev/console", Err: err}
	}
	return nil
}

// Resize sets the window size of the terminal whose master (or slave) is
// f, without taking f out of the poller (as f.Fd() would).
func Resize(f *os.File, s runtime.TermSize) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = SetSize(int(fd), s) }); err != nil {
		return err
	}
	return serr
}
