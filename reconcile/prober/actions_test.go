package prober

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

func hostPort(t *testing.T, rawURL string) (string, int32) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return u.Hostname(), int32(p)
}

func TestHTTPGet(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var gotHost, gotUA, gotCustom atomic.Value
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		gotUA.Store(r.UserAgent())
		gotCustom.Store(r.Header.Get("X-Probe"))
		w.WriteHeader(int(status.Load()))
		fmt.Fprint(w, strings.Repeat("x", 3*maxOutput))
	})
	mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/healthz", http.StatusFound)
	})
	mux.HandleFunc("/other", func(w http.ResponseWriter, r *http.Request) {
		// 192.0.2.1 is TEST-NET-1: never contacted, the redirect to another
		// host must be taken as the answer, not followed.
		http.Redirect(w, r, "http://192.0.2.1/", http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tls := httptest.NewTLSServer(mux)
	defer tls.Close()
	ip, port := hostPort(t, srv.URL)
	_, tlsPort := hostPort(t, tls.URL)
	target := &Target{ContainerName: "c", PodIP: ip, Ports: map[string]int32{"http": port, "https": tlsPort}}

	cases := []struct {
		name   string
		status int32
		a      HTTPGetAction
		want   Result
	}{
		{"ok by number", 200, HTTPGetAction{Path: "/healthz", Port: Port{Number: port}}, Success},
		{"ok by name no leading slash", 204, HTTPGetAction{Path: "healthz", Port: Port{Name: "http"}}, Success},
		{"3xx is success", 302, HTTPGetAction{Path: "/healthz", Port: Port{Number: port}}, Success},
		{"500 fails", 500, HTTPGetAction{Path: "/healthz", Port: Port{Number: port}}, Failure},
		{"404 fails", 404, HTTPGetAction{Path: "/nope", Port: Port{Number: port}}, Failure},
		{"same-host redirect followed", 503, HTTPGetAction{Path: "/same", Port: Port{Number: port}}, Failure},
		{"other-host redirect not followed", 503, HTTPGetAction{Path: "/other", Port: Port{Number: port}}, Success},
		{"https unverified", 200, HTTPGetAction{Scheme: "HTTPS", Path: "/healthz", Port: Port{Name: "https"}}, Success},
		{"unknown port name", 200, HTTPGetAction{Path: "/healthz", Port: Port{Name: "metrics"}}, Failure},
		{"timeout fails", 200, HTTPGetAction{Path: "/slow", Port: Port{Number: port}}, Failure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status.Store(tc.status)
			// Generous, except where the timeout is what is tested: a
			// loaded CI machine may take a while for a TLS handshake.
			timeout := 10 * time.Second
			if tc.a.Path == "/slow" {
				timeout = 200 * time.Millisecond
			}
			p := &Probe{HTTPGet: &tc.a, Timeout: timeout}
			res, msg, err := Run(context.Background(), nil, target, p)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res != tc.want {
				t.Fatalf("result %v, want %v (%s)", res, tc.want, msg)
			}
			if len(msg) > maxOutput+len(" [truncated]") {
				t.Fatalf("message not bounded: %d bytes", len(msg))
			}
		})
	}

	t.Run("headers", func(t *testing.T) {
		status.Store(200)
		p := &Probe{HTTPGet: &HTTPGetAction{Path: "/healthz", Port: Port{Number: port}, Headers: []HTTPHeader{
			{Name: "Host", Value: "example.test"}, {Name: "X-Probe", Value: "yes"}, {Name: "User-Agent", Value: "mine"},
		}}}
		if res, msg, err := Run(context.Background(), nil, target, p); err != nil || res != Success {
			t.Fatalf("Run: %v %v %s", res, err, msg)
		}
		if got := gotHost.Load(); got != "example.test" {
			t.Errorf("Host %q, want example.test", got)
		}
		if got := gotUA.Load(); got != "mine" {
			t.Errorf("User-Agent %q, want mine", got)
		}
		if got := gotCustom.Load(); got != "yes" {
			t.Errorf("X-Probe %q, want yes", got)
		}
	})
	t.Run("default user agent", func(t *testing.T) {
		p := &Probe{HTTPGet: &HTTPGetAction{Path: "/healthz", Port: Port{Number: port}}}
		if res, _, _ := Run(context.Background(), nil, target, p); res != Success {
			t.Fatal("probe failed")
		}
		if got := gotUA.Load().(string); !strings.HasPrefix(got, "kube-probe/") {
			t.Errorf("User-Agent %q, want kube-probe/...", got)
		}
	})
}

func TestTCPSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	target := &Target{ContainerName: "c", PodIP: "127.0.0.1", Ports: map[string]int32{"svc": port}}
	for _, pp := range []Port{{Number: port}, {Name: "svc"}} {
		res, msg, err := Run(context.Background(), nil, target, &Probe{TCPSocket: &TCPSocketAction{Port: pp}})
		if err != nil || res != Success {
			t.Fatalf("open port %v: %v %v %s", pp, res, err, msg)
		}
	}
	ln.Close()
	res, _, err := Run(context.Background(), nil, target, &Probe{TCPSocket: &TCPSocketAction{Port: Port{Number: port}}})
	if err != nil || res != Failure {
		t.Fatalf("closed port: %v %v, want failure", res, err)
	}
	res, _, _ = Run(context.Background(), nil, &Target{ContainerName: "c"}, &Probe{TCPSocket: &TCPSocketAction{Port: Port{Number: port}}})
	if res != Failure {
		t.Fatalf("no pod IP: %v, want failure", res)
	}
}

