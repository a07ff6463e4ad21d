package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// CreateContainer implements the CRI. The runtime starts containers in
// one step, so creating one only validates and translates its config and
// records it; StartContainer hands it to the runtime. Every error the
// config can cause is found here, as kubelet expects.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	c := req.GetConfig()
	if c == nil {
		return nil, grpcError(invalid("config", "required"))
	}
	sid, err := s.store.resolve("sandboxes", req.GetPodSandboxId())
	if err != nil {
		return nil, grpcError(fmt.Errorf("create container: %w", err))
	}
	unlockSandbox := s.locks.lock(sid)
	defer unlockSandbox()
	sb, err := s.store.sandbox(sid)
	if err != nil {
		return nil, grpcError(fmt.Errorf("create container: %w", err))
	}
	if sb.State != sandboxReady {
		return nil, grpcError(fmt.Errorf("create container %q: pod sandbox %s is %s: %w", c.GetMetadata().GetName(), sid, sb.State, runtime.ErrConflict))
	}
	ctrs, errs := s.store.containers()
	s.logErrors(errs)
	for _, o := range ctrs {
		if o.SandboxID == sid && o.config.GetMetadata().GetName() == c.GetMetadata().GetName() &&
			o.config.GetMetadata().GetAttempt() == c.GetMetadata().GetAttempt() {
			return nil, grpcError(fmt.Errorf("create container %q attempt %d in pod sandbox %s: held by %s: %w",
				c.GetMetadata().GetName(), c.GetMetadata().GetAttempt(), sid, o.ID, runtime.ErrAlreadyExists))
		}
	}
	ref := c.GetImage().GetImage()
	if ref == "" {
		return nil, grpcError(invalid("image.image", "required"))
	}
	img, err := s.images.GetImage(ctx, ref)
	if err != nil {
		return nil, grpcError(fmt.Errorf("create container %q: image %s (pull it first): %w", c.GetMetadata().GetName(), ref, err))
	}
	var logPath string
	if lp := c.GetLogPath(); lp != "" {
		dir := sb.config.GetLogDirectory()
		if dir == "" || !filepath.IsAbs(dir) {
			return nil, grpcError(invalid("log_path", "%q needs the sandbox's absolute log_directory (it is %q)", lp, dir))
		}
		if !filepath.IsLocal(lp) {
			return nil, grpcError(invalid("log_path", "%q must be relative to the log directory and stay inside it", lp))
		}
		logPath = filepath.Join(dir, lp)
	}
	id := newID()
	spec, err := containerConfig(containerInput{ID: id, Sandbox: sb, Image: img.ID, LogPath: logPath, SeccompName: s.seccompName}, c)
	if err != nil {
		return nil, grpcError(fmt.Errorf("create container %q: %w", c.GetMetadata().GetName(), err))
	}
	// Image volumes name images of the store, as the container's image
	// does; they mount the image they resolve to now.
	for i := range spec.Mounts {
		if m := &spec.Mounts[i]; m.Image != "" {
			mi, err := s.images.GetImage(ctx, m.Image)
			if err != nil {
				return nil, grpcError(fmt.Errorf("create container %q: mounts[%d]: image %s (pull it first): %w", c.GetMetadata().GetName(), i, m.Image, err))
			}
			m.Image = mi.ID
			if mc, ok := s.rt.(runtime.MountChecker); ok {
				if err := mc.CheckMount(ctx, *m); err != nil {
					return nil, grpcError(fmt.Errorf("create container %q: mounts[%d]: %w", c.GetMetadata().GetName(), i, err))
				}
			}
		}
	}
	rec := &containerRecord{ID: id, SandboxID: sid, CreatedAt: time.Now().UTC(), Image: ref, ImageID: img.ID,
		LogPath: logPath, Spec: spec, Resources: spec.Resources, config: cloneProto(c)}
	if err := s.store.putContainer(rec); err != nil {
		return nil, grpcError(err)
	}
	s.containerEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer implements the CRI: the runtime starts the recorded
