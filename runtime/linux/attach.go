package linux

import (
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/attach"
)

var _ runtime.Attacher = (*Runtime)(nil)

// errSessionDropped is a session the shim ended without the container
// exiting (the shim went away).
var errSessionDropped = errors.New("the shim closed the session")

// Attach implements runtime.Attacher: it connects to the attach socket of
// the container's shim (in the container's run directory) and relays the
// client's streams: the live output (not the log's history), input when
// the container was started with stdin, window sizes to its terminal. The
// session ends when ctx does, when the container exits, or when the
// client's input ends (as containerd's attach does), except that with
// stdinOnce and no terminal the end of the input closes the container's
// stdin and the output follows to the container's exit.
func (r *Runtime) Attach(ctx context.Context, id string, opts runtime.AttachOptions) error {
	rec, err := r.containerRecord(id)
	if err != nil {
		return fmt.Errorf("attach to container: %w", err)
	}
	if _, err := runningState(rec); err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	cfg := &rec.Config
	switch {
	case opts.TTY != cfg.TTY:
		return fmt.Errorf("attach to container %s: tty %v requested, the container has tty %v: %w", id, opts.TTY, cfg.TTY, runtime.ErrInvalidConfig)
	case opts.Stdin != nil && !cfg.Stdin:
		return fmt.Errorf("attach to container %s: input given, the container was not started with stdin: %w", id, runtime.ErrInvalidConfig)
	}
	conn, err := attach.Dial(rec.Dir)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
		// The shim removes its socket when the container exits; a shim
		// of an agent older than attach never made one.
		return fmt.Errorf("attach to container %s: its shim serves no attach socket (exited, or started by an older agent: restart the container): %w", id, runtime.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	defer conn.Close()
	// A blocked read or write ends when the connection closes.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	hello := attach.Hello{Version: attach.Version, Stdin: opts.Stdin != nil, Stdout: opts.Stdout != nil, Stderr: opts.Stderr != nil && !opts.TTY}
	if err := conn.WriteFrame(attach.TypeHello, hello.Marshal()); err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	typ, data, err := conn.ReadFrame()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("attach to container %s: %w", id, err)
	case typ == attach.TypeEnd && len(data) == 0:
		return nil // exited in between
	case typ == attach.TypeEnd:
		return fmt.Errorf("attach to container %s: %s", id, data)
	case typ != attach.TypeHello:
		return fmt.Errorf("attach to container %s: the shim answered with frame %q", id, typ)
	}
	done := make(chan struct{})
	defer close(done)
	inputEnded := make(chan struct{})
	if opts.Stdin != nil {
		followAfterInput := cfg.StdinOnce && !cfg.TTY
		go func() {
			buf := make([]byte, attach.MaxData)
			for {
				n, err := opts.Stdin.Read(buf)
				if n > 0 && conn.WriteFrame(attach.TypeInput, buf[:n]) != nil {
					return
				}
				if err != nil {
					break
				}
			}
			conn.WriteFrame(attach.TypeCloseInput, nil)
			if !followAfterInput {
				close(inputEnded)
			}
		}()
	}
	if opts.TTY {
		go forwardSizes(opts.Resize, done, func(size runtime.TermSize) error {
			return conn.WriteFrame(attach.TypeResize, attach.MarshalSize(size))
		})
	}
	result := make(chan error, 1)
	go func() { result <- relayOutput(conn, opts.Stdout, opts.Stderr) }()
	select {
	case err = <-result:
	case <-inputEnded:
		conn.Close()
		<-result
		err = nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	return nil
}

// forwardSizes applies each window size from resize until it closes, done
// closes or apply fails.
func forwardSizes(resize <-chan runtime.TermSize, done <-chan struct{}, apply func(runtime.TermSize) error) {
	for {
		select {
		case size, ok := <-resize:
			if !ok || apply(size) != nil {
				return
			}
		case <-done:
			return
		}
	}
}

// relayOutput copies the shim's output frames to the client's writers
// until the End frame: nil when the container exited, else the shim's
// reason.
func relayOutput(conn *attach.Conn, stdout, stderr io.Writer) error {
	for {
		typ, data, err := conn.ReadFrame()
		if errors.Is(err, io.EOF) {
			return errSessionDropped
		}
		if err != nil {
			return err
		}
		var w io.Writer
		switch typ {
		case attach.TypeStdout:
			w = stdout
		case attach.TypeStderr:
			w = stderr
		case attach.TypeEnd:
			if len(data) == 0 {
				return nil
			}
			return errors.New(string(data))
		}
		if w != nil {
			if _, err := w.Write(data); err != nil {
				return err
			}
		}
	}
}
