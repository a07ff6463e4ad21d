package streaming

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
)

// watchDisconnect returns a context that ends when the client's connection
// does, and a writer to upgrade through. A hijacked connection is no
// longer watched by net/http, so without this a command whose client went
// away would run on, unseen, until it ended by itself.
func watchDisconnect(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc, http.ResponseWriter) {
	ctx, cancel := context.WithCancel(r.Context())
	return ctx, cancel, &watchedWriter{ResponseWriter: w, cancel: cancel}
}

// watchedWriter hands out the hijacked connection wrapped so that a failed
// read (the client closed or reset it) cancels the session. It has no
// Unwrap on purpose: upgraders that look for the original writer must
// hijack through this one.
type watchedWriter struct {
	http.ResponseWriter
	cancel context.CancelFunc
}

func (w *watchedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	wc := &watchedConn{Conn: conn, r: brw.Reader, cancel: w.cancel}
	return wc, bufio.NewReadWriter(bufio.NewReader(wc), brw.Writer), nil
}

// watchedConn reads through the buffer net/http already filled, so no
// byte the client sent right after its request is lost.
type watchedConn struct {
	net.Conn
	r      *bufio.Reader
	cancel context.CancelFunc
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil {
		c.cancel()
	}
	if errors.Is(err, net.ErrClosed) {
		// Closed by us at the session's end: for the reader still
		// blocked on it, that is the end of the stream, not a failure to
		// log (the WebSocket library logs anything but EOF).
		err = io.EOF
	}
	return n, err
}
