// Package cri serves the Kubernetes Container Runtime Interface (CRI v1,
// k8s.io/cri-api) over gRPC on top of runtime.Runtime and
// runtime.ImageService, so that kubelet, crictl and critest drive pelagos'
// runtime. It is not a second runtime: sandboxes and containers are the
// runtime's, and the package keeps only what the CRI has and the runtime
// has not (created-but-not-started containers, CRI metadata, the state of
// stopped sandboxes) in a small store of its own.
package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Identity reported by Version.
const (
	RuntimeName       = "pelagos"
	runtimeAPIVersion = "v1"
	kubeAPIVersion    = "0.1.0"
)

// Options configures a Server.
type Options struct {
	Runtime runtime.Runtime
	Images  runtime.ImageService
	// StateDir holds the server's records; it belongs under the run root
	// (records die with the sandboxes at reboot).
	StateDir string
	// SeccompDir is the runtime's Localhost profile directory: CRI
	// profiles (host paths) are copied below it, named by content.
	SeccompDir string
	// ImageFSDir and ContainerFSDir are the trees ImageFsInfo reports.
	ImageFSDir, ContainerFSDir string
	// Network, when set, makes the networks of pods with their own
	// network namespace (a CNI plugin chain); the runtime's bridge does
	// otherwise.
	Network Network
	// Streaming is where the URLs of Exec, Attach and PortForward point
	// (kubelet proxies to it; keep it on loopback). Nil refuses them.
	Streaming net.Listener
	// RuntimeVersion is reported by Version.
	RuntimeVersion string
	Log            zerolog.Logger
}

// Server implements the CRI RuntimeService and ImageService.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	opts   Options
	rt     runtime.Runtime
	images runtime.ImageService
	store  store
	locks  locks
	log    zerolog.Logger
	events *broadcaster
	stream *streamServer // nil without Options.Streaming
	stats  *cpuSampler
	fsInfo fsInfoCache

	mu      sync.Mutex
	podCIDR string
}

// New opens the store and returns a Server. Call Recover before serving.
func New(opts Options) (*Server, error) {
	if opts.Runtime == nil || opts.Images == nil {
		return nil, errors.New("cri: a runtime and an image service are required")
	}
	if !filepath.IsAbs(opts.StateDir) {
		return nil, fmt.Errorf("cri: state directory %q: not absolute", opts.StateDir)
	}
	s := &Server{opts: opts, rt: opts.Runtime, images: opts.Images, store: store{dir: opts.StateDir},
		log: opts.Log, events: newBroadcaster(), stats: newCPUSampler()}
	if err := s.store.init(); err != nil {
		return nil, err
	}
	if opts.Streaming != nil {
		s.stream = newStreamServer(opts.Streaming)
	}
	return s, nil
}

// Register adds both services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

// Serve serves the CRI on l until ctx ends, then stops gracefully (bounded:
// a client's open event stream does not hold it up). It also serves the
// streaming endpoint and follows the runtime's container exits for
// GetContainerEvents.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	g := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))
	s.Register(g)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.watchExits(ctx)
	streamDone := make(chan error, 1)
	if s.stream != nil {
		go func() { streamDone <- s.serveStreams(ctx, s.opts.Streaming, s.stream) }()
	} else {
		streamDone <- nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			g.Stop()
		}
	}()
	err := g.Serve(l)
	cancel()
	<-done
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	if serr := <-streamDone; err == nil && serr != nil {
		err = fmt.Errorf("streaming endpoint: %w", serr)
	}
	return err
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// grpcError maps the runtime's error kinds to gRPC codes: clients
// (kubelet) act on NotFound and DeadlineExceeded.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, runtime.ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, runtime.ErrInvalidConfig):
		code = codes.InvalidArgument
	case errors.Is(err, runtime.ErrConflict):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// Version implements the CRI.
func (s *Server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	v := s.opts.RuntimeVersion
	if v == "" {
		v = "dev"
	}
	return &runtimeapi.VersionResponse{Version: kubeAPIVersion, RuntimeName: RuntimeName,
		RuntimeVersion: v, RuntimeApiVersion: runtimeAPIVersion}, nil
}

// Status implements the CRI: the runtime is ready when it lists its
// sandboxes, the network when the runtime is or, with a CNI network, when
// its configuration loads.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	rtReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	if _, err := s.rt.ListSandboxes(ctx); err != nil {
		rtReady.Status, rtReady.Reason, rtReady.Message = false, "RuntimeUnavailable", err.Error()
	}
	// Without a CNI network the pod network is the runtime's own bridge,
	// ready with the runtime.
	netReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: rtReady.Status,
		Reason: rtReady.Reason, Message: rtReady.Message}
	if s.opts.Network != nil {
		if err := s.opts.Network.Ready(); err != nil {
			netReady.Status, netReady.Reason, netReady.Message = false, "NetworkPluginNotReady", err.Error()
		}
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{rtReady, netReady}},
		// Every read-only bind of this runtime is read-only recursively.
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "",
			Features: &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: false}}},
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: false},
	}
	if req.GetVerbose() {
		s.mu.Lock()
		resp.Info = map[string]string{"podCIDR": s.podCIDR}
		s.mu.Unlock()
	}
	return resp, nil
}

// RuntimeConfig implements the CRI: the cgroup driver is cgroupfs.
func (s *Server) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS}}, nil
}

// UpdateRuntimeConfig implements the CRI. The pod CIDR kubelet sends is
// recorded and reported; the runtime's bridge keeps its configured subnet.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	s.mu.Lock()
	changed := cidr != s.podCIDR
	s.podCIDR = cidr
	s.mu.Unlock()
	if changed && cidr != "" {
		s.log.Info().Str("podCIDR", cidr).Msg("kubelet's pod CIDR noted; pod addresses come from the runtime's subnet")
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// seccompName copies a Localhost seccomp profile from the host path the
// CRI names into the runtime's profile directory, named by its content,
// and returns that name: the runtime reads profiles only from there.
func (s *Server) seccompName(hostPath string) (string, error) {
	if s.opts.SeccompDir == "" {
		return "", fmt.Errorf("localhost profile %s: no profile directory configured: %w", hostPath, runtime.ErrInvalidConfig)
	}
	b, err := readLimited(hostPath, 1<<20)
	if err != nil {
		return "", fmt.Errorf("localhost profile: %w: %w", err, runtime.ErrInvalidConfig)
	}
	name := filepath.Join("cri", digestHex(b)+".json")
	dst := filepath.Join(s.opts.SeccompDir, name)
	if _, err := os.Stat(dst); err == nil {
		return name, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", fmt.Errorf("localhost profile %s: %w", hostPath, err)
	}
	if err := writeFileAtomic(dst, b); err != nil {
		return "", fmt.Errorf("localhost profile %s: %w", hostPath, err)
	}
	return name, nil
}
