package kubeapi

import (
	"context"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/streaming"
)

// Streams serve pods' streaming subresources (exec, attach, port-forward
// over WebSocket and SPDY). A nil handler answers 501. The handlers get the
// request as the client sent it, with the path values "namespace" and
// "name" (the pod) set; they find the container with Server.Resolve.
type Streams struct {
	Exec, Attach, PortForward http.Handler
}

// SetStreams installs the streaming handlers (before serving: they need
// the server's Resolve).
func (s *Server) SetStreams(st Streams) { s.cfg.Streams = st }

// RuntimeStreams are the handlers of runtime/streaming over the server's
// runtime, resolving the container a request names as pods/log does.
func (s *Server) RuntimeStreams() Streams {
	resolve := func(ctx context.Context, pod runtime.PodKey, container string) (streaming.Target, error) {
		t, err := s.Resolve(ctx, pod.Namespace, pod.Name, container)
		if err != nil {
			return streaming.Target{}, err
		}
		return streaming.Target{ContainerID: t.ContainerID, SandboxID: t.SandboxID, TTY: t.TTY, Stdin: t.Stdin}, nil
	}
	rt := s.cfg.Runtime
	return Streams{
		Exec:        streaming.ExecHandler(rt, resolve),
		Attach:      streaming.AttachHandler(rt, resolve),
		PortForward: streaming.PortForwardHandler(rt, resolve),
	}
}

func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, ri requestInfo, sub string) error {
	var h http.Handler
	switch sub {
	case "exec":
		h = s.cfg.Streams.Exec
	case "attach":
		h = s.cfg.Streams.Attach
	case "portforward":
		h = s.cfg.Streams.PortForward
	}
	if h == nil {
		return newError(http.StatusNotImplemented, "NotImplemented", "pods/%s is not yet served by this agent", sub)
	}
	if _, ok := s.pods.coll.get(ri.namespace, ri.name); !ok {
		s.pods.refresh(podKey(ri.namespace, ri.name))
		if _, ok := s.pods.coll.get(ri.namespace, ri.name); !ok {
			return errNotFound("pods", ri.name)
		}
	}
	r.SetPathValue("namespace", ri.namespace)
	r.SetPathValue("name", ri.name)
	h.ServeHTTP(w, r)
	return nil
}

// Target is the container a streaming request means.
type Target struct {
	Pod         runtime.PodKey
	Container   string // its name
	ContainerID string
	SandboxID   string
	// TTY and Stdin are the container's own settings (attach honours
	// them).
	TTY, Stdin bool
	Running    bool
}

// Resolve finds the container of a pod that a request names, with the same
// defaulting and errors (a Kubernetes Status) as pods/log. Errors are
// *apiError values; WriteError writes them.
func (s *Server) Resolve(ctx context.Context, namespace, pod, container string) (Target, error) {
	key := podKey(namespace, pod)
	s.pods.refresh(key)
	o, ok := s.pods.coll.get(namespace, pod)
	if !ok {
		return Target{}, errNotFound("pods", pod)
	}
	p := o.(*corev1.Pod)
	obs, err := s.cfg.Backend.Observe(ctx, key)
	if err != nil {
		return Target{}, errInternal("observe pod %s: %v", key, err)
	}
	name, init, err := resolveContainerName(p, obs, container)
	if err != nil {
		return Target{}, err
	}
	c := findContainer(obs, name, false)
	if c == nil {
		return Target{}, errBadRequest("container %q in pod %q is waiting to start", name, pod)
	}
	t := Target{Pod: key, Container: name, ContainerID: c.ID, SandboxID: c.SandboxID, Running: c.State == runtime.ContainerRunning}
	list := p.Spec.Containers
	if init {
		list = p.Spec.InitContainers
	}
	for _, sc := range list {
		if sc.Name == name {
			t.TTY, t.Stdin = sc.TTY, sc.Stdin
		}
	}
	return t, nil
}

// WriteError writes err as a Kubernetes Status (errors from Resolve carry
// their code; others are 500).
func WriteError(w http.ResponseWriter, err error) { writeStatus(w, err) }

// Changes hears from the reconciler which pods a pass touched, through the
// prober seam (reconcile.Hooks.Prober is told after every pass), so that
// watches of pods see changes without polling.
type Changes struct {
	next   reconcile.Prober
	signal chan struct{}

	mu    sync.Mutex
	dirty map[runtime.PodKey]struct{}
}

// NewChanges returns a Changes that forwards to no prober yet.
func NewChanges() *Changes {
	return &Changes{signal: make(chan struct{}, 1), dirty: map[runtime.PodKey]struct{}{}}
}

// Chain makes c forward every update to next (the real prober) and
// returns c as the prober to install.
func (c *Changes) Chain(next reconcile.Prober) reconcile.Prober {
	c.next = next
	return c
}

// Update implements reconcile.Prober: note the pod, then tell the prober.
func (c *Changes) Update(key runtime.PodKey, pod *reconcile.DesiredPod, running []*runtime.Container) {
	c.mu.Lock()
	c.dirty[key] = struct{}{}
	c.mu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
	if c.next != nil {
		c.next.Update(key, pod, running)
	}
}

func (c *Changes) take() []runtime.PodKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]runtime.PodKey, 0, len(c.dirty))
	for k := range c.dirty {
		out = append(out, k)
	}
	clear(c.dirty)
	return out
}
