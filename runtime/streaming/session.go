package streaming

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Timeouts of a session, kubelet's defaults: an idle connection is closed
// after IdleTimeout (its --streaming-connection-idle-timeout), and a SPDY
// client has StreamCreationTimeout to open the streams it asked for.
var (
	IdleTimeout           = 4 * time.Hour
	StreamCreationTimeout = 30 * time.Second
)

// Remote command subprotocols.
const (
	protocolV5       = "v5.channel.k8s.io"
	protocolV4       = "v4.channel.k8s.io"
	protocolV4Base64 = "v4.base64.channel.k8s.io"
	protocolV3       = "v3.channel.k8s.io"
	protocolV2       = "v2.channel.k8s.io"
	protocolV1       = wsstream.ChannelWebSocketProtocol
	protocolV1Base64 = wsstream.Base64ChannelWebSocketProtocol
)

// SPDY's v5 is v4 in client-go, and v1 closes stdin at once (issue 13394):
// neither is offered.
var spdyProtocols = []string{protocolV4, protocolV3, protocolV2}

// Channel numbers of the WebSocket protocols. SPDY names its streams
// instead, by the streamType header: stdin, stdout, stderr, error, resize.
const (
	chanStdin = iota
	chanStdout
	chanStderr
	chanError
	chanResize
)

// session is an upgraded remote command connection. Streams the client did
// not ask for are nil.
type session struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	resize         io.Reader // a JSON object per size, or nil
	writeStatus    func(*Status) error
	close          func()
}

// upgrade opens r's session; its context ends when the client goes or
// the session is closed. On failure the client has its answer.
func upgrade(w http.ResponseWriter, r *http.Request, want Streams) (context.Context, *session, bool) {
	ctx, cancel, w := watchDisconnect(w, r)
	s, err := openSession(w, r, want, cancel)
	if err != nil {
		cancel()
		return nil, nil, false
	}
	end := s.close
	s.close = func() {
		end()
		cancel()
	}
	return ctx, s, true
}

// errAnswered means the upgrade failed and the response already says why.
var errAnswered = errors.New("upgrade refused")

// openSession upgrades the request to a WebSocket or SPDY session with the
// streams want. On failure the client has its answer. gone is called when
// the client ends the connection (a WebSocket's end is seen by the
// watched connection itself; a SPDY client says goodbye in a frame, after
// which nothing more is read).
func openSession(w http.ResponseWriter, r *http.Request, want Streams, gone func()) (*session, error) {
	if wsstream.IsWebSocketRequest(r) {
		return openWebSocket(w, r, want)
	}
	if !httpstream.IsUpgradeRequest(r) {
		refuse(w, http.StatusBadRequest, "BadRequest", "Upgrade request required: use a WebSocket (%s) or SPDY/3.1 (%s) client such as kubectl", protocolV5, protocolV4)
		return nil, errAnswered
	}
	return openSPDY(w, r, want, gone)
}

func openWebSocket(w http.ResponseWriter, r *http.Request, want Streams) (*session, error) {
	read := func(on bool) wsstream.ChannelType {
		if on {
			return wsstream.ReadChannel
		}
		return wsstream.IgnoreChannel
	}
	write := func(on bool) wsstream.ChannelType {
		if on {
			return wsstream.WriteChannel
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		chanStdin: read(want.Stdin), chanStdout: write(want.Stdout), chanStderr: write(want.Stderr),
		chanError: wsstream.WriteChannel, chanResize: wsstream.ReadChannel,
	}
	binary := wsstream.ChannelProtocolConfig{Binary: true, Channels: channels}
	base64 := wsstream.ChannelProtocolConfig{Binary: false, Channels: channels}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		"":               binary,
		protocolV1:       binary,
		protocolV1Base64: base64,
		protocolV4:       binary,
		protocolV4Base64: base64,
		protocolV5:       binary,
	})
	conn.SetIdleTimeout(IdleTimeout)
	proto, ch, err := conn.Open(w, r)
	if err != nil {
		return nil, errAnswered // the WebSocket server answered the handshake
	}
	// An empty message on the first channel the client reads tells it the
	// session is up, as the API server does.
	switch {
	case want.Stdout:
		_, _ = ch[chanStdout].Write(nil)
	case want.Stderr:
		_, _ = ch[chanStderr].Write(nil)
	default:
		_, _ = ch[chanError].Write(nil)
	}
	s := &session{resize: ch[chanResize], close: func() { conn.Close() }}
	// kubectl before 1.33 (client-go's WebSocket executor) starts reading
	// before it has made its streams, and drops what arrives for a stream
	// it does not have yet: the output and the exit status of a command
	// that ends at once could be lost ("Unknown stream id 3", exit 1
	// instead of the command's). Nothing is sent on the streams until the
	// client has had a moment to make them.
	open := time.Now().Add(webSocketStreamGrace)
	gated := func(w io.Writer) io.Writer { return gatedWriter{w: w, from: open} }
	if want.Stdin {
		s.stdin = ch[chanStdin]
	}
	if want.Stdout {
		s.stdout = gated(ch[chanStdout])
	}
	if want.Stderr {
		s.stderr = gated(ch[chanStderr])
	}
	switch proto {
	case protocolV5, protocolV4, protocolV4Base64:
		s.writeStatus = jsonStatus(gated(ch[chanError]))
	default:
		s.writeStatus = textStatus(gated(ch[chanError]))
	}
	return s, nil
}

