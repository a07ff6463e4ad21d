package shim

import (
	"errors"
	"os"
	"sync"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/attach"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/console"
)

// sessionQueue bounds the output queued for one attach client. The
// container is never slowed down by a client: one that falls this far
// behind is dropped (its session ends with a message) rather than made to
// hold the shim's memory or the workload's writes.
const sessionQueue = 1 << 20

// finishWait bounds how long the shim, once its container has exited,
// waits for attach clients to take the end of the output.
const finishWait = time.Second

// stdio is the container's stdio as attach clients see it: live output
// fanned out to every session, input from any of them, window sizes. It
// never blocks the workload or the log; only a session's own goroutines
// wait for its client.
type stdio struct {
	tty, stdin, stdinOnce bool
	ln                    *attach.Listener

	mu       sync.Mutex
	sessions map[*session]struct{}
	// in is where input goes: the terminal's master, or the write end of
	// the stdin pipe; nil without stdin, or once stdinOnce closed it.
	in *os.File
	// master is the terminal, for window sizes.
	master *os.File
	done   bool
}

func newStdio(dir string, cfg *runtime.ContainerConfig) (*stdio, error) {
	ln, err := attach.Listen(dir)
	if err != nil {
		return nil, err
	}
	s := &stdio{tty: cfg.TTY, stdin: cfg.Stdin, stdinOnce: cfg.StdinOnce, ln: ln, sessions: map[*session]struct{}{}}
	go s.serve()
	return s, nil
}

// setInput installs the process's input (the master or the write end of
// the stdin pipe; nil without stdin) and, with a terminal, the master for
// window sizes.
func (s *stdio) setInput(in, master *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.in, s.master = in, master
}

func (s *stdio) serve() {
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors, or a client gone before its accept:
			// the next client may fare better.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go s.session(c)
	}
}

// session runs one client: the hello, then its input until it goes.
func (s *stdio) session(c *attach.Conn) {
	typ, data, err := c.ReadFrame()
	if err != nil || typ != attach.TypeHello {
		c.Close()
		return
	}
	h, err := attach.ParseHello(data)
	if err != nil || h.Version != attach.Version {
		c.WriteFrame(attach.TypeEnd, []byte("attach: protocol version not supported by this shim"))
		c.Close()
		return
	}
	ss := &session{c: c, stdout: h.Stdout, stderr: h.Stderr, input: h.Stdin && s.stdin,
		wake: make(chan struct{}, 1), gone: make(chan struct{})}
	ss.push(attach.TypeHello, attach.Hello{Version: attach.Version, TTY: s.tty, Stdin: s.stdin}.Marshal())
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		c.WriteFrame(attach.TypeEnd, nil)
		c.Close()
		return
	}
	s.sessions[ss] = struct{}{}
	s.mu.Unlock()
	go ss.writeLoop()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, ss)
		s.mu.Unlock()
		ss.end(nil)
		s.inputEnded(ss)
	}()
	for {
		typ, data, err := c.ReadFrame()
		if err != nil {
			return
		}
		switch typ {
		case attach.TypeInput:
			s.mu.Lock()
			in := s.in
			if !ss.input {
				in = nil
			}
			s.mu.Unlock()
			if in != nil {
				// Not under the lock: a workload that does not read its
				// input blocks this client only. A write racing stdinOnce's
				// close fails, as the input is closed by then.
				in.Write(data)
			}
		case attach.TypeCloseInput:
			s.inputEnded(ss)
		case attach.TypeResize:
			s.mu.Lock()
			m := s.master
			s.mu.Unlock()
			if size, ok := attach.ParseSize(data); ok && m != nil {
				console.Resize(m, size)
			}
		}
	}
}

// inputEnded is a session's input ending (its close frame, or the session
// ending). With stdinOnce and no terminal, the first session's input
// ending closes the container's stdin for good, as Kubernetes specifies;
// a terminal has no stdin of its own to close (containerd does the same).
func (s *stdio) inputEnded(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ss.input {
		return
	}
	ss.input = false
	if s.stdinOnce && !s.tty && s.in != nil {
		s.in.Close()
		s.in = nil
	}
}

// output returns a writer that copies what the process writes on a
// stream to every session that asked for it. It never fails and never
// blocks: it sits behind the log's reader (io.TeeReader).
func (s *stdio) output(typ byte) writerFunc {
	return func(p []byte) (int, error) {
		s.mu.Lock()
		for ss := range s.sessions {
			if (typ == attach.TypeStdout && ss.stdout) || (typ == attach.TypeStderr && ss.stderr) {
				if !ss.push(typ, p) {
					delete(s.sessions, ss)
					ss.end([]byte("attach: output dropped: the client is too slow"))
				}
			}
		}
		s.mu.Unlock()
		return len(p), nil
	}
}

// finish ends every session (the container exited, its output is all
// sent), stops accepting and removes the socket, waiting at most
// finishWait for clients to take what is queued.
func (s *stdio) finish() {
	s.ln.Close()
	s.mu.Lock()
	s.done = true
	var all []*session
	for ss := range s.sessions {
		all = append(all, ss)
	}
	clear(s.sessions)
	if s.in != nil && s.in != s.master {
		s.in.Close()
	}
	s.in = nil
	s.mu.Unlock()
	deadline := time.After(finishWait)
	for _, ss := range all {
		ss.end(nil)
		select {
		case <-ss.gone:
		case <-deadline:
		}
		ss.c.Close()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// session is one attached client: its queue of frames to send, which one
// goroutine writes to the client.
type session struct {
	c              *attach.Conn
	stdout, stderr bool
	input          bool // guarded by stdio.mu

	mu     sync.Mutex
	queue  []frame
	queued int
	ended  bool
	wake   chan struct{}
	gone   chan struct{} // closed when the write loop is done
}

type frame struct {
	typ  byte
	data []byte
}

// push queues a copy of data; false when the queue is over its bound.
func (ss *session) push(typ byte, data []byte) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return true
	}
	if ss.queued+len(data) > sessionQueue {
		return false
	}
	ss.queue = append(ss.queue, frame{typ, append([]byte(nil), data...)})
	ss.queued += len(data)
	ss.signal()
	return true
}

func (ss *session) signal() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// end queues the End frame (dropping queued output when there is a
// reason: the client fell behind) and lets the write loop finish.
func (ss *session) end(reason []byte) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return
	}
	if reason != nil {
		ss.queue, ss.queued = nil, 0
	}
	ss.queue = append(ss.queue, frame{attach.TypeEnd, reason})
	ss.ended = true
	ss.signal()
}

// writeLoop sends the queue to the client until the End frame is sent or
// the client is gone, then closes the connection.
func (ss *session) writeLoop() {
	defer close(ss.gone)
	defer ss.c.Close()
	for range ss.wake {
		ss.mu.Lock()
		q := ss.queue
		ss.queue, ss.queued = nil, 0
		ss.mu.Unlock()
		for _, f := range q {
			if err := ss.c.WriteFrame(f.typ, f.data); err != nil {
				return
			}
			if f.typ == attach.TypeEnd {
				return
			}
		}
	}
}
