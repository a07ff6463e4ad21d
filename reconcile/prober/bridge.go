package prober

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// FromSpec translates a manifest probe; nil stays nil.
func FromSpec(p *spec.Probe) *Probe {
	if p == nil {
		return nil
	}
	out := &Probe{
		InitialDelay:     time.Duration(p.InitialDelaySeconds) * time.Second,
		Period:           time.Duration(p.PeriodSeconds) * time.Second,
		Timeout:          time.Duration(p.TimeoutSeconds) * time.Second,
		SuccessThreshold: int(p.SuccessThreshold),
		FailureThreshold: int(p.FailureThreshold),
	}
	if p.TerminationGracePeriodSeconds != nil {
		g := time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
		out.TerminationGracePeriod = &g
	}
	switch h := p.ProbeHandler; {
	case h.Exec != nil:
		out.Exec = &ExecAction{Command: append([]string(nil), h.Exec.Command...)}
	case h.HTTPGet != nil:
		out.HTTPGet = HTTPGetFromSpec(h.HTTPGet)
	case h.TCPSocket != nil:
		out.TCPSocket = &TCPSocketAction{Host: h.TCPSocket.Host, Port: portFromSpec(h.TCPSocket.Port)}
	case h.GRPC != nil:
		out.GRPC = &GRPCAction{Port: h.GRPC.Port}
		if h.GRPC.Service != nil {
			out.GRPC.Service = *h.GRPC.Service
		}
	}
	return out
}

// HTTPGetFromSpec translates an httpGet action (probes and hooks share it).
func HTTPGetFromSpec(h *spec.HTTPGetAction) *HTTPGetAction {
	a := &HTTPGetAction{Scheme: string(h.Scheme), Host: h.Host, Path: h.Path, Port: portFromSpec(h.Port)}
	for _, hd := range h.HTTPHeaders {
		a.Headers = append(a.Headers, HTTPHeader{Name: hd.Name, Value: hd.Value})
	}
	return a
}

func portFromSpec(p spec.IntOrString) Port {
	if p.IsString {
		return Port{Name: p.StrVal}
	}
	return Port{Number: p.IntVal}
}

// NamedPorts maps a manifest container's named ports to numbers.
func NamedPorts(c *spec.Container) map[string]int32 {
	ports := map[string]int32{}
	for _, p := range c.Ports {
		if p.Name != "" {
			ports[p.Name] = p.ContainerPort
		}
	}
	return ports
}

// PodIP is where the agent reaches a pod from the host: its sandbox IP, or
// loopback for a hostNetwork pod (which has none of its own).
func PodIP(sb *runtime.Sandbox) string {
	if sb.IP != "" {
		return sb.IP
	}
	return "127.0.0.1"
}

// Reporter is what the reconciler offers probers (reconcile.Reconciler
// implements it).
type Reporter interface {
	SetReady(key runtime.PodKey, container string, ready bool)
	Kill(ctx context.Context, key runtime.PodKey, containerID, reason string, grace time.Duration) error
}

// StartReporter is a Reporter that also hears when a container's startup
// probe passed (reconcile.Reconciler implements it): a native sidecar
// holds the next init container back until then.
type StartReporter interface {
	SetStarted(key runtime.PodKey, container, containerID string)
}

// SandboxExecer is the runtime part the bridge uses: exec for exec probes
// and the sandbox for the pod IP.
type SandboxExecer interface {
	Execer
	GetSandbox(ctx context.Context, id string) (*runtime.Sandbox, error)
}

// Bridge connects a Manager to the reconciler: it implements
// reconcile.Prober (start probing what runs, stop what went) and turns
// updates into SetReady and Kill calls. Set Reporter before the reconciler
// runs (the two refer to each other).
type Bridge struct {
	rt       SandboxExecer
	Reporter Reporter
	// OnError, when set, hears why a running container could not be put
	// under probes (its sandbox could not be read, its probe is invalid);
	// the next pass tries again.
	OnError func(key runtime.PodKey, container string, err error)
	// Events, when set, receives a Warning "Unhealthy" event for each probe
	// that crosses its failure threshold, as the kubelet records them.
	Events *reconcile.Events
	m      *Manager

	mu    sync.Mutex
	pods  map[runtime.PodKey]map[string]string // container ID -> name
	grace map[string]time.Duration             // container ID -> pod grace
}

var _ reconcile.Prober = (*Bridge)(nil)

// NewBridge returns a bridge whose manager uses rt for exec probes; opts'
// OnUpdate, if set, is called for every update (events, logs) before the
// bridge acts on it.
func NewBridge(rt SandboxExecer, opts Options) (*Bridge, error) {
	b := &Bridge{rt: rt, pods: map[runtime.PodKey]map[string]string{}, grace: map[string]time.Duration{}}
	next := opts.OnUpdate
	opts.Exec = rt
	opts.OnUpdate = func(u Update) {
		if next != nil {
			next(u)
		}
		b.handle(u)
	}
	m, err := NewManager(opts)
	if err != nil {
		return nil, err
	}
	b.m = m
	return b, nil
}

// Stopping tells the bridge the reconciler is about to stop the container
// (hooks.Runner.BeforeStop): its probes stop judging it.
func (b *Bridge) Stopping(ctr *runtime.Container) { b.m.Suspend(ctr.ID) }

// Manager exposes the underlying manager (status queries, tests).
func (b *Bridge) Manager() *Manager { return b.m }

