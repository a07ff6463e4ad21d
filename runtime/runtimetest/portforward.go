package runtimetest

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// testPortForward: a stream reaches a port inside the sandbox both ways,
// with the client's half-close; an unreachable port, a bad port and a
// missing sandbox are errors; the stream is closed whatever happened.
func testPortForward(t *testing.T, h Harness, env *Env) {
	rt := env.Open()
	pf, ok := rt.(runtime.PortForwarder)
	if !ok || env.ServeHTTP == nil {
		return // the ability is optional; an implementation without it claims none of this
	}
	ctx := context.Background()
	sb := containerSandbox(t, env, rt, "forwarded")
	const port = 8080
	env.ServeHTTP(t, rt, sb, port)

	// The server may take a moment to listen: a few refusals are allowed
	// (a bound on a broken test, not a timing).
	var answer string
	var err error
	for i := 0; i < 100; i++ {
		var s *stream
		s, answer, err = forwardOnce(ctx, pf, sb.ID, port, "GET / HTTP/1.0\r\n\r\n")
		if !s.closed.Load() {
			t.Errorf("PortForward returned without closing the stream (%v)", err)
		}
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !strings.HasPrefix(answer, "HTTP/1.") {
		t.Fatalf("forward to port %d: %v, answer %q", port, err, answer)
	}
	for _, tc := range []struct {
		id   string
		port int32
		kind error
	}{
		{sb.ID, port + 1, nil}, // nothing listens
		{sb.ID, 0, runtime.ErrInvalidConfig},
		{sb.ID, 70000, runtime.ErrInvalidConfig},
		{"no-such-sandbox", port, runtime.ErrNotFound},
	} {
		s, _, err := forwardOnce(ctx, pf, tc.id, tc.port, "")
		if err == nil || (tc.kind != nil && !errors.Is(err, tc.kind)) {
			t.Errorf("PortForward(%s, %d) = %v; want an error of kind %v", tc.id, tc.port, err, tc.kind)
		}
		if !s.closed.Load() {
			t.Errorf("PortForward(%s, %d) returned without closing the stream", tc.id, tc.port)
		}
	}
	mustRemove(t, rt, sb.ID)
	if s, _, err := forwardOnce(ctx, pf, sb.ID, port, ""); !errors.Is(err, runtime.ErrNotFound) || !s.closed.Load() {
		t.Errorf("PortForward to a removed sandbox = %v; want ErrNotFound", err)
	}
}

// forwardOnce sends request through a forward, half-closes, and returns
// what came back and how the forward ended.
func forwardOnce(ctx context.Context, pf runtime.PortForwarder, id string, port int32, request string) (*stream, string, error) {
	client, server := net.Pipe()
	s := &stream{Conn: server, in: strings.NewReader(request)}
	read := make(chan []byte, 1)
	go func() {
		answer, _ := io.ReadAll(client)
		read <- answer
	}()
	err := pf.PortForward(ctx, id, port, s)
	closed := s.closed.Load()
	server.Close() // whatever PortForward did, the reader ends
	client.Close()
	s.closed.Store(closed)
	return s, string(<-read), err
}

// stream is the client's side as a runtime sees it: the request, then the
// end of input (a half-close); what the runtime writes goes to the pipe.
type stream struct {
	net.Conn
	in     io.Reader
	closed atomic.Bool
}

func (s *stream) Read(p []byte) (int, error) { return s.in.Read(p) }
func (s *stream) Close() error {
	s.closed.Store(true)
	return s.Conn.Close()
}
