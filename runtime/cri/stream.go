package cri

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/streaming"
)

// The CRI's interactive calls (Exec, Attach, PortForward) return a URL;
// the client (kubelet's proxy, crictl) opens it with the Kubernetes
// streaming protocols, which runtime/streaming serves. Each URL holds a
// random one-time token for the checked request, valid for tokenTTL, as
// kubelet's own streaming server does it.

// tokenTTL bounds the time between the CRI call and the client's
// connection.
const tokenTTL = time.Minute

type streamRequest struct {
	kind      string // "exec", "attach", "portforward"
	container string
	sandbox   string
	pod       string // for messages
	cmd       []string
	want      streaming.Streams
	target    streaming.Target
	expires   time.Time
}

type streamServer struct {
	base string // http://host:port
	mu   sync.Mutex
	reqs map[string]*streamRequest
}

func newStreamServer(l net.Listener) *streamServer {
	return &streamServer{base: "http://" + l.Addr().String(), reqs: map[string]*streamRequest{}}
}

// register keeps req under a new token and returns its URL.
func (st *streamServer) register(req *streamRequest) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	now := time.Now()
	req.expires = now.Add(tokenTTL)
	st.mu.Lock()
	defer st.mu.Unlock()
	for t, r := range st.reqs {
		if now.After(r.expires) {
			delete(st.reqs, t)
		}
	}
	st.reqs[tok] = req
	return st.base + "/" + req.kind + "/" + tok, nil
}

// take returns the request of a token once.
func (st *streamServer) take(kind, tok string) *streamRequest {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.reqs[tok]
	if r == nil || r.kind != kind || time.Now().After(r.expires) {
		return nil
	}
	delete(st.reqs, tok)
	return r
}

func (s *Server) streamHandler(st *streamServer) http.Handler {
	mux := http.NewServeMux()
	for _, kind := range []string{"exec", "attach", "portforward"} {
		mux.HandleFunc("/"+kind+"/{token}", func(w http.ResponseWriter, r *http.Request) {
			req := st.take(kind, r.PathValue("token"))
			if req == nil {
				http.Error(w, kind+": unknown or expired token", http.StatusNotFound)
				return
			}
			switch kind {
			case "exec":
				streaming.ServeExec(w, r, s.rt, req.container, req.cmd, req.want)
			case "attach":
				streaming.ServeAttach(w, r, s.rt, req.target, req.want)
			case "portforward":
				streaming.ServePortForward(w, r, s.rt, req.pod, req.sandbox)
			}
		})
	}
	return mux
}

// serveStreams serves the streaming endpoint until ctx ends; open
// sessions end with it.
func (s *Server) serveStreams(ctx context.Context, l net.Listener, st *streamServer) error {
	srv := &http.Server{Handler: s.streamHandler(st), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) streams(what string) (*streamServer, error) {
	if s.stream == nil {
		return nil, grpcstatus.Errorf(codes.Unimplemented, "%s: this server has no streaming endpoint", what)
	}
	return s.stream, nil
}

// runningContainer resolves a container ID and checks that it runs.
func (s *Server) runningContainer(ctx context.Context, idOrPrefix string) (*containerRecord, error) {
	id, err := s.store.resolve("containers", idOrPrefix)
	if err != nil {
		return nil, err
	}
	rec, err := s.store.container(id)
	if err != nil {
		return nil, err
	}
	c, err := s.observe(ctx, rec)
	if err != nil {
		return nil, err
	}
	if c.State != runtime.ContainerRunning {
		return nil, fmt.Errorf("container %s is %s, not running: %w", id, c.State, runtime.ErrConflict)
	}
	return rec, nil
}

func streamsOf(stdin, stdout, stderr, tty bool) (streaming.Streams, error) {
	if !stdin && !stdout && !stderr {
		return streaming.Streams{}, invalid("stdin, stdout, stderr", "one of them must be set")
	}
	if tty && stderr {
		return streaming.Streams{}, invalid("stderr", "a terminal has no separate stderr")
	}
	return streaming.Streams{Stdin: stdin, Stdout: stdout, Stderr: stderr, TTY: tty}, nil
}

// Exec implements the CRI.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	st, err := s.streams("exec")
	if err != nil {
		return nil, err
	}
	if len(req.GetCmd()) == 0 {
		return nil, grpcError(invalid("cmd", "empty"))
	}
	want, err := streamsOf(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty())
	if err != nil {
		return nil, grpcError(err)
	}
	rec, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, grpcError(fmt.Errorf("exec: %w", err))
	}
	url, err := st.register(&streamRequest{kind: "exec", container: rec.ID, cmd: req.GetCmd(), want: want})
	if err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.ExecResponse{Url: url}, nil
}

// Attach implements the CRI. The terminal and stdin are the container's
// own (its config's tty and stdin), whatever the client asks.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	st, err := s.streams("attach")
	if err != nil {
		return nil, err
	}
	want, err := streamsOf(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty())
	if err != nil {
		return nil, grpcError(err)
	}
	rec, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, grpcError(fmt.Errorf("attach: %w", err))
	}
	t := streaming.Target{ContainerID: rec.ID, SandboxID: rec.SandboxID, TTY: rec.config.GetTty(), Stdin: rec.config.GetStdin()}
	url, err := st.register(&streamRequest{kind: "attach", container: rec.ID, want: want, target: t})
	if err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.AttachResponse{Url: url}, nil
}

// PortForward implements the CRI: the client's streams reach ports in the
// pod's network namespace.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	st, err := s.streams("port-forward")
	if err != nil {
		return nil, err
	}
	o, err := s.sandboxByID(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, grpcError(fmt.Errorf("port-forward: %w", err))
	}
	rec, id := o.rec, o.rec.ID
	if o.state != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil, grpcError(fmt.Errorf("port-forward: pod sandbox %s is not ready: %w", id, runtime.ErrConflict))
	}
	md := rec.config.GetMetadata()
	url, err := st.register(&streamRequest{kind: "portforward", sandbox: id, pod: md.GetNamespace() + "/" + md.GetName()})
	if err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.PortForwardResponse{Url: url}, nil
}
