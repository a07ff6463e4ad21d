package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// RunPodSandbox implements the CRI. The intent is recorded before the
// runtime makes anything, so a crash at any point leaves a record that
// Recover finishes or undoes.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	c := req.GetConfig()
	if c == nil {
		return nil, grpcError(invalid("config", "required"))
	}
	if h := req.GetRuntimeHandler(); h != "" {
		return nil, grpcError(invalid("runtime_handler", "%q: this runtime has only the default handler", h))
	}
	id := newID()
	cfg, err := sandboxConfig(id, c)
	if err != nil {
		return nil, grpcError(fmt.Errorf("run pod sandbox %s/%s: %w", c.GetMetadata().GetNamespace(), c.GetMetadata().GetName(), err))
	}
	unlock := s.locks.lock("sandbox-names")
	defer unlock()
	recs, errs := s.store.sandboxes()
	s.logErrors(errs)
	for _, r := range recs {
		if sameSandboxMeta(r.config.GetMetadata(), c.GetMetadata()) {
			return nil, grpcError(fmt.Errorf("run pod sandbox %s: held by sandbox %s: %w", metaName(c.GetMetadata()), r.ID, runtime.ErrAlreadyExists))
		}
	}
	rec := &sandboxRecord{ID: id, State: sandboxCreating, CreatedAt: time.Now().UTC(), config: cloneProto(c)}
	if err := s.store.putSandbox(rec); err != nil {
		return nil, grpcError(err)
	}
	sb, err := s.createSandbox(ctx, rec, cfg)
	if err != nil {
		// The runtime undoes a failed creation itself; removing by ID
		// also covers one cut short by a cancelled request.
		if rerr := s.teardownNetwork(context.WithoutCancel(ctx), rec); rerr != nil {
			err = fmt.Errorf("%w (cleanup: %v)", err, rerr)
		} else if rerr := s.rt.RemoveSandbox(context.WithoutCancel(ctx), id); rerr != nil {
			err = fmt.Errorf("%w (cleanup: %v)", err, rerr)
		} else if derr := s.store.deleteSandbox(id); derr != nil {
			err = fmt.Errorf("%w (cleanup: %v)", err, derr)
		}
		return nil, grpcError(fmt.Errorf("run pod sandbox %s: %w", metaName(c.GetMetadata()), err))
	}
	rec.State, rec.IP = sandboxReady, sb.IP
	if err := s.store.putSandbox(rec); err != nil {
		return nil, grpcError(err)
	}
	s.sandboxEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	s.sandboxEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// createSandbox has the runtime make the sandbox and, with a CNI network,
