package streaming

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// ClientOptions are the local ends of a remote command session.
type ClientOptions struct {
	Stdin  io.Reader // nil: no input
	Stdout io.Writer
	Stderr io.Writer // unused with TTY
	TTY    bool
	// Resize, with TTY, sends window sizes; the first is the initial one.
	Resize <-chan runtime.TermSize
}

// Dialer opens the connection a session runs on (a unix socket, say).
type Dialer func(ctx context.Context) (net.Conn, error)

// Stream runs an exec or attach session with the server at rawURL (a ws://
// URL whose query says which streams to open: see Query) over v5.channel.k8s.io,
// and returns the remote command's exit code. It returns when the server
// ends the session or ctx ends. A refused request returns the server's
// message.
func Stream(ctx context.Context, dial Dialer, rawURL string, opts ClientOptions) (int, error) {
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		Subprotocols:   []string{protocolV5},
		// A message larger than the write buffer leaves in fragments, which
		// the server's WebSocket library (x/net, as in the API server) does
		// not reassemble: each stdin message must fit.
		WriteBufferSize: stdinChunk + 1,
	}
	ws, resp, err := d.DialContext(ctx, rawURL, nil)
	if err != nil {
		if resp != nil {
			return -1, refusal(resp)
		}
		return -1, err
	}
	defer ws.Close()
	if ws.Subprotocol() != protocolV5 {
		return -1, fmt.Errorf("server chose protocol %q, not %s", ws.Subprotocol(), protocolV5)
	}
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()

	var wmu sync.Mutex // one writer at a time on a WebSocket
	send := func(channel byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return ws.WriteMessage(websocket.BinaryMessage, append([]byte{channel}, p...))
	}
	if opts.TTY && opts.Resize != nil {
		// The initial size, when known, goes before any input.
		select {
		case size, ok := <-opts.Resize:
			if ok {
				if err := sendSize(send, size); err != nil {
					return -1, err
				}
			}
		default:
		}
		go func() {
			for size := range opts.Resize {
				if sendSize(send, size) != nil {
					return
				}
			}
		}()
	}
	if opts.Stdin != nil {
		go func() {
			buf := make([]byte, stdinChunk)
			for {
				n, err := opts.Stdin.Read(buf)
				if n > 0 && send(chanStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					// v5's half-close: the command sees the end of its input.
					_ = send(streamClose, []byte{chanStdin})
					return
				}
			}
		}()
	}
	var status []byte
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			break // the server ends the session by closing
		}
		if len(msg) == 0 {
			continue
		}
		var out io.Writer
		switch msg[0] {
		case chanStdout:
			out = opts.Stdout
		case chanStderr:
			out = opts.Stderr
		case chanError:
			status = append(status, msg[1:]...)
		}
		if out != nil && len(msg) > 1 {
			if _, err := out.Write(msg[1:]); err != nil {
				return -1, fmt.Errorf("write the command's output: %w", err)
			}
		}
	}
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	if len(status) == 0 {
		return -1, errors.New("the session ended without the command's exit status")
	}
	var st Status
	if err := json.Unmarshal(status, &st); err != nil {
		return -1, fmt.Errorf("stream status %q: %w", status, err)
	}
	return st.ExitCode()
}

const (
	// streamClose is v5's signal that a channel is closed by the client.
	streamClose = 255
	// stdinChunk bounds an input message.
	stdinChunk = 32 << 10
)

func sendSize(send func(byte, []byte) error, size runtime.TermSize) error {
	b, err := json.Marshal(struct{ Width, Height uint16 }{size.Width, size.Height})
	if err != nil {
		return err
	}
	return send(chanResize, b)
}

// refusal turns a failed upgrade's answer into an error carrying the
// server's message.
func refusal(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var st Status
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return errors.New(st.Message)
	}
	if len(body) > 0 {
		return fmt.Errorf("server refused the session: %s: %s", resp.Status, body)
	}
	return fmt.Errorf("server refused the session: %s", resp.Status)
}
