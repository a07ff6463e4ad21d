package api

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// The exec stream. After a POST to .../exec answered with 101 Switching
// Protocols, both sides exchange frames: one byte naming the stream, four
// bytes of big-endian length, the payload. The client sends stdin (an empty
// frame is end of input); the server sends stdout, stderr and, last, the
// exit frame whose payload is the decimal exit code or "error: message".
const (
	StreamStdin  byte = 0
	StreamStdout byte = 1
	StreamStderr byte = 2
	StreamExit   byte = 3

	upgradeProto = "pelagos-exec"
	maxFrame     = 1 << 20
)

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, stream byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("exec stream: frame of %d bytes exceeds %d", n, maxFrame)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// frameWriter turns writes into frames of one stream; frames of the two
// output streams share a connection, hence the lock.
type frameWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	stream byte
}

func (f frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for off := 0; off < len(p); off += maxFrame {
		end := min(len(p), off+maxFrame)
		if err := WriteFrame(f.w, f.stream, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	key := runtime.PodKey{Namespace: r.PathValue("ns"), Name: r.PathValue("name")}
	q := r.URL.Query()
	cmd := q["command"]
	if len(cmd) == 0 {
		writeError(w, http.StatusBadRequest, "BadRequest", "exec: no command given")
		return
	}
	if r.Header.Get("Upgrade") != upgradeProto {
		writeError(w, http.StatusBadRequest, "BadRequest", "exec: needs Upgrade: %s", upgradeProto)
		return
	}
	c, err := s.Kube.Resolve(r.Context(), key.Namespace, key.Name, q.Get("container"))
	if err != nil {
		kubeapi.WriteError(w, err)
		return
	}
	if !c.Running {
		writeError(w, http.StatusConflict, "Conflict", "container %s/%s is not running", key, c.Container)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, http.StatusInternalServerError, "InternalError", "exec: connection cannot be upgraded")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", upgradeProto)
	if err := brw.Flush(); err != nil {
		return
	}
	var mu sync.Mutex
	out := bufio.NewWriter(conn)
	flushing := func(stream byte) io.Writer {
		return writerFunc(func(p []byte) (int, error) {
			n, err := frameWriter{mu: &mu, w: out, stream: stream}.Write(p)
			mu.Lock()
			if err == nil {
				err = out.Flush()
			}
			mu.Unlock()
			return n, err
		})
	}
	opts := runtime.ExecOptions{Cmd: cmd, TTY: boolParam(r, "tty"), Stdout: flushing(StreamStdout), Stderr: flushing(StreamStderr)}
	if boolParam(r, "stdin") {
		pr, pw := io.Pipe()
		opts.Stdin = pr
		go func() {
			for {
				st, p, err := ReadFrame(brw.Reader)
				if err != nil || (st == StreamStdin && len(p) == 0) {
					pw.Close()
					return
				}
				if st == StreamStdin {
					if _, err := pw.Write(p); err != nil {
						return
					}
				}
			}
		}()
		defer pr.Close()
	}
	exit, err := s.Runtime.Exec(r.Context(), c.ContainerID, opts)
	payload := strconv.Itoa(exit)
	if err != nil {
		payload = "error: " + err.Error()
		s.Log.Warn().Err(err).Str("pod", key.String()).Str("container", c.Container).Msg("exec failed")
	}
	mu.Lock()
	_ = WriteFrame(out, StreamExit, []byte(payload))
	_ = out.Flush()
	mu.Unlock()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// ErrExecFailed wraps a failure to run the command at all (as opposed to
// the command exiting non-zero).
var ErrExecFailed = errors.New("exec failed")

func boolParam(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}
