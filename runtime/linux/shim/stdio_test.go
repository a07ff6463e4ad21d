package shim

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/attach"
)

// client is an attach session of a test: what the shim sent it.
type client struct {
	t    *testing.T
	c    *attach.Conn
	out  chan []byte // stdout and stderr data, in order, prefixed by the type
	end  chan string
	info attach.Hello
}

func dial(t *testing.T, dir string, h attach.Hello, read bool) *client {
	t.Helper()
	c, err := attach.Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h.Version = attach.Version
	if err := c.WriteFrame(attach.TypeHello, h.Marshal()); err != nil {
		t.Fatal(err)
	}
	typ, data, err := c.ReadFrame()
	if err != nil || typ != attach.TypeHello {
		t.Fatalf("hello: %q %q %v", typ, data, err)
	}
	cl := &client{t: t, c: c, out: make(chan []byte, 4096), end: make(chan string, 1)}
	cl.info, _ = attach.ParseHello(data)
	if read {
		go cl.read()
	}
	return cl
}

func (cl *client) read() {
	for {
		typ, data, err := cl.c.ReadFrame()
		if err != nil {
			close(cl.end)
			return
		}
		if typ == attach.TypeEnd {
			cl.end <- string(data)
			return
		}
		cl.out <- append([]byte{typ}, data...)
	}
}

// expect reads output until it has want (each chunk prefixed by its type).
func (cl *client) expect(want string) {
	cl.t.Helper()
	var got []byte
	for len(got) < len(want) {
		select {
		case b := <-cl.out: // one frame: its type, then its data
			for _, c := range b[1:] {
				got = append(got, b[0], c)
			}
		case <-time.After(30 * time.Second):
			cl.t.Fatalf("got %q, want %q", got, want)
		}
	}
	if string(got) != want {
		cl.t.Errorf("got %q, want %q", got, want)
	}
}

// typed spells data as expect wants it: each byte after its stream type.
func typed(typ byte, data string) string {
	var b strings.Builder
	for i := range len(data) {
		b.WriteByte(typ)
		b.WriteByte(data[i])
	}
	return b.String()
}

// waitSessions waits until the shim counts n sessions.
func waitSessions(t *testing.T, s *stdio, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		got := len(s.sessions)
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", got, n)
		}
	}
}

// TestStdioFanOutAndStdinOnce: output goes to every session that asked
// for its stream; input from any session reaches the process; the first
// session's end of input closes a stdinOnce container's stdin, and later
// input goes nowhere; the container's exit ends every session.
func TestStdioFanOutAndStdinOnce(t *testing.T) {
	dir := t.TempDir()
	s, err := newStdio(dir, &runtime.ContainerConfig{Stdin: true, StdinOnce: true})
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	s.setInput(inW, nil)
	a := dial(t, dir, attach.Hello{Stdin: true, Stdout: true, Stderr: true}, true)
	b := dial(t, dir, attach.Hello{Stdout: true}, true)
	if a.info.TTY || !a.info.Stdin {
		t.Errorf("the shim's hello: %+v, want stdin and no terminal", a.info)
	}
	waitSessions(t, s, 2)
	s.output(attach.TypeStdout).Write([]byte("out"))
	s.output(attach.TypeStderr).Write([]byte("err"))
	a.expect(typed('o', "out") + typed('e', "err"))
	b.expect(typed('o', "out")) // no stderr asked for

	b.c.WriteFrame(attach.TypeInput, []byte("from b\n")) // b gave no stdin: dropped
	a.c.WriteFrame(attach.TypeInput, []byte("from a\n"))
	a.c.WriteFrame(attach.TypeCloseInput, nil)
	got, err := io.ReadAll(inR) // EOF: stdinOnce closed the pipe
	if err != nil || string(got) != "from a\n" {
		t.Errorf("the process's stdin: %q %v, want only a's input, then its end", got, err)
	}
	s.finish()
	for _, cl := range []*client{a, b} {
		select {
		case reason, ok := <-cl.end:
			if !ok || reason != "" {
				t.Errorf("end of session: %q (frame received: %v), want an end frame without reason", reason, ok)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no end frame after the container's exit")
		}
	}
	if _, err := attach.Dial(dir); err == nil {
		t.Error("the socket is still served after the exit")
	}
}

// TestStdioDropsSlowClient: a client that does not read is dropped once
// 1 MiB waits for it, with a reason; the others and the writer are never
// held up by it.
func TestStdioDropsSlowClient(t *testing.T) {
	dir := t.TempDir()
	s, err := newStdio(dir, &runtime.ContainerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.finish()
	fast := dial(t, dir, attach.Hello{Stdout: true}, false)
	slow := dial(t, dir, attach.Hello{Stdout: true}, false)
	waitSessions(t, s, 2)
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	w := s.output(attach.TypeStdout)
	for i := 0; i < 128; i++ { // 4 MiB, paced by the fast client only
		if n, err := w.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("the writer was refused: %d %v", n, err)
		}
		typ, data, err := fast.c.ReadFrame()
		if err != nil || typ != attach.TypeStdout || len(data) != len(chunk) {
			t.Fatalf("fast client, chunk %d: %q %d bytes %v", i, typ, len(data), err)
		}
	}
	waitSessions(t, s, 1)
	var n int
	for {
		typ, data, err := slow.c.ReadFrame()
		if err != nil {
			t.Fatalf("slow client after %d bytes: %v", n, err)
		}
		if typ == attach.TypeEnd {
			if !strings.Contains(string(data), "too slow") {
				t.Errorf("slow client's end: %q", data)
			}
			break
		}
		n += len(data)
	}
	if n >= 4<<20 {
		t.Errorf("the slow client got all %d bytes, want it dropped", n)
	}
	if _, _, err := slow.c.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Errorf("after the end: %v, want EOF", err)
	}
}

// TestStdioRefusesOtherVersions: a client of a protocol version the shim
// does not know gets an end frame saying so.
func TestStdioRefusesOtherVersions(t *testing.T) {
	dir := t.TempDir()
	s, err := newStdio(dir, &runtime.ContainerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.finish()
	c, err := attach.Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteFrame(attach.TypeHello, attach.Hello{Version: attach.Version + 1}.Marshal())
	if typ, data, err := c.ReadFrame(); typ != attach.TypeEnd || !strings.Contains(string(data), "version") || err != nil {
		t.Errorf("answer to another version: %q %q %v", typ, data, err)
	}
}
