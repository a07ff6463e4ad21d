package cri

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// cpuSampler turns cumulative CPU time into a rate (usage_nano_cores), as
// kubelet's summary API wants, from the previous sample of each object.
type cpuSampler struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	at    time.Time
	nanos uint64
}

func newCPUSampler() *cpuSampler { return &cpuSampler{last: map[string]cpuSample{}} }

// rate records a sample and returns the CPU use since the previous one in
// nanocores, or nil for the first.
func (c *cpuSampler) rate(key string, at time.Time, nanos uint64) *runtimeapi.UInt64Value {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.last[key]
	c.last[key] = cpuSample{at: at, nanos: nanos}
	if !ok || !at.After(prev.at) || nanos < prev.nanos {
		return nil
	}
	dt := at.Sub(prev.at).Nanoseconds()
	return &runtimeapi.UInt64Value{Value: uint64(float64(nanos-prev.nanos) / float64(dt) * 1e9)}
}

func (c *cpuSampler) forget(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.last {
		if !keep[k] {
			delete(c.last, k)
		}
	}
}

// containerStats samples one container: running ones from the runtime's
// cgroup counters; others report zero use with a timestamp. It also
// returns the container's process count.
func (s *Server) containerStats(ctx context.Context, rec *containerRecord) (*runtimeapi.ContainerStats, uint64, error) {
	now := time.Now()
	st := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: rec.ID, Metadata: rec.config.GetMetadata(),
			Labels: rec.config.GetLabels(), Annotations: rec.config.GetAnnotations()},
		Cpu:    &runtimeapi.CpuUsage{Timestamp: now.UnixNano(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{}},
		Memory: &runtimeapi.MemoryUsage{Timestamp: now.UnixNano(), WorkingSetBytes: &runtimeapi.UInt64Value{}, UsageBytes: &runtimeapi.UInt64Value{}},
	}
	p, ok := s.rt.(runtime.StatsProvider)
	if !ok || !rec.Started || rec.Final != nil {
		return st, 0, nil
	}
	c, err := s.rt.GetContainer(ctx, rec.ID)
	if err != nil || c.State != runtime.ContainerRunning {
		return st, 0, nil
	}
	u, err := p.ContainerStats(ctx, rec.ID)
	if err != nil {
		return nil, 0, err
	}
	st.Cpu.UsageCoreNanoSeconds.Value = u.CPUUsageNanos
	st.Cpu.UsageNanoCores = s.stats.rate(rec.ID, now, u.CPUUsageNanos)
	// The runtime reports the cgroup's charge (page cache included) as
	// its memory; that is the usage, and the closest to a working set it
	// gives.
	st.Memory.UsageBytes.Value, st.Memory.WorkingSetBytes.Value = u.MemoryBytes, u.MemoryBytes
	return st, u.Pids, nil
}

// ContainerStats implements the CRI.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	id, err := s.store.resolve("containers", req.GetContainerId())
	if err != nil {
		return nil, grpcError(err)
	}
	rec, err := s.store.container(id)
	if err != nil {
		return nil, grpcError(err)
	}
	st, _, err := s.containerStats(ctx, rec)
	if err != nil {
		return nil, grpcError(fmt.Errorf("stats of container %s: %w", id, err))
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

func (s *Server) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	recs, errs := s.store.containers()
	s.logErrors(errs)
	var out []*runtimeapi.ContainerStats
	keep := map[string]bool{}
	for _, rec := range recs {
		keep[rec.ID] = true
		if !rec.matches(f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector()) {
			continue
		}
		st, _, err := s.containerStats(ctx, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	if f == nil {
		s.stats.forget(keep)
	}
	return out, nil
}

// ListContainerStats implements the CRI.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	out, err := s.listContainerStats(ctx, req.GetFilter())
	if err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

// StreamContainerStats implements the CRI's streamed listing.
func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	out, err := s.listContainerStats(stream.Context(), req.GetFilter())
	if err != nil {
		return grpcError(err)
	}
	return sendChunks(out, func(c []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: c})
	})
}

