package fake

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/internal/forward"
)

var (
	_ runtime.Attacher      = (*Runtime)(nil)
	_ runtime.PortForwarder = (*Runtime)(nil)
)

// console is a container's main process as attach clients see it: what it
// prints goes to every attached client (Output), what clients type is kept
// (Input), and a container started with tty gets a terminal's echo.
type console struct {
	tty, stdin, stdinOnce bool
	stdinClosed           bool // by the end of the first attach's input, with stdinOnce
	input                 []byte
	sessions              map[*session]struct{}
	done                  chan struct{} // closed when the container exits or goes
}

// session is one attached client.
type session struct {
	stdout, stderr io.Writer
	term           *terminal // with tty
}

func newConsole(cfg *runtime.ContainerConfig) *console {
	return &console{tty: cfg.TTY, stdin: cfg.Stdin, stdinOnce: cfg.StdinOnce,
		sessions: map[*session]struct{}{}, done: make(chan struct{})}
}

// endConsole releases the container's attached clients. The caller holds
// f.mu.
func (f *Runtime) endConsole(id string) {
	if con, ok := f.consoles[id]; ok {
		select {
		case <-con.done:
		default:
			close(con.done)
		}
	}
}

// Output simulates the container's main process writing p to its stdout
// (or stderr): every attached client receives it. Output with nobody
// attached is lost, as on a real node.
func (f *Runtime) Output(id string, stderr bool, p []byte) error {
	f.mu.Lock()
	con, ok := f.consoles[id]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("output of container %s: %w", id, runtime.ErrNotFound)
	}
	sessions := make([]*session, 0, len(con.sessions))
	for s := range con.sessions {
		sessions = append(sessions, s)
	}
	f.mu.Unlock()
	for _, s := range sessions {
		switch {
		case s.term != nil:
			_, _ = s.term.write(p)
		case stderr:
			_, _ = s.stderr.Write(p)
		default:
			_, _ = s.stdout.Write(p)
		}
	}
	return nil
}

// Input returns what attached clients sent to the container's stdin, after
// the terminal's line discipline for a tty container.
func (f *Runtime) Input(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if con, ok := f.consoles[id]; ok {
		return string(con.input)
	}
	return ""
}

// Attached reports how many clients are attached to the container.
func (f *Runtime) Attached(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if con, ok := f.consoles[id]; ok {
		return len(con.sessions)
	}
	return 0
}

// TermSize reports the last terminal size an exec or attach client of the
// container sent, and whether one was sent at all.
func (f *Runtime) TermSize(id string) (runtime.TermSize, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sizes[id]
	return s, ok
}

// recordSizes keeps the sizes arriving on src for TermSize and, when
// forward is set, passes them on to the returned channel without ever
// blocking: like a real terminal's, the size is set whether or not the
// program looks, so a program that does not read them loses old ones. It
// drains src to its end, then closes the returned channel.
func (f *Runtime) recordSizes(id string, src <-chan runtime.TermSize, forward bool) <-chan runtime.TermSize {
	var out chan runtime.TermSize
	if forward {
		out = make(chan runtime.TermSize, 8)
	}
	go func() {
		if out != nil {
			defer close(out)
		}
		for s := range src {
			f.mu.Lock()
			f.sizes[id] = s
			f.mu.Unlock()
			select {
			case out <- s:
			default:
			}
		}
	}()
	return out
}

// withTerminal puts a terminal between an exec client and the program:
// echo and line discipline on input, ONLCR on output, and sizes recorded.
// The returned function ends the session's helpers.
func (f *Runtime) withTerminal(id string, opts runtime.ExecOptions) (runtime.ExecOptions, func()) {
	out := opts.Stdout
	if out == nil {
		out = io.Discard
	}
	term := newTerminal(out)
	opts.Stdout = writerFunc(term.write)
	opts.Stderr = opts.Stdout
	if opts.Resize != nil {
		opts.Resize = f.recordSizes(id, opts.Resize, true)
	}
	var pr *io.PipeReader
	if opts.Stdin != nil {
		var pw *io.PipeWriter
		pr, pw = io.Pipe()
		go feed(opts.Stdin, pw, term)
		opts.Stdin = pr
	}
	return opts, func() {
		if pr != nil {
			pr.Close()
		}
	}
}