// attaches it. The record says a network is being made before it is, so a
// crash leaves what to tear down.
func (s *Server) createSandbox(ctx context.Context, rec *sandboxRecord, cfg *runtime.SandboxConfig) (*runtime.Sandbox, error) {
	if s.opts.Network == nil || cfg.Namespaces.Network != runtime.NamespacePod {
		return s.rt.CreateSandbox(ctx, cfg)
	}
	// The plugins publish the ports (portMappings capability).
	cfg.ExternalNetwork, cfg.Ports = true, nil
	sb, err := s.rt.CreateSandbox(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rec.Network = &NetworkResult{NetNS: sb.NetNSPath}
	if err := s.store.putSandbox(rec); err != nil {
		return nil, err
	}
	res, err := s.opts.Network.Setup(ctx, rec.ID, sb.NetNSPath, rec.config)
	if err != nil {
		return nil, err
	}
	rec.Network = res
	return sb, nil
}

func sameSandboxMeta(a, b *runtimeapi.PodSandboxMetadata) bool {
	return a.GetName() == b.GetName() && a.GetNamespace() == b.GetNamespace() &&
		a.GetUid() == b.GetUid() && a.GetAttempt() == b.GetAttempt()
}

func metaName(m *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s/%s (uid %s, attempt %d)", m.GetNamespace(), m.GetName(), m.GetUid(), m.GetAttempt())
}

// StopPodSandbox implements the CRI: every container is killed and its
// last state kept, then the runtime removes the sandbox and everything it
// made (the pod network first of all). The record stays, NOTREADY, until
// RemovePodSandbox. Stopping what is stopped or gone succeeds.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	rec, unlock, err := s.lockedSandbox(req.GetPodSandboxId())
	if err != nil || rec == nil {
		return &runtimeapi.StopPodSandboxResponse{}, grpcError(err)
	}
	defer unlock()
	if err := s.stopSandbox(ctx, rec); err != nil {
		return nil, grpcError(fmt.Errorf("stop pod sandbox %s: %w", rec.ID, err))
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// lockedSandbox finds and locks a sandbox for a call that succeeds when it
// is gone (stop, remove): a missing one is a nil record and no error.
func (s *Server) lockedSandbox(idOrPrefix string) (*sandboxRecord, func(), error) {
	return locked(s, "sandboxes", idOrPrefix, s.store.sandbox)
}

// locked finds a record of kind by ID or prefix and takes its lock; a
// missing one is a nil record and no error.
func locked[T any](s *Server, kind, idOrPrefix string, read func(string) (*T, error)) (*T, func(), error) {
	id, err := s.store.resolve(kind, idOrPrefix)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	unlock := s.locks.lock(id)
	rec, err := read(id)
	if err != nil {
		unlock()
		if errors.Is(err, runtime.ErrNotFound) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	return rec, unlock, nil
}

// stopSandbox does StopPodSandbox's work; the caller holds the sandbox's
// lock.
func (s *Server) stopSandbox(ctx context.Context, rec *sandboxRecord) error {
	if rec.State == sandboxStopped {
		return nil
	}
	ctrs, errs := s.store.containers()
	s.logErrors(errs)
	var stopped []*containerRecord
	for _, c := range ctrs {
		if c.SandboxID != rec.ID {
			continue
		}
		unlock := s.locks.lock(c.ID)
		if c.Started && c.Final == nil {
			if err := s.rt.StopContainer(ctx, c.ID, 0); err != nil {
				unlock()
				return err
			}
			obs, err := s.rt.GetContainer(ctx, c.ID)
			switch {
			case err == nil:
				c.Final = obs
			case errors.Is(err, runtime.ErrNotFound):
				c.Final = lostContainer(c)
			default:
				unlock()
				return err
			}
			if err := s.store.putContainer(c); err != nil {
				unlock()
				return err
			}
			stopped = append(stopped, c)
		}
		unlock()
	}
	if err := s.teardownNetwork(ctx, rec); err != nil {
		return err
	}
	if err := s.rt.RemoveSandbox(ctx, rec.ID); err != nil {
		return err
	}
	rec.State = sandboxStopped
	if err := s.store.putSandbox(rec); err != nil {
		return err
	}
	for _, c := range stopped {
		s.containerEvent(ctx, c, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	}
	s.sandboxEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	return nil
}

// lostContainer is the state reported for a started container the runtime
// no longer knows (its sandbox died and was collected).
func lostContainer(c *containerRecord) *runtime.Container {
	return &runtime.Container{ID: c.ID, SandboxID: c.SandboxID, State: runtime.ContainerExited, ExitCode: 255,
		Reason: "ContainerLost", Message: "the runtime no longer knows this container", CreatedAt: c.CreatedAt}
}

// RemovePodSandbox implements the CRI: a sandbox not stopped yet is
// stopped first; then its containers' records and its own go.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	rec, unlock, err := s.lockedSandbox(req.GetPodSandboxId())
	if err != nil || rec == nil {
		return &runtimeapi.RemovePodSandboxResponse{}, grpcError(err)
	}
	defer unlock()
	if err := s.removeSandbox(ctx, rec); err != nil {
		return nil, grpcError(fmt.Errorf("remove pod sandbox %s: %w", rec.ID, err))
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// teardownNetwork detaches a sandbox from its CNI network, while its
// namespace still exists.
func (s *Server) teardownNetwork(ctx context.Context, rec *sandboxRecord) error {
	if rec.Network == nil || rec.Network.Config == nil {
		return nil // the runtime's bridge, or Setup never got the configuration
	}
	if s.opts.Network == nil {
		return fmt.Errorf("pod sandbox %s has a CNI network, and this server was started without one (--cni-conf-dir)", rec.ID)
	}
	return s.opts.Network.Teardown(ctx, rec.ID, rec.Network, rec.config)
}

func (s *Server) removeSandbox(ctx context.Context, rec *sandboxRecord) error {
	if rec.State != sandboxStopped {
		if err := s.stopSandbox(ctx, rec); err != nil {
			return err
		}
	}
	ctrs, errs := s.store.containers()
	s.logErrors(errs)
	for _, c := range ctrs {
		if c.SandboxID != rec.ID {
			continue
		}
		unlock := s.locks.lock(c.ID)
		err := s.store.deleteContainer(c.ID)
		unlock()
		if err != nil {
			return err
		}
		s.containerEvent(ctx, c, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	}
	if err := s.store.deleteSandbox(rec.ID); err != nil {
		return err
	}
	s.sandboxEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// observeSandbox is a sandbox as the CRI reports it: the record for the
// CRI's fields, the runtime for the state.
type observedSandbox struct {
	rec   *sandboxRecord
	rt    *runtime.Sandbox // nil when stopped or lost
	state runtimeapi.PodSandboxState
}

func (s *Server) observeSandbox(ctx context.Context, rec *sandboxRecord) (*observedSandbox, error) {
	o := &observedSandbox{rec: rec, state: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	if rec.State != sandboxReady {
		return o, nil
	}
	sb, err := s.rt.GetSandbox(ctx, rec.ID)
	if errors.Is(err, runtime.ErrNotFound) {
		return o, nil
	}
	if err != nil {
		return nil, err
	}
	o.rt = sb
	if sb.State == runtime.SandboxReady {
		o.state = runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return o, nil
}

func (o *observedSandbox) sandbox() *runtimeapi.PodSandbox {
	c := o.rec.config
	return &runtimeapi.PodSandbox{Id: o.rec.ID, Metadata: c.GetMetadata(), State: o.state,
		CreatedAt: o.rec.CreatedAt.UnixNano(), Labels: c.GetLabels(), Annotations: c.GetAnnotations(),
		RuntimeHandler: o.rec.Handler}
}

func (o *observedSandbox) status() *runtimeapi.PodSandboxStatus {
	c := o.rec.config
	st := &runtimeapi.PodSandboxStatus{Id: o.rec.ID, Metadata: c.GetMetadata(), State: o.state,
		CreatedAt: o.rec.CreatedAt.UnixNano(), Labels: c.GetLabels(), Annotations: c.GetAnnotations(),
		RuntimeHandler: o.rec.Handler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: c.GetLinux().GetSecurityContext().GetNamespaceOptions()}}}
	ip := o.rec.IP
	if o.rt != nil && o.rt.IP != "" {
		ip = o.rt.IP
	}
	var more []*runtimeapi.PodIP
	if n := o.rec.Network; n != nil && len(n.IPs) > 0 {
		ip = n.IPs[0]
		for _, a := range n.IPs[1:] {
			more = append(more, &runtimeapi.PodIP{Ip: a})
		}
	}
	// A stopped sandbox has given its addresses back.
	if o.rec.State == sandboxStopped {
		ip, more = "", nil
	}
	st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: ip, AdditionalIps: more}
	return st
}

// sandboxInfo is the verbose status crictl inspectp prints.
type sandboxInfo struct {
	State        string                   `json:"state"`
	PausePID     int                      `json:"pid,omitempty"`
	NetNSPath    string                   `json:"netnsPath,omitempty"`
	CgroupPath   string                   `json:"cgroupPath,omitempty"`
	Namespaces   runtime.NamespaceOptions `json:"namespaces"`
	Reason       string                   `json:"reason,omitempty"`
	RuntimeState string                   `json:"runtimeState,omitempty"`
}

// PodSandboxStatus implements the CRI.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	o, err := s.sandboxByID(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, grpcError(err)
	}
	rec, id := o.rec, o.rec.ID
	resp := &runtimeapi.PodSandboxStatusResponse{Status: o.status(), Timestamp: time.Now().UnixNano()}
	ctrs, errs := s.store.containers()
	s.logErrors(errs)
	for _, c := range ctrs {
		if c.SandboxID == id {
			if cs, err := s.containerStatus(ctx, c); err == nil {
				resp.ContainersStatuses = append(resp.ContainersStatuses, cs)
			}
		}
	}
	if req.GetVerbose() {
		info := sandboxInfo{State: rec.State}
		if o.rt != nil {
			info.PausePID, info.NetNSPath, info.CgroupPath = o.rt.PausePID, o.rt.NetNSPath, o.rt.CgroupPath
			info.Namespaces, info.Reason, info.RuntimeState = o.rt.Namespaces, o.rt.Reason, string(o.rt.State)
		}
		b, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// sandboxByID finds and observes one sandbox.
func (s *Server) sandboxByID(ctx context.Context, idOrPrefix string) (*observedSandbox, error) {
	id, err := s.store.resolve("sandboxes", idOrPrefix)
	if err != nil {
		return nil, err
	}
	rec, err := s.store.sandbox(id)
	if err != nil {
		return nil, err
	}
	return s.observeSandbox(ctx, rec)
}

// listSandboxes observes every sandbox of the store, oldest first.
func (s *Server) listSandboxes(ctx context.Context) ([]*observedSandbox, error) {
	recs, errs := s.store.sandboxes()
	s.logErrors(errs)
	out := make([]*observedSandbox, 0, len(recs))
	for _, r := range recs {
		if r.State == sandboxCreating {
			continue // not there yet (or being undone)
		}
		o, err := s.observeSandbox(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.CreatedAt.Before(out[j].rec.CreatedAt) })
	return out, nil
}

func matchSandbox(f *runtimeapi.PodSandboxFilter, o *observedSandbox) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !hasIDPrefix(o.rec.ID, f.GetId()) {
		return false
	}
	if st := f.GetState(); st != nil && st.GetState() != o.state {
		return false
	}
	return matchLabels(f.GetLabelSelector(), o.rec.config.GetLabels())
}

// ListPodSandbox implements the CRI.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	all, err := s.listSandboxes(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &runtimeapi.ListPodSandboxResponse{}
	for _, o := range all {
		if matchSandbox(req.GetFilter(), o) {
			resp.Items = append(resp.Items, o.sandbox())
		}
	}
	return resp, nil
}

// StreamPodSandboxes implements the CRI's streamed listing.
func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	resp, err := s.ListPodSandbox(stream.Context(), &runtimeapi.ListPodSandboxRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetItems(), func(c []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: c})
	})
}

// streamChunk is how many items one message of a streamed listing holds.
const streamChunk = 256

// sendChunks sends items in messages of at most streamChunk.
func sendChunks[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), streamChunk)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

func hasIDPrefix(id, prefix string) bool { return len(prefix) <= len(id) && id[:len(prefix)] == prefix }

func matchLabels(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (s *Server) logErrors(errs []error) {
	for _, err := range errs {
		s.log.Warn().Err(err).Msg("CRI record skipped")
	}
}