// config. A start that fails leaves the container exited with reason
// StartError, as kubelet expects of a container that could not start.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	id, err := s.store.resolve("containers", req.GetContainerId())
	if err != nil {
		return nil, grpcError(fmt.Errorf("start container: %w", err))
	}
	rec, err := s.store.container(id)
	if err != nil {
		return nil, grpcError(fmt.Errorf("start container: %w", err))
	}
	unlockSandbox := s.locks.lock(rec.SandboxID)
	defer unlockSandbox()
	unlock := s.locks.lock(id)
	defer unlock()
	if rec, err = s.store.container(id); err != nil {
		return nil, grpcError(fmt.Errorf("start container: %w", err))
	}
	if rec.Started {
		return nil, grpcError(fmt.Errorf("start container %s: already started: %w", id, runtime.ErrConflict))
	}
	sb, err := s.store.sandbox(rec.SandboxID)
	if err != nil {
		return nil, grpcError(fmt.Errorf("start container %s: %w", id, err))
	}
	if sb.State != sandboxReady {
		return nil, grpcError(fmt.Errorf("start container %s: pod sandbox %s is %s: %w", id, sb.ID, sb.State, runtime.ErrConflict))
	}
	spec := *rec.Spec
	spec.Resources = rec.Resources
	t0 := time.Now()
	_, serr := s.rt.StartContainer(ctx, &spec)
	s.log.Debug().Str("container", id).Dur("runtime", time.Since(t0)).Err(serr).Msg("runtime start")
	rec.Started = true
	if serr != nil {
		// The runtime undid the start; the container is over.
		now := time.Now().UTC()
		rec.Final = &runtime.Container{ID: id, SandboxID: rec.SandboxID, State: runtime.ContainerExited,
			ExitCode: 128, Reason: "StartError", Message: serr.Error(), CreatedAt: rec.CreatedAt, FinishedAt: now}
	}
	if err := s.store.putContainer(rec); err != nil {
		return nil, grpcError(err)
	}
	if serr != nil {
		s.containerEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
		return nil, grpcError(fmt.Errorf("start container %s: %w", id, serr))
	}
	s.containerEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer implements the CRI. A created container has nothing to
// stop; stopping what is gone succeeds.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	rec, unlock, err := s.lockedContainer(req.GetContainerId())
	if err != nil || rec == nil {
		return &runtimeapi.StopContainerResponse{}, grpcError(err)
	}
	defer unlock()
	id := rec.ID
	if !rec.Started || rec.Final != nil {
		return &runtimeapi.StopContainerResponse{}, nil
	}
	grace := time.Duration(max(req.GetTimeout(), 0)) * time.Second
	if err := s.rt.StopContainer(ctx, id, grace); err != nil {
		return nil, grpcError(fmt.Errorf("stop container %s: %w", id, err))
	}
	// The exit watcher reports it too, maybe later than the removal that
	// may follow at once: kubelet takes a repeated event in its stride.
	s.containerEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer implements the CRI: a running container is killed. The
// log file stays: it is kubelet's.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	rec, unlock, err := s.lockedContainer(req.GetContainerId())
	if err != nil || rec == nil {
		return &runtimeapi.RemoveContainerResponse{}, grpcError(err)
	}
	defer unlock()
	id := rec.ID
	if rec.Started && rec.Final == nil {
		if err := s.rt.RemoveContainer(ctx, id); err != nil {
			return nil, grpcError(fmt.Errorf("remove container %s: %w", id, err))
		}
	}
	if err := s.store.deleteContainer(id); err != nil {
		return nil, grpcError(err)
	}
	s.containerEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// lockedContainer finds and locks a container for a call that succeeds
// when it is gone (stop, remove): a missing one is a nil record and no
// error.
func (s *Server) lockedContainer(idOrPrefix string) (*containerRecord, func(), error) {
	return locked(s, "containers", idOrPrefix, s.store.container)
}

// matches applies a listing's filter: ID and sandbox ID prefixes, labels.
func (rec *containerRecord) matches(id, sandboxID string, labels map[string]string) bool {
	return (id == "" || hasIDPrefix(rec.ID, id)) && (sandboxID == "" || hasIDPrefix(rec.SandboxID, sandboxID)) &&
		matchLabels(labels, rec.config.GetLabels())
}

// observe is a container's state as the CRI reports it.
func (s *Server) observe(ctx context.Context, rec *containerRecord) (*runtime.Container, error) {
	switch {
	case rec.Final != nil:
		return rec.Final, nil
	case !rec.Started:
		return &runtime.Container{ID: rec.ID, SandboxID: rec.SandboxID, State: runtime.ContainerCreated, CreatedAt: rec.CreatedAt}, nil
	}
	c, err := s.rt.GetContainer(ctx, rec.ID)
	if errors.Is(err, runtime.ErrNotFound) {
		return lostContainer(rec), nil
	}
	return c, err
}