// webSocketStreamGrace is how long after the handshake a WebSocket
// client gets to make its streams before anything is sent on them.
const webSocketStreamGrace = 50 * time.Millisecond

// gatedWriter holds writes until from.
type gatedWriter struct {
	w    io.Writer
	from time.Time
}

func (g gatedWriter) Write(p []byte) (int, error) {
	if d := time.Until(g.from); d > 0 {
		time.Sleep(d)
	}
	return g.w.Write(p)
}

func openSPDY(w http.ResponseWriter, r *http.Request, want Streams, gone func()) (*session, error) {
	proto, err := httpstream.Handshake(r, w, spdyProtocols)
	if err != nil {
		return nil, errAnswered
	}
	type arrival struct {
		stream    httpstream.Stream
		replySent <-chan struct{}
	}
	expected := map[string]bool{"error": true, "stdin": want.Stdin, "stdout": want.Stdout, "stderr": want.Stderr,
		"resize": want.TTY && proto != protocolV2}
	count := 0
	for _, on := range expected {
		if on {
			count++
		}
	}
	// The handler runs on the connection's frame loop: it must not block,
	// and streams beyond the expected ones are refused.
	arrivals := make(chan arrival, count)
	var mu sync.Mutex
	accepting := true
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, replySent <-chan struct{}) error {
		mu.Lock()
		defer mu.Unlock()
		if !accepting {
			return fmt.Errorf("stream %q after the session started", st.Headers().Get("streamType"))
		}
		select {
		case arrivals <- arrival{st, replySent}:
			return nil
		default:
			return fmt.Errorf("stream %q is one too many", st.Headers().Get("streamType"))
		}
	})
	if conn == nil {
		return nil, errAnswered
	}
	conn.SetIdleTimeout(IdleTimeout)
	go func() {
		<-conn.CloseChan()
		gone()
	}()
	fail := func(err error) (*session, error) {
		conn.Close()
		return nil, err
	}
	got := map[string]httpstream.Stream{}
	timeout := time.NewTimer(StreamCreationTimeout)
	defer timeout.Stop()
	for len(got) < count {
		select {
		case a := <-arrivals:
			kind := a.stream.Headers().Get("streamType")
			if !expected[kind] || got[kind] != nil {
				return fail(fmt.Errorf("client opened an unexpected %q stream", kind))
			}
			got[kind] = a.stream
			select {
			case <-a.replySent:
			case <-timeout.C:
				return fail(errors.New("timed out replying to the client's streams"))
			}
		case <-timeout.C:
			return fail(fmt.Errorf("timed out after %s waiting for the client to open its streams", StreamCreationTimeout))
		case <-conn.CloseChan():
			return fail(errors.New("client closed the connection while opening streams"))
		}
	}
	mu.Lock()
	accepting = false
	mu.Unlock()
	s := &session{close: func() {
		// Half-close what we wrote on, so the client reads to a clean end,
		// then tear the connection down.
		for _, kind := range []string{"stdout", "stderr", "error"} {
			if st := got[kind]; st != nil {
				st.Close()
			}
		}
		conn.Close()
	}}
	if st := got["stdin"]; st != nil {
		s.stdin = st
	}
	if st := got["stdout"]; st != nil {
		s.stdout = st
	}
	if st := got["stderr"]; st != nil {
		s.stderr = st
	}
	if st := got["resize"]; st != nil {
		s.resize = st
	}
	if proto == protocolV4 {
		s.writeStatus = jsonStatus(got["error"])
	} else {
		s.writeStatus = textStatus(got["error"])
	}
	return s, nil
}

// jsonStatus writes the Status itself (v4 and later), whatever it says.
func jsonStatus(w io.Writer) func(*Status) error {
	return func(st *Status) error {
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
}

// textStatus writes only a failure's message (before v4): the client
// takes any text as an error, and silence as success.
func textStatus(w io.Writer) func(*Status) error {
	return func(st *Status) error {
		if st.Status == StatusSuccess {
			return nil
		}
		_, err := io.WriteString(w, st.Message)
		return err
	}
}

// sizes decodes the resize stream for the runtime until it ends. Without a
// terminal, nil: the stream is read and dropped, since a client's unread
// stream stalls the others behind it. For the same reason the channel
// never blocks the decoder: it holds the latest size, and a size the
// runtime has not taken yet is replaced by a newer one.
func (s *session) sizes(tty bool) <-chan runtime.TermSize {
	if s.resize == nil {
		return nil
	}
	if !tty {
		go io.Copy(io.Discard, s.resize)
		return nil
	}
	ch := make(chan runtime.TermSize, 1)
	go func() {
		defer close(ch)
		dec := json.NewDecoder(s.resize)
		for {
			var size struct{ Width, Height uint16 }
			if err := dec.Decode(&size); err != nil {
				return
			}
			select {
			case <-ch: // not taken yet: the newer size wins
			default:
			}
			ch <- runtime.TermSize{Width: size.Width, Height: size.Height}
		}
	}()
	return ch
}