// Close stops all probing.
func (b *Bridge) Close() { b.m.Close() }

func (b *Bridge) handle(u Update) {
	key := runtime.PodKey{Namespace: u.Namespace, Name: u.Pod}
	if b.Events != nil && u.Result == Failure {
		b.Events.Record(reconcile.EventWarning, "Unhealthy",
			reconcile.ObjectRef{Kind: "Pod", Namespace: u.Namespace, Name: u.Pod, FieldPath: "spec.containers{" + u.ContainerName + "}"},
			fmt.Sprintf("%s probe failed: %s", u.Kind, u.Message))
	}
	rep := b.Reporter
	if rep == nil {
		return
	}
	switch {
	case u.Kind == Readiness:
		rep.SetReady(key, u.ContainerName, u.Result == Success)
	case u.Kind == Startup && u.Result == Success:
		if sr, ok := rep.(StartReporter); ok {
			sr.SetStarted(key, u.ContainerName, u.ContainerID)
		}
		st, _ := b.m.Status(u.ContainerID)
		rep.SetReady(key, u.ContainerName, st.Ready)
	}
	if !u.Restart {
		return
	}
	b.mu.Lock()
	grace, ok := b.grace[u.ContainerID]
	b.mu.Unlock()
	if !ok {
		grace = 30 * time.Second
	}
	if u.GracePeriod != nil {
		grace = *u.GracePeriod
	}
	reason := fmt.Sprintf("Container %s failed %s probe, will be restarted: %s", u.ContainerName, lower(u.Kind), u.Message)
	// Kill waits up to the grace period: never in the probe goroutine's
	// caller chain, which must stay responsive.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace+30*time.Second)
		defer cancel()
		_ = rep.Kill(ctx, key, u.ContainerID, reason, grace)
	}()
}

func lower(k Kind) string {
	switch k {
	case Liveness:
		return "liveness"
	case Readiness:
		return "readiness"
	}
	return "startup"
}

// Update implements reconcile.Prober: probe the running containers of the
// pod, stop probing the others. It does not wait for stopped workers.
func (b *Bridge) Update(key runtime.PodKey, d *reconcile.DesiredPod, running []*runtime.Container) {
	var pod *spec.Pod
	if d != nil {
		pod = d.Pod()
	}
	live := map[string]*runtime.Container{}
	if pod != nil {
		for _, c := range running {
			live[c.ID] = c
		}
	}
	b.mu.Lock()
	known := b.pods[key]
	if known == nil {
		known = map[string]string{}
		b.pods[key] = known
	}
	var gone []string
	for id := range known {
		if live[id] == nil {
			gone = append(gone, id)
			delete(known, id)
			delete(b.grace, id)
		}
	}
	var fresh []*runtime.Container
	for _, c := range running { // in the reconciler's order, not the map's
		if _, ok := known[c.ID]; !ok && live[c.ID] != nil {
			fresh = append(fresh, c)
		}
	}
	if len(known) == 0 && len(fresh) == 0 {
		delete(b.pods, key)
	}
	b.mu.Unlock()

	if len(gone) > 0 {
		go func() {
			for _, id := range gone {
				b.m.Remove(id)
			}
		}()
	}
	for _, c := range fresh {
		sc := findContainer(pod, c.Name)
		if sc != nil && sc.ReadinessProbe == nil && sc.StartupProbe == nil && b.Reporter != nil {
			// Nothing gates readiness: clear a not-ready verdict left by an
			// earlier container of this name whose manifest had a probe.
			// SetReady is a no-op when nothing changes.
			b.Reporter.SetReady(key, c.Name, true)
		}
		if sc == nil || (sc.LivenessProbe == nil && sc.ReadinessProbe == nil && sc.StartupProbe == nil) {
			continue
		}
		sb, err := b.rt.GetSandbox(context.Background(), c.SandboxID)
		if err != nil {
			b.fail(key, c.Name, fmt.Errorf("probe container %s of pod %s: %w", c.Name, key, err))
			continue
		}
		ps := Probes{Liveness: FromSpec(sc.LivenessProbe), Readiness: FromSpec(sc.ReadinessProbe), Startup: FromSpec(sc.StartupProbe)}
		if ps.Readiness != nil || ps.Startup != nil {
			// A new container is not ready until its probes say so.
			if b.Reporter != nil {
				b.Reporter.SetReady(key, c.Name, false)
			}
		}
		t := Target{
			Namespace: key.Namespace, Pod: key.Name, ContainerName: c.Name, ContainerID: c.ID,
			PodIP: PodIP(sb), StartedAt: c.StartedAt, Ports: NamedPorts(sc),
		}
		if t.StartedAt.IsZero() {
			t.StartedAt = c.CreatedAt
		}
		if err := b.m.Add(t, ps); err != nil {
			b.fail(key, c.Name, err)
			continue
		}
		b.mu.Lock()
		if b.pods[key] == nil {
			b.pods[key] = map[string]string{}
		}
		b.pods[key][c.ID] = c.Name
		b.grace[c.ID] = d.Grace
		b.mu.Unlock()
	}
}

func (b *Bridge) fail(key runtime.PodKey, container string, err error) {
	if b.OnError != nil {
		b.OnError(key, container, err)
	}
}

// findContainer finds an app container or a native sidecar (an init
// container with probes) of the pod.
func findContainer(p *spec.Pod, name string) *spec.Container {
	if p == nil {
		return nil
	}
	return p.Spec.Container(name)
}