// podStats sums the pod's containers and reads the pod's network from
// the pause process's view of its namespace.
func (s *Server) podStats(ctx context.Context, o *observedSandbox, ctrs []*containerRecord) (*runtimeapi.PodSandboxStats, error) {
	now := time.Now()
	c := o.rec.config
	lx := &runtimeapi.LinuxPodSandboxStats{
		Cpu:     &runtimeapi.CpuUsage{Timestamp: now.UnixNano(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{}},
		Memory:  &runtimeapi.MemoryUsage{Timestamp: now.UnixNano(), WorkingSetBytes: &runtimeapi.UInt64Value{}, UsageBytes: &runtimeapi.UInt64Value{}},
		Process: &runtimeapi.ProcessUsage{Timestamp: now.UnixNano(), ProcessCount: &runtimeapi.UInt64Value{}},
	}
	for _, rec := range ctrs {
		if rec.SandboxID != o.rec.ID {
			continue
		}
		st, pids, err := s.containerStats(ctx, rec)
		if err != nil {
			return nil, err
		}
		lx.Containers = append(lx.Containers, st)
		lx.Cpu.UsageCoreNanoSeconds.Value += st.Cpu.UsageCoreNanoSeconds.GetValue()
		lx.Memory.UsageBytes.Value += st.Memory.UsageBytes.GetValue()
		lx.Memory.WorkingSetBytes.Value += st.Memory.WorkingSetBytes.GetValue()
		lx.Process.ProcessCount.Value += pids
	}
	lx.Cpu.UsageNanoCores = s.stats.rate("pod/"+o.rec.ID, now, lx.Cpu.UsageCoreNanoSeconds.Value)
	if o.rt != nil && o.rt.PausePID > 0 && o.rt.Namespaces.Network == runtime.NamespacePod {
		if ifs, err := netDev(o.rt.PausePID); err == nil {
			lx.Network = &runtimeapi.NetworkUsage{Timestamp: now.UnixNano(), Interfaces: ifs}
			for _, i := range ifs {
				if i.Name == "eth0" {
					lx.Network.DefaultInterface = i
				}
			}
		}
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: o.rec.ID, Metadata: c.GetMetadata(), Labels: c.GetLabels(), Annotations: c.GetAnnotations()},
		Linux:      lx,
	}, nil
}

// netDev reads the interface counters of pid's network namespace from
// /proc/<pid>/net/dev, without entering it; loopback is left out.
func netDev(pid int) ([]*runtimeapi.NetworkInterfaceUsage, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/net/dev")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*runtimeapi.NetworkInterfaceUsage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || name == "lo" {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 11 {
			continue
		}
		v := func(i int) *runtimeapi.UInt64Value {
			n, _ := strconv.ParseUint(fs[i], 10, 64)
			return &runtimeapi.UInt64Value{Value: n}
		}
		// Receive: bytes packets errs ...; transmit starts at field 8.
		out = append(out, &runtimeapi.NetworkInterfaceUsage{Name: name, RxBytes: v(0), RxErrors: v(2), TxBytes: v(8), TxErrors: v(10)})
	}
	return out, sc.Err()
}

// PodSandboxStats implements the CRI.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	o, err := s.sandboxByID(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, grpcError(err)
	}
	ctrs, errs := s.store.containers()
	s.logErrors(errs)
	st, err := s.podStats(ctx, o, ctrs)
	if err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

func (s *Server) listPodStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	all, err := s.listSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	ctrs, errs := s.store.containers()
	s.logErrors(errs)
	var out []*runtimeapi.PodSandboxStats
	for _, o := range all {
		if f.GetId() != "" && !hasIDPrefix(o.rec.ID, f.GetId()) || !matchLabels(f.GetLabelSelector(), o.rec.config.GetLabels()) {
			continue
		}
		st, err := s.podStats(ctx, o, ctrs)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// ListPodSandboxStats implements the CRI.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	out, err := s.listPodStats(ctx, req.GetFilter())
	if err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}

// StreamPodSandboxStats implements the CRI's streamed listing.
func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	out, err := s.listPodStats(stream.Context(), req.GetFilter())
	if err != nil {
		return grpcError(err)
	}
	return sendChunks(out, func(c []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: c})
	})
}
