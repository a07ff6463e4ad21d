package linux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// TestPortForwardBusyboxHTTPD forwards streams to busybox httpd in a real
// pod: HTTP requests go through, including one whose client half-closes
// after sending; a port nobody listens on is refused; and at no point does
// a thread of this process sit in the pod's network namespace, so the
// namespace is freed with the sandbox.
func TestPortForwardBusyboxHTTPD(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	if _, err := e.rt.StartContainer(ctx, e.config("httpd", "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/etc")); err != nil {
		t.Fatal(err)
	}
	var netnsIno uint64
	if st, err := os.Stat(e.sb.NetNSPath); err != nil {
		t.Fatal(err)
	} else {
		netnsIno = st.Sys().(*syscall.Stat_t).Ino
	}
	podNS := fmt.Sprintf("net:[%d]", netnsIno)
	// Starting the container entered the pod's namespaces on a thread of
	// ours that Go ends asynchronously: let it go first, so that what is
	// checked below is the forward's own doing.
	for deadline := time.Now().Add(30 * time.Second); len(threadsIn(t, podNS)) > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("threads of the container's start stay in the pod's netns: %v", threadsIn(t, podNS))
		}
	}

	// forward sends a request through a forwarded stream and returns the
	// answer. The stream is one end of a loopback connection: a real
	// socket, with the half-close a client can do.
	forward := func(port int32, request string, halfClose bool) (string, error) {
		client, stream := loopbackPair(t)
		defer client.Close()
		done := make(chan error, 1)
		go func() { done <- e.rt.PortForward(ctx, e.sb.ID, port, stream) }()
		io.WriteString(client, request)
		if halfClose {
			client.CloseWrite()
		}
		// The first byte back (or the end) means the dial is over: from
		// then on, no thread may be left in the pod's namespace.
		first := make([]byte, 1)
		n, _ := client.Read(first)
		if threads := threadsIn(t, podNS); len(threads) > 0 {
			t.Errorf("once dialled, threads of this process are in the pod's netns: %v", threads)
		}
		rest, _ := io.ReadAll(client)
		return string(first[:n]) + string(rest), <-done
	}

	// httpd starts asynchronously: a few refusals are allowed until it
	// listens (a bound on a broken test, not a timing).
	var answer string
	var err error
	for i := 0; i < 100; i++ {
		if answer, err = forward(80, "GET /passwd HTTP/1.0\r\n\r\n", false); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("forward to httpd: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(answer)), nil)
	if err != nil {
		t.Fatalf("answer %q: %v", answer, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "root:x:0:0:") {
		t.Errorf("GET /passwd through the forward: %s %q", resp.Status, body)
	}
	if answer, err := forward(80, "GET /group HTTP/1.0\r\n\r\n", true); err != nil || !strings.Contains(answer, "extra:x:3000:app") {
		t.Errorf("GET /group with the client's side half-closed: %v %q", err, answer)
	}

	_, err = forward(81, "", true)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("port 81, where nothing listens: %v", err)
	}
	if err := e.rt.PortForward(ctx, "nope", 80, nopStream{}); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("port-forward to a missing sandbox: %v", err)
	}
	if err := e.rt.PortForward(ctx, e.sb.ID, 0, nopStream{}); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("port 0: %v", err)
	}

	if threads := threadsIn(t, podNS); len(threads) > 0 {
		t.Errorf("after forwarding, threads of this process are in the pod's netns: %v", threads)
	}
	if socks := socketsIn(t, netnsIno); len(socks) > 0 {
		t.Errorf("after forwarding, sockets of this process live in the pod's netns (they would keep it alive): %v", socks)
	}
	e.check(t)
	// The pod's netns is gone: no task anywhere is in it.
	if tasks := tasksInNetNS(t, podNS); len(tasks) > 0 {
		t.Errorf("after the sandbox went, tasks are still in its netns: %v", tasks)
	}
}

type nopStream struct{}

func (nopStream) Read([]byte) (int, error)    { return 0, io.EOF }
func (nopStream) Write(p []byte) (int, error) { return len(p), nil }
func (nopStream) Close() error                { return nil }

func loopbackPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
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
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// threadsIn lists this process's threads whose network namespace is ns
// ("net:[inode]").
func threadsIn(t *testing.T, ns string) []string {
	t.Helper()
	return nsLinks(t, "/proc/self/task/*/ns/net", ns)
}

// tasksInNetNS lists every thread on the host in ns.
func tasksInNetNS(t *testing.T, ns string) []string {
	t.Helper()
	return nsLinks(t, "/proc/[0-9]*/task/*/ns/net", ns)
}

func nsLinks(t *testing.T, pattern, ns string) []string {
	t.Helper()
	links, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && target == ns {
			in = append(in, l)
		}
	}
	return in
}

// socketsIn lists this process's sockets that belong to the network
// namespace with inode ino (SIOCGSKNS opens a socket's namespace).
func socketsIn(t *testing.T, ino uint64) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, en := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", en.Name()))
		if !strings.HasPrefix(target, "socket:") {
			continue
		}
		fd, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
		if err != nil {
			continue // closed since the listing
		}
		var st unix.Stat_t
		if unix.Fstat(nsfd, &st) == nil && st.Ino == ino {
			in = append(in, en.Name()+"->"+target)
		}
		unix.Close(nsfd)
	}
	return in
}