var criState = map[runtime.ContainerState]runtimeapi.ContainerState{
	runtime.ContainerCreated: runtimeapi.ContainerState_CONTAINER_CREATED,
	runtime.ContainerRunning: runtimeapi.ContainerState_CONTAINER_RUNNING,
	runtime.ContainerExited:  runtimeapi.ContainerState_CONTAINER_EXITED,
	runtime.ContainerUnknown: runtimeapi.ContainerState_CONTAINER_UNKNOWN,
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (rec *containerRecord) imageSpec() *runtimeapi.ImageSpec {
	spec := cloneProto(rec.config.GetImage())
	if spec == nil {
		spec = &runtimeapi.ImageSpec{}
	}
	spec.Image = rec.Image
	return spec
}

// statusMounts are the mounts as asked, an image volume's with the ID of
// the image it mounts as image_ref (KEP-5365), as ContainerStatus.image_ref
// is the container's.
func (rec *containerRecord) statusMounts() []*runtimeapi.Mount {
	ms := rec.config.GetMounts()
	var out []*runtimeapi.Mount
	for i, m := range ms {
		if m.GetImage() != nil && rec.Spec != nil && i < len(rec.Spec.Mounts) {
			if out == nil {
				out = make([]*runtimeapi.Mount, len(ms))
				copy(out, ms)
			}
			m = cloneProto(m)
			m.Image.ImageRef = rec.Spec.Mounts[i].Image
			out[i] = m
		}
	}
	if out == nil {
		return ms
	}
	return out
}

func (s *Server) containerStatus(ctx context.Context, rec *containerRecord) (*runtimeapi.ContainerStatus, error) {
	c, err := s.observe(ctx, rec)
	if err != nil {
		return nil, err
	}
	cfg := rec.config
	st := &runtimeapi.ContainerStatus{
		Id: rec.ID, Metadata: cfg.GetMetadata(), State: criState[c.State],
		CreatedAt: rec.CreatedAt.UnixNano(), StartedAt: unixNano(c.StartedAt), FinishedAt: unixNano(c.FinishedAt),
		ExitCode: int32(c.ExitCode), Image: rec.imageSpec(), ImageRef: rec.ImageID, ImageId: rec.ImageID,
		Reason: c.Reason, Message: c.Message, Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		Mounts: rec.statusMounts(), LogPath: rec.LogPath, Resources: statusResources(rec),
	}
	if c.State == runtime.ContainerExited && st.Reason == "" {
		st.Reason = runtime.ReasonError
		if c.ExitCode == 0 {
			st.Reason = runtime.ReasonCompleted
		}
	}
	return st, nil
}

// statusResources reports the limits in force as kubelet expressed them.
func statusResources(rec *containerRecord) *runtimeapi.ContainerResources {
	in := rec.config.GetLinux().GetResources()
	out := &runtimeapi.LinuxContainerResources{}
	if in != nil {
		out = cloneProto(in)
	}
	r := rec.Resources
	if r.MemoryLimit > 0 {
		out.MemoryLimitInBytes = r.MemoryLimit
	}
	if r.CPULimitMilli > 0 && out.CpuQuota == 0 {
		out.CpuPeriod, out.CpuQuota = 100000, r.CPULimitMilli*100
	}
	if r.CPURequestMilli > 0 && out.CpuShares == 0 {
		out.CpuShares = r.CPURequestMilli * 1024 / 1000
	}
	return &runtimeapi.ContainerResources{Linux: out}
}

// containerInfo is the verbose status crictl inspect prints.
type containerInfo struct {
	SandboxID  string                   `json:"sandboxID"`
	PID        int                      `json:"pid"`
	CgroupPath string                   `json:"cgroupPath,omitempty"`
	Signal     string                   `json:"signal,omitempty"`
	Config     *runtime.ContainerConfig `json:"runtimeSpec,omitempty"`
}

// ContainerStatus implements the CRI.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	id, err := s.store.resolve("containers", req.GetContainerId())
	if err != nil {
		return nil, grpcError(err)
	}
	rec, err := s.store.container(id)
	if err != nil {
		return nil, grpcError(err)
	}
	st, err := s.containerStatus(ctx, rec)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: st}
	if req.GetVerbose() {
		info := containerInfo{SandboxID: rec.SandboxID, Config: rec.Spec}
		if c, err := s.observe(ctx, rec); err == nil {
			info.PID, info.CgroupPath, info.Signal = c.PID, c.CgroupPath, c.Signal
		}
		b, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func (s *Server) listContainers(ctx context.Context, f *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	recs, errs := s.store.containers()
	s.logErrors(errs)
	sort.Slice(recs, func(i, j int) bool { return recs[i].CreatedAt.Before(recs[j].CreatedAt) })
	var out []*runtimeapi.Container
	for _, rec := range recs {
		if !rec.matches(f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector()) {
			continue
		}
		c, err := s.observe(ctx, rec)
		if err != nil {
			return nil, err
		}
		state := criState[c.State]
		if st := f.GetState(); st != nil && st.GetState() != state {
			continue
		}
		out = append(out, &runtimeapi.Container{Id: rec.ID, PodSandboxId: rec.SandboxID, Metadata: rec.config.GetMetadata(),
			Image: rec.imageSpec(), ImageRef: rec.ImageID, ImageId: rec.ImageID, State: state, CreatedAt: rec.CreatedAt.UnixNano(),
			Labels: rec.config.GetLabels(), Annotations: rec.config.GetAnnotations()})
	}
	return out, nil
}

// ListContainers implements the CRI.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	out, err := s.listContainers(ctx, req.GetFilter())
	if err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

// StreamContainers implements the CRI's streamed listing.
func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	out, err := s.listContainers(stream.Context(), req.GetFilter())
	if err != nil {
		return grpcError(err)
	}
	return sendChunks(out, func(c []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: c})
	})
}

