package cri

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Streamer serves the CRI's interactive requests over HTTP: each method
// registers the request and returns the URL the client (kubelet's proxy,
// crictl) opens with the Kubernetes streaming protocols. The requests
// reach it with IDs already checked and resolved.
type Streamer interface {
	Exec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	Attach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	PortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}

func (s *Server) streamer(what string) (Streamer, error) {
	if s.opts.Streaming == nil {
		return nil, grpcstatus.Errorf(codes.Unimplemented, "%s: this server has no streaming endpoint", what)
	}
	return s.opts.Streaming, nil
}

// runningContainer resolves a container ID and checks that it runs.
func (s *Server) runningContainer(ctx context.Context, idOrPrefix string) (string, error) {
	id, err := s.store.resolve("containers", idOrPrefix)
	if err != nil {
		return "", err
	}
	rec, err := s.store.container(id)
	if err != nil {
		return "", err
	}
	c, err := s.observe(ctx, rec)
	if err != nil {
		return "", err
	}
	if c.State != runtime.ContainerRunning {
		return "", fmt.Errorf("container %s is %s, not running: %w", id, c.State, runtime.ErrConflict)
	}
	return id, nil
}

// Exec implements the CRI.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	st, err := s.streamer("exec")
	if err != nil {
		return nil, err
	}
	if len(req.GetCmd()) == 0 {
		return nil, grpcError(invalid("cmd", "empty"))
	}
	if !req.GetStdout() && !req.GetStderr() && !req.GetStdin() {
		return nil, grpcError(invalid("stdin, stdout, stderr", "one of them must be set"))
	}
	if req.GetTty() && req.GetStderr() {
		return nil, grpcError(invalid("stderr", "a TTY has no separate stderr"))
	}
	id, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, grpcError(fmt.Errorf("exec: %w", err))
	}
	r := cloneProto(req)
	r.ContainerId = id
	resp, err := st.Exec(r)
	return resp, grpcError(err)
}

// Attach implements the CRI.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	st, err := s.streamer("attach")
	if err != nil {
		return nil, err
	}
	id, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, grpcError(fmt.Errorf("attach: %w", err))
	}
	r := cloneProto(req)
	r.ContainerId = id
	resp, err := st.Attach(r)
	return resp, grpcError(err)
}

// PortForward implements the CRI.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	st, err := s.streamer("port-forward")
	if err != nil {
		return nil, err
	}
	id, err := s.store.resolve("sandboxes", req.GetPodSandboxId())
	if err != nil {
		return nil, grpcError(fmt.Errorf("port-forward: %w", err))
	}
	rec, err := s.store.sandbox(id)
	if err != nil {
		return nil, grpcError(fmt.Errorf("port-forward: %w", err))
	}
	o, err := s.observeSandbox(ctx, rec)
	if err != nil {
		return nil, grpcError(err)
	}
	if o.state != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil, grpcError(fmt.Errorf("port-forward: pod sandbox %s is not ready: %w", id, runtime.ErrConflict))
	}
	r := cloneProto(req)
	r.PodSandboxId = id
	resp, err := st.PortForward(r)
	return resp, grpcError(err)
}
