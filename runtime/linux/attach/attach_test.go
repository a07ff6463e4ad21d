package attach

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

func TestHello(t *testing.T) {
	for _, h := range []Hello{
		{Version: Version},
		{Version: Version, TTY: true, Stdin: true},
		{Version: 7, Stdout: true, Stderr: true},
		{Version: Version, TTY: true, Stdin: true, Stdout: true, Stderr: true},
	} {
		got, err := ParseHello(h.Marshal())
		if err != nil || got != h {
			t.Errorf("round trip of %+v: %+v %v", h, got, err)
		}
	}
	if _, err := ParseHello([]byte{1}); err == nil {
		t.Error("a one-byte hello parsed")
	}
	size := runtime.TermSize{Width: 513, Height: 65535}
	if got, ok := ParseSize(MarshalSize(size)); !ok || got != size {
		t.Errorf("size round trip: %+v %v", got, ok)
	}
	if _, ok := ParseSize([]byte{1, 2, 3}); ok {
		t.Error("a three-byte size parsed")
	}
}

// TestSocket: the socket in a directory deeper than a socket address can
// name (108 bytes) is served and reached, is the owner's only, carries
// frames both ways (long data split at MaxData, empty frames whole), and
// goes when the listener closes.
func TestSocket(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < 200 {
		dir = filepath.Join(dir, strings.Repeat("d", 40))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SocketName)
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v %v, want a socket, 0600", path, fi.Mode(), err)
	}
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	defer server.Close()

	long := bytes.Repeat([]byte("0123456789abcdef"), (3*MaxData+100)/16)
	go func() {
		client.WriteFrame(TypeInput, long)
		client.WriteFrame(TypeCloseInput, nil)
	}()
	var got []byte
	frames := 0
	for {
		typ, data, err := server.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if typ == TypeCloseInput {
			if len(data) != 0 {
				t.Errorf("close frame with %d bytes", len(data))
			}
			break
		}
		if typ != TypeInput || len(data) > MaxData {
			t.Fatalf("frame %q of %d bytes", typ, len(data))
		}
		got = append(got, data...)
		frames++
	}
	if !bytes.Equal(got, long) || frames != 4 {
		t.Errorf("%d bytes in %d frames, want %d in 4", len(got), frames, len(long))
	}
	if err := server.WriteFrame(TypeEnd, []byte("bye")); err != nil {
		t.Fatal(err)
	}
	if typ, data, err := client.ReadFrame(); typ != TypeEnd || string(data) != "bye" || err != nil {
		t.Errorf("end frame: %q %q %v", typ, data, err)
	}
	server.Close()
	if _, _, err := client.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Errorf("read after the peer closed: %v, want EOF", err)
	}

	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Close: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Accept after Close: %v, want os.ErrClosed", err)
	}
	if _, err := Dial(dir); err == nil {
		t.Error("Dial after Close succeeded")
	}
}
