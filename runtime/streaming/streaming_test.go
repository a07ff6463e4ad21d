package streaming_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/streaming"
)

func (e *env) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", strings.TrimPrefix(e.srv.URL, "http://"))
}

func (e *env) wsURL(pod, sub string, q string) string {
	return "ws://" + strings.TrimPrefix(e.srv.URL, "http://") + "/api/v1/namespaces/default/pods/" + pod + "/" + sub + "?" + q
}

// TestClient runs the CLI's client against the handlers.
func TestClient(t *testing.T) {
	e := newEnv(t)
	web := e.addPod("web", runtime.ContainerConfig{Name: "app"})
	ctx := context.Background()
	execute := func(cmd []string, want streaming.Streams, opts streaming.ClientOptions) (int, error) {
		return streaming.Stream(ctx, e.dial, e.wsURL("web", "exec", streaming.Query("", cmd, want).Encode()), opts)
	}
	all := streaming.Streams{Stdout: true, Stderr: true}

	var out, errb bytes.Buffer
	code, err := execute([]string{"echo", "hi"}, all, streaming.ClientOptions{Stdout: &out, Stderr: &errb})
	if code != 0 || err != nil || out.String() != "hi\n" {
		t.Errorf("echo: %d %v %q", code, err, out.String())
	}
	code, err = execute([]string{"nope"}, all, streaming.ClientOptions{Stdout: &out, Stderr: &errb})
	if code != 127 || err != nil || !strings.Contains(errb.String(), `"nope": executable file not found`) {
		t.Errorf("missing command: %d %v %q", code, err, errb.String())
	}

	// stdin to its end: v5's half-close reaches cat as EOF.
	out.Reset()
	in := strings.Repeat("some input\n", 10000)
	code, err = execute([]string{"cat"}, streaming.Streams{Stdin: true, Stdout: true}, streaming.ClientOptions{Stdin: strings.NewReader(in), Stdout: &out})
	if code != 0 || err != nil || out.String() != in {
		t.Errorf("cat: %d %v, %d bytes back of %d", code, err, out.Len(), len(in))
	}

	// A terminal: the sizes reach the runtime, output comes with CR LF.
	resize := make(chan runtime.TermSize, 2)
	resize <- runtime.TermSize{Width: 100, Height: 30}
	out.Reset()
	code, err = execute([]string{"repl"}, streaming.Streams{Stdin: true, Stdout: true, TTY: true},
		streaming.ClientOptions{TTY: true, Stdin: strings.NewReader("x\r\x04"), Stdout: &out, Resize: resize})
	if code != 5 || err != nil || out.String() != "x\r\nyou said: x\r\n" {
		t.Errorf("repl with a terminal: %d %v %q", code, err, out.String())
	}
	eventually(t, "the size at the runtime", func() bool {
		s, _ := e.f.TermSize(web.containers[0].ID)
		return s == runtime.TermSize{Width: 100, Height: 30}
	})

	// 64 MiB: nothing on the way caps interactive output.
	var n countingWriter
	code, err = execute([]string{"blob", "64"}, all, streaming.ClientOptions{Stdout: &n})
	if code != 0 || err != nil || n.n != 64<<20 {
		t.Errorf("blob 64: %d %v, %d bytes", code, err, n.n)
	}

	// Refusals carry the server's message.
	for _, tc := range []struct{ pod, query, want string }{
		{"ghost", streaming.Query("", []string{"true"}, all).Encode(), `pods "ghost" not found`},
		{"web", streaming.Query("", nil, all).Encode(), "at least one command"},
		{"web", "command=true&stdout=maybe", `query parameter "stdout": "maybe" is not a boolean`},
		{"web", "command=true", "at least one of stdin, stdout, stderr"},
		{"web", "command=true&stdout=1&container=side", "container side is not valid"},
	} {
		if _, err := streaming.Stream(ctx, e.dial, e.wsURL(tc.pod, "exec", tc.query), streaming.ClientOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("exec %s?%s: %v; want %q", tc.pod, tc.query, err, tc.want)
		}
	}
	resp, err := http.Post(e.srv.URL+"/api/v1/namespaces/default/pods/web/exec?command=true&stdout=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Upgrade request required") {
		t.Errorf("plain POST: %s %s", resp.Status, body)
	}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// watchedRuntime reports how each Exec ended.
type watchedRuntime struct {
	runtime.Runtime
	ended chan error
}

func (w watchedRuntime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	code, err := w.Runtime.Exec(ctx, id, opts)
	w.ended <- err
	return code, err
}

// TestClientGoneEndsCommand: a client that goes away mid-command (kubectl
// killed, a laptop closed) ends the command, instead of leaving it running
// in the container with nobody to read it. The connection is hijacked, so
// net/http no longer notices the client leaving by itself.
func TestClientGoneEndsCommand(t *testing.T) {
	e := newEnv(t)
	e.addPod("web", runtime.ContainerConfig{Name: "app"})
	rt := watchedRuntime{Runtime: e.f, ended: make(chan error, 1)}
	srv := httptest.NewServer(streaming.ExecHandler(rt, e.resolve))
	defer srv.Close()
	for _, proto := range []string{"websocket", "spdy"} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			u := srv.URL + "/api/v1/namespaces/default/pods/web/exec?" + streaming.Query("", []string{"hang"}, streaming.Streams{Stdout: true}).Encode()
			if proto == "websocket" {
				dial := func(ctx context.Context) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "tcp", strings.TrimPrefix(srv.URL, "http://"))
				}
				streaming.Stream(ctx, dial, "ws"+strings.TrimPrefix(u, "http"), streaming.ClientOptions{Stdout: io.Discard})
				return
			}
			spdySession(ctx, t, u, "stdout")
		}()
		// The session is up once the command runs; then the client vanishes.
		time.Sleep(200 * time.Millisecond)
		select {
		case err := <-rt.ended:
			t.Fatalf("%s: exec ended before the client left: %v", proto, err)
		default:
		}
		cancel()
		select {
		case err := <-rt.ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: exec ended with %v; want the session's cancellation", proto, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the command still runs after its client left", proto)
		}
		<-done
	}
}