// feed copies a client's keystrokes through the terminal to the program
// until the client's input or the program's ends, or ^D.
func feed(src io.Reader, dst *io.PipeWriter, term *terminal) {
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			data, eof := term.input(buf[:n])
			if len(data) > 0 {
				_, _ = term.write(data) // the echo comes before any answer
				if _, werr := dst.Write(data); werr != nil {
					return
				}
			}
			if eof {
				dst.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// Attach implements runtime.Attacher. The TTY must match the container's
// (a running process cannot gain or lose its terminal), and input is only
// accepted by a container started with stdin; with stdinOnce, the end of
// the first client's input closes the container's stdin for good. Attach
// returns when the container exits or goes, or ctx ends.
func (f *Runtime) Attach(ctx context.Context, id string, opts runtime.AttachOptions) error {
	f.mu.Lock()
	if fl := f.call(OpAttach, id); fl != nil {
		f.mu.Unlock()
		return fl.Err
	}
	c, ok := f.containers[id]
	con := f.consoles[id]
	switch {
	case !ok || con == nil:
		f.mu.Unlock()
		return fmt.Errorf("attach to container %s: %w", id, runtime.ErrNotFound)
	case c.State != runtime.ContainerRunning:
		f.mu.Unlock()
		return fmt.Errorf("attach to container %s: container is %s: %w", id, c.State, runtime.ErrConflict)
	case opts.TTY != con.tty:
		f.mu.Unlock()
		return fmt.Errorf("attach to container %s: tty %v requested, container has tty %v: %w", id, opts.TTY, con.tty, runtime.ErrInvalidConfig)
	case opts.Stdin != nil && !con.stdin:
		f.mu.Unlock()
		return fmt.Errorf("attach to container %s: input given, container was not started with stdin: %w", id, runtime.ErrInvalidConfig)
	}
	s := &session{stdout: orDiscard(opts.Stdout), stderr: orDiscard(opts.Stderr)}
	if con.tty {
		s.term = newTerminal(s.stdout)
	}
	con.sessions[s] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(con.sessions, s)
		f.mu.Unlock()
	}()
	if opts.TTY && opts.Resize != nil {
		f.recordSizes(id, opts.Resize, false) // the simulated process has no use for them
	}
	if opts.Stdin != nil {
		go f.readAttachInput(id, con, opts.Stdin)
	}
	select {
	case <-con.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readAttachInput keeps what a client types as the container's input; on
// a tty container the echo reaches every attached client, as a terminal's
// output does.
func (f *Runtime) readAttachInput(id string, con *console, src io.Reader) {
	buf := make([]byte, 4096)
	var disc terminal
	for {
		n, err := src.Read(buf)
		data, eof := buf[:n], false
		if con.tty && n > 0 {
			data, eof = disc.input(data)
			_ = f.Output(id, false, data)
		}
		f.mu.Lock()
		if con.stdinClosed {
			f.mu.Unlock()
			return
		}
		con.input = append(con.input, data...)
		if (err != nil || eof) && con.stdinOnce {
			con.stdinClosed = true
		}
		f.mu.Unlock()
		if err != nil || eof {
			return
		}
	}
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// ServePort makes connections forwarded to port of the sandbox reach addr
// (a server of the test, on loopback), as if a process in the pod listened
// on that port.
func (f *Runtime) ServePort(sandboxID string, port int32, addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ports[sandboxID] == nil {
		f.ports[sandboxID] = map[int32]string{}
	}
	f.ports[sandboxID][port] = addr
}

// PortForward implements runtime.PortForwarder: a port nobody serves
// (ServePort) is refused, as a real pod's would be. The stream is closed
// when PortForward returns, whatever happened.
func (f *Runtime) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	return forward.Join(ctx, stream, func() (net.Conn, error) { return f.dialPort(ctx, sandboxID, port) })
}

func (f *Runtime) dialPort(ctx context.Context, sandboxID string, port int32) (net.Conn, error) {
	f.mu.Lock()
	if fl := f.call(OpPortForward, sandboxID); fl != nil {
		f.mu.Unlock()
		return nil, fl.Err
	}
	sb, ok := f.sandboxes[sandboxID]
	addr, served := f.ports[sandboxID][port]
	f.mu.Unlock()
	switch {
	case port < 1 || port > 65535:
		return nil, fmt.Errorf("port-forward to sandbox %s: port %d is not in 1-65535: %w", sandboxID, port, runtime.ErrInvalidConfig)
	case !ok:
		return nil, fmt.Errorf("port-forward to sandbox %s: %w", sandboxID, runtime.ErrNotFound)
	case sb.State != runtime.SandboxReady:
		return nil, fmt.Errorf("port-forward to sandbox %s: not ready (%s): %w", sandboxID, sb.Reason, runtime.ErrConflict)
	case !served:
		return nil, fmt.Errorf("port-forward to sandbox %s: dial tcp 127.0.0.1:%d: connect: connection refused", sandboxID, port)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("port-forward to sandbox %s port %d: %w", sandboxID, port, err)
	}
	return conn, nil
}
