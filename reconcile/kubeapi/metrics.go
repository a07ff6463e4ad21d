package kubeapi

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

type reading struct {
	t   time.Time
	cpu uint64
}

// sampler keeps, per container (or for the node), the reading a window
// starts from. CPU usage is a rate: two readings of the cumulative CPU
// time over a window. The first request for a container waits minWindow
// for its second reading; later ones use an earlier reading as the start
// of their window, which is renewed once it is maxWindow old
// (metrics-server's resolution). Nothing is read between requests.
type sampler struct {
	now                  func() time.Time
	minWindow, maxWindow time.Duration

	mu    sync.Mutex
	start map[string]reading
}

func newSampler(now func() time.Time) *sampler {
	return &sampler{now: now, minWindow: time.Second, maxWindow: 15 * time.Second, start: map[string]reading{}}
}

// usage is one measured rate.
type usage struct {
	nanocores int64
	t         time.Time
	window    time.Duration
}

// rates reads the cumulative CPU time of ids, waiting once if some window
// would be shorter than minWindow, and returns the rates. Ids not asked
// for are forgotten.
func (sm *sampler) rates(ctx context.Context, ids []string, read func(id string) (uint64, bool)) (map[string]usage, error) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	take := func() map[string]reading {
		out := map[string]reading{}
		for _, id := range ids {
			if cpu, ok := read(id); ok {
				out[id] = reading{sm.now(), cpu}
			}
		}
		return out
	}
	cur := take()
	for id := range sm.start {
		if _, ok := cur[id]; !ok {
			delete(sm.start, id)
		}
	}
	wait := time.Duration(0)
	for id, r := range cur {
		st, ok := sm.start[id]
		if !ok || r.t.Sub(st.t) > 10*sm.maxWindow || r.cpu < st.cpu {
			// No usable start (new, stale, or a counter that went back:
			// another container with this ID): start the window now.
			sm.start[id] = r
			st = r
		}
		if d := sm.minWindow - r.t.Sub(st.t); d > wait {
			wait = d
		}
	}
	if wait > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		cur = take()
	}
	out := map[string]usage{}
	for id, r := range cur {
		st, ok := sm.start[id]
		dt := r.t.Sub(st.t)
		if !ok || dt <= 0 || r.cpu < st.cpu {
			continue
		}
		out[id] = usage{nanocores: int64(float64(r.cpu-st.cpu) / dt.Seconds()), t: r.t, window: dt}
		if dt >= sm.maxWindow {
			sm.start[id] = r
		}
	}
	return out, nil
}

func cpuQuantity(nanocores int64) resource.Quantity {
	return *resource.NewScaledQuantity(nanocores, resource.Nano)
}

func errMetricsUnavailable(what string) *apiError {
	return newError(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "metrics not available for %s: the runtime does not report usage", what)
}

// refreshNodeMetrics measures the node from the host's CPU time and memory.
func (s *Server) refreshNodeMetrics(ctx context.Context) error {
	if s.cfg.Host == nil {
		return errMetricsUnavailable("the node")
	}
	var mem int64
	var herr error
	rates, err := s.nodeSampler.rates(ctx, []string{"node"}, func(string) (uint64, bool) {
		h, err := s.cfg.Host.HostInfo(ctx)
		if err != nil {
			herr = err
			return 0, false
		}
		mem = h.MemoryWorkingSet
		return h.CPUUsageNanos, true
	})
	if err != nil {
		return err
	}
	u, ok := rates["node"]
	if !ok {
		if herr != nil {
			return errInternal("read the host: %v", herr)
		}
		return errMetricsUnavailable("the node")
	}
	s.nodeMetrics.replace([]object{&metricsv1beta1.NodeMetrics{
		TypeMeta:   metav1.TypeMeta{Kind: "NodeMetrics", APIVersion: "metrics.k8s.io/v1beta1"},
		ObjectMeta: metav1.ObjectMeta{Name: s.cfg.NodeName, CreationTimestamp: metav1.NewTime(u.t), Labels: s.nodeLabels()},
		Timestamp:  metav1.NewTime(u.t), Window: metav1.Duration{Duration: u.window},
		Usage: corev1.ResourceList{corev1.ResourceCPU: cpuQuantity(u.nanocores),
			corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI)},
	}})
	return nil
}

func (s *Server) nodeLabels() map[string]string {
	if n, ok := s.node.coll.get("", s.cfg.NodeName); ok {
		return n.GetLabels()
	}
	return nil
}

// refreshPodMetrics measures every running container through the
// runtime's StatsProvider (its cgroups).
func (s *Server) refreshPodMetrics(ctx context.Context) error {
	sp, ok := s.cfg.Runtime.(runtime.StatsProvider)
	if !ok {
		return errMetricsUnavailable("pods")
	}
	type ctr struct {
		pod  runtime.PodKey
		name string
	}
	ctrs := map[string]ctr{}
	labels := map[runtime.PodKey]map[string]string{}
	var order []runtime.PodKey
	for _, p := range s.cfg.Backend.Pods() {
		key := podKey(p.Metadata.Namespace, p.Metadata.Name)
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil || cs.ContainerID == "" {
				continue
			}
			id := strings.TrimPrefix(cs.ContainerID, "pelagos://")
			if _, seen := labels[key]; !seen {
				order = append(order, key)
				labels[key] = p.Metadata.Labels
			}
			ctrs[id] = ctr{key, cs.Name}
		}
	}
	mem := map[string]int64{}
	ids := make([]string, 0, len(ctrs))
	for id := range ctrs {
		ids = append(ids, id)
	}
	rates, err := s.podSampler.rates(ctx, ids, func(id string) (uint64, bool) {
		st, err := sp.ContainerStats(ctx, id)
		if err != nil || st == nil {
			return 0, false
		}
		mem[id] = int64(st.MemoryBytes)
		return st.CPUUsageNanos, true
	})
	if err != nil {
		return err
	}
	var objs []object
	for _, key := range order {
		pm := &metricsv1beta1.PodMetrics{
			TypeMeta:   metav1.TypeMeta{Kind: "PodMetrics", APIVersion: "metrics.k8s.io/v1beta1"},
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: labels[key]},
		}
		for id, c := range ctrs {
			u, ok := rates[id]
			if c.pod != key || !ok {
				continue
			}
			pm.Containers = append(pm.Containers, metricsv1beta1.ContainerMetrics{Name: c.name, Usage: corev1.ResourceList{
				corev1.ResourceCPU: cpuQuantity(u.nanocores), corev1.ResourceMemory: *resource.NewQuantity(mem[id], resource.BinarySI)}})
			pm.Timestamp, pm.Window = metav1.NewTime(u.t), metav1.Duration{Duration: u.window}
		}
		if len(pm.Containers) == 0 {
			continue
		}
		sort.Slice(pm.Containers, func(i, j int) bool { return pm.Containers[i].Name < pm.Containers[j].Name })
		pm.CreationTimestamp = pm.Timestamp
		objs = append(objs, pm)
	}
	s.podMetrics.replace(objs)
	return nil
}
