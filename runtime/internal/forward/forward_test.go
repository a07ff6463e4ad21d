package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
)

// TestJoinHalfClose: a server that answers only once the client has
// finished sending (it reads to EOF), then closes. The client's
// half-close must reach it, and its answer and close must come back.
func TestJoinHalfClose(t *testing.T) {
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
		got, _ := io.ReadAll(c)
		io.WriteString(c, "got "+string(got))
		c.Close()
	}()
	client, stream := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		done <- Join(context.Background(), stream, func() (net.Conn, error) { return net.Dial("tcp", l.Addr().String()) })
	}()
	io.WriteString(client, "request")
	client.CloseWrite()
	if answer, _ := io.ReadAll(client); string(answer) != "got request" {
		t.Errorf("answer through the join: %q", answer)
	}
	if err := <-done; err != nil {
		t.Errorf("join: %v", err)
	}
}

// TestJoinDialFails: the stream is closed when there is nothing to join.
func TestJoinDialFails(t *testing.T) {
	client, stream := tcpPair(t)
	refused := errors.New("connection refused")
	if err := Join(context.Background(), stream, func() (net.Conn, error) { return nil, refused }); err != refused {
		t.Errorf("join: %v", err)
	}
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("the client's side after a failed dial: %d, %v; want EOF", n, err)
	}
}

// tcpPair returns two ends of a loopback connection: a stream with a
// half-close, unlike net.Pipe.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}
