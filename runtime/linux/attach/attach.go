// Package attach is the protocol between the agent and the attach socket a
// shim serves for its container: a SOCK_SEQPACKET unix socket in the
// container's run directory, on which each message is one frame, a type
// byte followed by its data. The client (the agent) opens with a Hello
// saying which streams it wants, the shim answers with a Hello saying what
// the container has (a terminal, stdin); then the client sends input and
// window sizes and the shim sends the container's live output, and an End
// frame when the container exits or the session is dropped.
//
// It uses raw sockets, not package net: the shim is a small helper binary
// (cmd/pelagos-helper's TestHelperDependencies).
package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// SocketName is the socket's name in the container's run directory.
const SocketName = "attach.sock"

// Version is the protocol version a Hello carries. A shim outlives agent
// upgrades, so a new agent must keep speaking to older shims: a change
// that is not backward compatible takes a new version, and the shim
// answers a version it does not know with an End frame.
const Version = 1

// Frame types.
const (
	TypeHello      = 'H' // both ways: Hello.Marshal
	TypeInput      = 'i' // client: bytes for the container's stdin (or terminal)
	TypeCloseInput = 'c' // client: its input ended
	TypeResize     = 'r' // client: window size (MarshalSize)
	TypeStdout     = 'o' // shim: output (all of a terminal's)
	TypeStderr     = 'e' // shim: error output (never with a terminal)
	TypeEnd        = 'z' // shim: no data when the container exited, else why the session ended
)

// MaxData is the most data one frame carries; writers split longer data.
const MaxData = 32 << 10

// Hello opens a session. The client sets Stdin, Stdout and Stderr to the
// streams it attaches; the shim answers with TTY and Stdin set to what the
// container has.
type Hello struct {
	Version                    byte
	TTY, Stdin, Stdout, Stderr bool
}

const (
	flagTTY = 1 << iota
	flagStdin
	flagStdout
	flagStderr
)

// Marshal encodes h as a frame's data.
func (h Hello) Marshal() []byte {
	var f byte
	for _, b := range []struct {
		on   bool
		flag byte
	}{{h.TTY, flagTTY}, {h.Stdin, flagStdin}, {h.Stdout, flagStdout}, {h.Stderr, flagStderr}} {
		if b.on {
			f |= b.flag
		}
	}
	return []byte{h.Version, f}
}

// ParseHello decodes a Hello frame's data.
func ParseHello(b []byte) (Hello, error) {
	if len(b) < 2 {
		return Hello{}, fmt.Errorf("attach: hello of %d bytes", len(b))
	}
	f := b[1]
	return Hello{Version: b[0], TTY: f&flagTTY != 0, Stdin: f&flagStdin != 0, Stdout: f&flagStdout != 0, Stderr: f&flagStderr != 0}, nil
}

// MarshalSize encodes a window size as a resize frame's data.
func MarshalSize(s runtime.TermSize) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, s.Width)
	binary.BigEndian.PutUint16(b[2:], s.Height)
	return b
}

// ParseSize decodes a resize frame's data.
func ParseSize(b []byte) (runtime.TermSize, bool) {
	if len(b) != 4 {
		return runtime.TermSize{}, false
	}
	return runtime.TermSize{Width: binary.BigEndian.Uint16(b), Height: binary.BigEndian.Uint16(b[2:])}, true
}

// Conn is one end of an attach session. Reads must come from one
// goroutine; writes may come from several.
type Conn struct {
	f    *os.File
	rbuf []byte
	wmu  sync.Mutex
	wbuf []byte
}

func newConn(fd int) (*Conn, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("set attach socket non-blocking", err)
	}
	// Pollable: reads and writes park the goroutine, not a thread.
	return &Conn{f: os.NewFile(uintptr(fd), SocketName), rbuf: make([]byte, 1+MaxData+1)}, nil
}

// ReadFrame returns the next frame; data is valid until the next call. A
// closed peer is io.EOF.
func (c *Conn) ReadFrame() (typ byte, data []byte, err error) {
	n, err := c.f.Read(c.rbuf)
	if n == 0 && (err == nil || err == io.EOF) {
		// Every frame has its type byte: an empty read is the peer gone.
		return 0, nil, io.EOF
	}
	if err != nil {
		return 0, nil, err
	}
	if n == len(c.rbuf) {
		return 0, nil, errors.New("attach: frame larger than the protocol allows")
	}
	return c.rbuf[0], c.rbuf[1:n], nil
}

// WriteFrame sends data as frames of type typ, split at MaxData (a frame
// without data is sent as is).
func (c *Conn) WriteFrame(typ byte, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for first := true; first || len(data) > 0; first = false {
		chunk := data[:min(len(data), MaxData)]
		data = data[len(chunk):]
		c.wbuf = append(append(c.wbuf[:0], typ), chunk...)
		if _, err := c.f.Write(c.wbuf); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the connection; a read or write blocked on it returns.
func (c *Conn) Close() error { return c.f.Close() }

// Listener is the shim's end: the bound, listening socket.
type Listener struct {
	f    *os.File
	path string
}

// socketPath names the socket below an open directory: a run root can be
// deeper than a socket address (108 bytes) allows, the directory's
// descriptor through /proc never is.
func socketPath(dirfd int) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + SocketName
}

func openDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// Listen serves the attach socket in dir (the container's run directory,
// root's and 0700), readable and writable by root only.
func Listen(dir string) (*Listener, error) {
	dirfd, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	path := filepath.Join(dir, SocketName)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: socketPath(dirfd)}); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "bind", Path: path, Err: err}
	}
	if err := unix.Fchmodat(dirfd, SocketName, 0o600, 0); err != nil {
		unix.Close(fd)
		unix.Unlinkat(dirfd, SocketName, 0)
		return nil, &os.PathError{Op: "chmod", Path: path, Err: err}
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		unix.Unlinkat(dirfd, SocketName, 0)
		return nil, &os.PathError{Op: "listen", Path: path, Err: err}
	}
	return &Listener{f: os.NewFile(uintptr(fd), path), path: path}, nil
}

// Accept waits for the next client. After Close it returns an error
// matching os.ErrClosed.
func (l *Listener) Accept() (*Conn, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var aerr error
	if err := rc.Read(func(fd uintptr) bool {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
		return aerr != unix.EAGAIN
	}); err != nil {
		// Only the listener's closing stops the wait.
		return nil, &os.PathError{Op: "accept", Path: l.path, Err: os.ErrClosed}
	}
	if aerr != nil {
		return nil, &os.PathError{Op: "accept", Path: l.path, Err: aerr}
	}
	return newConn(nfd)
}

// Close stops accepting and removes the socket.
func (l *Listener) Close() error {
	os.Remove(l.path)
	return l.f.Close()
}

// Dial connects to the attach socket in dir.
func Dial(dir string) (*Conn, error) {
	dirfd, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: socketPath(dirfd)}); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "connect", Path: filepath.Join(dir, SocketName), Err: err}
	}
	return newConn(fd)
}
