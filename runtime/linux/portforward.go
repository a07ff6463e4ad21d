package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	goruntime "runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/internal/forward"
)

var _ runtime.PortForwarder = (*Runtime)(nil)

// PortForward implements runtime.PortForwarder: stream is joined to a TCP
// connection to port on the sandbox's loopback (127.0.0.1, then ::1), as
// kubelet's runtimes do, so a server bound to localhost only is reachable
// too. A hostNetwork sandbox's port is the host's. The stream is closed
// when PortForward returns, whatever happened.
func (r *Runtime) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	return forward.Join(ctx, stream, func() (net.Conn, error) { return r.dialSandboxPort(ctx, sandboxID, port) })
}

func (r *Runtime) dialSandboxPort(ctx context.Context, sandboxID string, port int32) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("port-forward to sandbox %s: port %d is not in 1-65535: %w", sandboxID, port, runtime.ErrInvalidConfig)
	}
	sb, err := r.GetSandbox(ctx, sandboxID)
	if err != nil {
		return nil, fmt.Errorf("port-forward: %w", err)
	}
	if sb.State != runtime.SandboxReady {
		return nil, fmt.Errorf("port-forward to sandbox %s: not ready (%s): %w", sandboxID, sb.Reason, runtime.ErrConflict)
	}
	nsPath := sb.NetNSPath
	if sb.Namespaces.Network == runtime.NamespaceNode {
		nsPath = ""
	}
	conn, err := dialLoopback(ctx, nsPath, int(port))
	if err != nil {
		return nil, fmt.Errorf("port-forward to sandbox %s: %w", sandboxID, err)
	}
	return conn, nil
}

// dialLoopback connects to port on the loopback of the network namespace
// pinned at nsPath ("" for the host's).
func dialLoopback(ctx context.Context, nsPath string, port int) (net.Conn, error) {
	var d net.Dialer
	dial := func(network, host string) (net.Conn, error) {
		return d.DialContext(ctx, network, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	if nsPath != "" {
		dial = func(network, host string) (net.Conn, error) {
			return dialInNetNS(ctx, nsPath, network, net.JoinHostPort(host, strconv.Itoa(port)))
		}
	}
	conn, err4 := dial("tcp4", "127.0.0.1")
	if err4 == nil {
		return conn, nil
	}
	conn, err6 := dial("tcp6", "::1")
	if err6 == nil {
		return conn, nil
	}
	return nil, errors.Join(err4, err6)
}

// dialInNetNS makes the connection from inside the network namespace
// pinned at nsPath. A socket belongs to the namespace it was created in,
// whoever uses it later; so one thread joins the namespace, dials, goes
// back, and is then thrown away: its goroutine ends still locked to it,
// which makes Go end the thread rather than return it to the pool that
// runs every other goroutine, even if going back failed.
func dialInNetNS(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		// No UnlockOSThread, on purpose: see above.
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: &os.PathError{Op: "open", Path: "/proc/thread-self/ns/net", Err: err}}
			return
		}
		defer unix.Close(home)
		if err := enterNetNS(nsPath); err != nil {
			ch <- result{err: err}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		// Back home before anyone hears of the result, so that no thread
		// is seen in the pod's namespace once the dial returned.
		if serr := unix.Setns(home, unix.CLONE_NEWNET); serr != nil && err == nil {
			conn.Close()
			conn, err = nil, os.NewSyscallError("setns back to the host's network namespace", serr)
		}
		ch <- result{conn, err}
	}()
	res := <-ch
	return res.conn, res.err
}

// enterNetNS moves the calling thread into the network namespace at path.
func enterNetNS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open namespace", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return &os.PathError{Op: "setns", Path: path, Err: err}
	}
	return nil
}