// TestOlderWebSocketProtocols speaks the protocols browsers and older
// clients use: base64 text frames, and errors as plain text before v4.
func TestOlderWebSocketProtocols(t *testing.T) {
	e := newEnv(t)
	e.addPod("web", runtime.ContainerConfig{Name: "app"})
	session := func(proto string, cmd ...string) map[byte]string {
		cfg, err := websocket.NewConfig(e.wsURL("web", "exec", streaming.Query("", cmd, streaming.Streams{Stdout: true, Stderr: true}).Encode()), "http://localhost")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Protocol = []string{proto}
		ws, err := websocket.DialConfig(cfg)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		defer ws.Close()
		got := map[byte]string{}
		for {
			var msg []byte
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return got
			}
			if len(msg) == 0 {
				continue
			}
			ch, data := msg[0], msg[1:]
			if strings.Contains(proto, "base64") {
				ch -= '0'
				data, err = base64.StdEncoding.DecodeString(string(data))
				if err != nil {
					t.Fatalf("%s: %q is not base64", proto, msg)
				}
			}
			got[ch] += string(data)
		}
	}
	got := session("v4.base64.channel.k8s.io", "echo", "hi")
	var st streaming.Status
	if err := json.Unmarshal([]byte(got[3]), &st); got[1] != "hi\n" || err != nil || st.Status != "Success" {
		t.Errorf("v4.base64: stdout %q status %q", got[1], got[3])
	}
	got = session("base64.channel.k8s.io", "exit", "2")
	if got[3] != "command terminated with non-zero exit code: exit status 2" {
		t.Errorf("base64.channel.k8s.io: error channel %q", got[3])
	}
	got = session("channel.k8s.io", "echo", "plain")
	if got[1] != "plain\n" || got[3] != "" {
		t.Errorf("channel.k8s.io: %q", got)
	}
}