// healthServer speaks the server side of grpc.health.v1 over h2c using only
// net/http, so the client (x/net/http2) is checked against an independent
// implementation of the framing.
type healthServer struct {
	status   atomic.Uint64 // HealthCheckResponse.status for service ""
	services map[string]uint64
	unimpl   atomic.Bool
	lastReq  atomic.Value
}

func (h *healthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/grpc" {
		http.Error(w, "not grpc", http.StatusUnsupportedMediaType)
		return
	}
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/grpc")
	if h.unimpl.Load() || r.URL.Path != grpcHealthPath {
		// Trailers-only response, as grpc-go sends for an unknown method.
		w.Header().Set("Grpc-Status", "12")
		w.Header().Set("Grpc-Message", "unknown service")
		w.WriteHeader(200)
		return
	}
	service := ""
	if len(body) > 7 && body[5] == 0x0a {
		service = string(body[7:])
	}
	h.lastReq.Store(service)
	st := h.status.Load()
	if service != "" {
		v, ok := h.services[service]
		if !ok {
			w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
			w.WriteHeader(200)
			w.Header().Set("Grpc-Status", "5")
			w.Header().Set("Grpc-Message", "unknown service")
			return
		}
		st = v
	}
	w.Header().Set("Trailer", "Grpc-Status")
	w.WriteHeader(200)
	msg := []byte{0x08}
	msg = binary.AppendUvarint(msg, st)
	frame := make([]byte, 5)
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	w.Write(append(frame, msg...))
	w.Header().Set("Grpc-Status", "0")
}

func TestGRPC(t *testing.T) {
	hs := &healthServer{services: map[string]uint64{"db": 2, "api": 1}}
	hs.status.Store(grpcServing)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hs, Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	defer srv.Close()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	target := &Target{ContainerName: "c", PodIP: "127.0.0.1"}
	run := func(service string) (Result, string) {
		t.Helper()
		res, msg, err := Run(context.Background(), nil, target, &Probe{GRPC: &GRPCAction{Port: port, Service: service}, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return res, msg
	}
	if res, msg := run(""); res != Success {
		t.Fatalf("serving: %v %s", res, msg)
	}
	hs.status.Store(2)
	if res, msg := run(""); res != Failure || !strings.Contains(msg, "NOT_SERVING") {
		t.Fatalf("not serving: %v %s", res, msg)
	}
	if res, msg := run("api"); res != Success || hs.lastReq.Load() != "api" {
		t.Fatalf("service api: %v %s (server saw %v)", res, msg, hs.lastReq.Load())
	}
	if res, msg := run("db"); res != Failure {
		t.Fatalf("service db: %v %s", res, msg)
	}
	if res, msg := run("nope"); res != Failure || !strings.Contains(msg, "grpc-status 5") {
		t.Fatalf("unknown service: %v %s", res, msg)
	}
	hs.unimpl.Store(true)
	if res, msg := run(""); res != Failure || !strings.Contains(msg, "does not implement") {
		t.Fatalf("unimplemented: %v %s", res, msg)
	}
	srv.Close()
	if res, _ := run(""); res != Failure {
		t.Fatalf("server gone: %v", res)
	}
}

func TestHealthCodec(t *testing.T) {
	req := encodeHealthRequest("svc")
	if want := []byte{0, 0, 0, 0, 5, 0x0a, 3, 's', 'v', 'c'}; string(req) != string(want) {
		t.Fatalf("request %x, want %x", req, want)
	}
	if got := encodeHealthRequest(""); string(got) != "\x00\x00\x00\x00\x00" {
		t.Fatalf("empty request %x", got)
	}
	// status=1 preceded by an unknown length-delimited field 7.
	resp := []byte{0, 0, 0, 0, 6, 0x3a, 2, 'h', 'i', 0x08, 1}
	if st, err := decodeHealthResponse(resp); err != nil || st != 1 {
		t.Fatalf("decode: %d %v", st, err)
	}
	for _, bad := range [][]byte{{0, 0}, {1, 0, 0, 0, 0}, {0, 0, 0, 0, 9, 8}, {0, 0, 0, 0, 2, 0x3a, 9}} {
		if _, err := decodeHealthResponse(bad); err == nil {
			t.Errorf("decode %x: no error", bad)
		}
	}
}

func FuzzDecodeHealthResponse(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 0x08, 1})
	f.Add([]byte{0, 0, 0, 0, 6, 0x3a, 2, 'h', 'i', 0x08, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeHealthResponse(b)
	})
}