// UpdateContainerResources implements the CRI: the new limits apply to a
// running container at once (runtime.ResourceUpdater) and to a created one
// when it starts.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	id, err := s.store.resolve("containers", req.GetContainerId())
	if err != nil {
		return nil, grpcError(err)
	}
	unlock := s.locks.lock(id)
	defer unlock()
	rec, err := s.store.container(id)
	if err != nil {
		return nil, grpcError(err)
	}
	res, err := resources(req.GetLinux())
	if err != nil {
		return nil, grpcError(fmt.Errorf("update container %s: %w", id, err))
	}
	if rec.Started {
		if rec.Final != nil {
			return nil, grpcError(fmt.Errorf("update container %s: it has exited: %w", id, runtime.ErrConflict))
		}
		u, ok := s.rt.(runtime.ResourceUpdater)
		if !ok {
			return nil, grpcError(fmt.Errorf("update container %s: the runtime cannot change limits in place: %w", id, runtime.ErrInvalidConfig))
		}
		if err := u.UpdateContainerResources(ctx, id, res); err != nil {
			return nil, grpcError(err)
		}
	}
	merge := func(cur *int64, v int64) {
		if v != 0 {
			*cur = v
		}
	}
	merge(&rec.Resources.MemoryLimit, res.MemoryLimit)
	merge(&rec.Resources.CPULimitMilli, res.CPULimitMilli)
	merge(&rec.Resources.CPURequestMilli, res.CPURequestMilli)
	if l := req.GetLinux(); l != nil {
		if rec.config.Linux == nil {
			rec.config.Linux = &runtimeapi.LinuxContainerConfig{}
		}
		rec.config.Linux.Resources = cloneProto(l)
	}
	if err := s.store.putContainer(rec); err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// ReopenContainerLog implements the CRI for kubelet's rotation: kubelet
// has renamed the log; a new file is made at the path and the runtime's
// writer, which follows the path, continues there.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	id, err := s.store.resolve("containers", req.GetContainerId())
	if err != nil {
		return nil, grpcError(err)
	}
	rec, err := s.store.container(id)
	if err != nil {
		return nil, grpcError(err)
	}
	c, err := s.observe(ctx, rec)
	if err != nil {
		return nil, grpcError(err)
	}
	if c.State != runtime.ContainerRunning {
		return nil, grpcError(fmt.Errorf("reopen log of container %s: it is not running: %w", id, runtime.ErrConflict))
	}
	if rec.LogPath == "" {
		return nil, grpcError(fmt.Errorf("reopen log of container %s: it has no CRI log path: %w", id, runtime.ErrInvalidConfig))
	}
	// Never through a symlink put in the log's place: this runs as root.
	f, err := os.OpenFile(rec.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, grpcError(fmt.Errorf("reopen log of container %s: %w", id, err))
	}
	f.Close()
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

// ExecSync implements the CRI. A timeout is DeadlineExceeded, which
// kubelet reads as a probe timeout; the process is killed.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	id, err := s.store.resolve("containers", req.GetContainerId())
	if err != nil {
		return nil, grpcError(err)
	}
	if len(req.GetCmd()) == 0 {
		return nil, grpcError(invalid("cmd", "empty"))
	}
	var stdout, stderr bytes.Buffer
	code, err := s.rt.Exec(ctx, id, runtime.ExecOptions{Cmd: req.GetCmd(), Stdout: &stdout, Stderr: &stderr,
		Timeout: time.Duration(req.GetTimeout()) * time.Second})
	if err != nil {
		return nil, grpcError(fmt.Errorf("exec in container %s: %w", id, err))
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(code)}, nil
}