// TestPortForwardWebSocketChannels: the WebSocket form with ?ports=, a
// data and an error channel per port, each opening with the port number.
func TestPortForwardWebSocketChannels(t *testing.T) {
	e := newEnv(t)
	web := e.addPod("web", runtime.ContainerConfig{Name: "app"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		c.Write(bytes.ToUpper(buf))
	}()
	e.f.ServePort(web.sandbox.ID, 8080, l.Addr().String())
	cfg, _ := websocket.NewConfig(e.wsURL("web", "portforward", "ports=8080"), "http://localhost")
	cfg.Protocol = []string{"v4.channel.k8s.io"}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	recv := func() []byte {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			t.Fatal(err)
		}
		return msg
	}
	for range 2 { // data and error channels announce their port
		if msg := recv(); len(msg) != 3 || binary.LittleEndian.Uint16(msg[1:]) != 8080 {
			t.Fatalf("port announcement %v", msg)
		}
	}
	if err := websocket.Message.Send(ws, append([]byte{0}, "hello"...)); err != nil {
		t.Fatal(err)
	}
	if msg := recv(); string(msg) != "\x00HELLO" {
		t.Errorf("through the forward: %q", msg)
	}
}

// spdySession opens a v4.channel.k8s.io session over SPDY with an error
// stream and the given ones, and holds it until ctx ends, then drops the
// connection as a killed client would.
func spdySession(ctx context.Context, t *testing.T, u string, streams ...string) {
	rt, err := spdy.NewRoundTripper(nil)
	if err != nil {
		t.Error(err)
		return
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	req.Header.Set(httpstream.HeaderProtocolVersion, "v4.channel.k8s.io")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Error(err)
		return
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	for _, kind := range append([]string{"error"}, streams...) {
		if _, err := conn.CreateStream(http.Header{"Streamtype": {kind}}); err != nil {
			t.Error(err)
			return
		}
	}
	<-ctx.Done()
}

// TestWebSocketStreamsWaitForTheClient: a client as kubectl before 1.33
// is — reading from the moment of the handshake, before it has made its
// streams — must not be sent a command's output or exit status in that
// moment, or it drops them ("Unknown stream id 3") and reports exit 1
// for a command that exited 42. Nothing but the opening empty message
// arrives in the first webSocketStreamGrace (50 ms).
func TestWebSocketStreamsWaitForTheClient(t *testing.T) {
	e := newEnv(t)
	e.addPod("web", runtime.ContainerConfig{Name: "app"})
	cfg, err := websocket.NewConfig(e.wsURL("web", "exec", streaming.Query("", []string{"exit", "42"}, streaming.Streams{Stdout: true, Stderr: true}).Encode()), "http://localhost")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{"v5.channel.k8s.io"}
	// Taken before the dial, so that the time measured can only be longer
	// than the server's since its handshake: a slow machine cannot make
	// the check below fail, only a server that sends early.
	opened := time.Now()
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var status []byte
	for status == nil {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			t.Fatalf("no exit status: %v", err)
		}
		if len(msg) <= 1 {
			continue // the opening empty message on the first channel
		}
		if at := time.Since(opened); at < 40*time.Millisecond {
			t.Errorf("channel %d got %q %s after the handshake, before the client could have made its streams", msg[0], msg[1:], at)
		}
		if msg[0] == 3 {
			status = msg[1:]
		}
	}
	var st streaming.Status
	if err := json.Unmarshal(status, &st); err != nil {
		t.Fatal(err)
	}
	if code, _ := st.ExitCode(); code != 42 {
		t.Errorf("exit status %s: code %d, want 42", status, code)
	}
}