// scriptExec is a hand-written Execer: each command (by argv[0]) returns the
// scripted exit codes in turn, repeating the last one.
type scriptExec struct {
	mu     chan struct{}
	script map[string][]int
	calls  map[string]int
	block  bool
	output string
	err    error
}

func newScriptExec(script map[string][]int) *scriptExec {
	s := &scriptExec{mu: make(chan struct{}, 1), script: script, calls: map[string]int{}}
	return s
}

func (s *scriptExec) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	s.mu <- struct{}{}
	name := opts.Cmd[0]
	n := s.calls[name]
	s.calls[name] = n + 1
	codes := s.script[name]
	block, out, err := s.block, s.output, s.err
	<-s.mu
	if block {
		<-ctx.Done()
		return -1, ctx.Err()
	}
	if err != nil {
		return -1, err
	}
	if out != "" {
		io.WriteString(opts.Stdout, out)
	}
	if len(codes) == 0 {
		return 0, nil
	}
	if n >= len(codes) {
		n = len(codes) - 1
	}
	return codes[n], nil
}

func (s *scriptExec) count(name string) int {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.calls[name]
}

func TestExecAction(t *testing.T) {
	target := &Target{ContainerName: "c", ContainerID: "id"}
	ex := newScriptExec(map[string][]int{"ok": {0}, "bad": {3}})
	p := func(cmd string) *Probe {
		return &Probe{Exec: &ExecAction{Command: []string{cmd}}, Timeout: 100 * time.Millisecond}
	}
	if res, _, err := Run(context.Background(), ex, target, p("ok")); res != Success || err != nil {
		t.Fatalf("ok: %v %v", res, err)
	}
	if res, msg, err := Run(context.Background(), ex, target, p("bad")); res != Failure || err != nil || !strings.Contains(msg, "3") {
		t.Fatalf("bad: %v %v %q", res, err, msg)
	}
	ex.output = strings.Repeat("y", 5*maxOutput)
	res, msg, _ := Run(context.Background(), ex, target, p("ok"))
	if res != Success || len(msg) > maxOutput+20 || !strings.HasSuffix(msg, "[truncated]") {
		t.Fatalf("bounded output: %v, %d bytes", res, len(msg))
	}
	ex.output = ""
	ex.block = true
	if res, msg, err := Run(context.Background(), ex, target, p("ok")); res != Failure || err != nil || !strings.Contains(msg, "timed out") {
		t.Fatalf("timeout: %v %v %q", res, err, msg)
	}
	ex.block = false
	ex.err = fmt.Errorf("container id: %w", runtime.ErrNotFound)
	if _, _, err := Run(context.Background(), ex, target, p("ok")); !errors.Is(err, errDiscard) {
		t.Fatalf("gone container: err %v, want discard", err)
	}
	ex.err = errors.New("exec: \"ok\": executable file not found")
	if res, _, err := Run(context.Background(), ex, target, p("ok")); res != Failure || err != nil {
		t.Fatalf("exec error: %v %v, want failure", res, err)
	}
}
