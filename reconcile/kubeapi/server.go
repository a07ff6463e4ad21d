package kubeapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/workload"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec/node"
)

// Backend is what the facade reads from the reconciler;
// *reconcile.Reconciler implements it.
type Backend interface {
	Pods() []reconcile.Pod
	Pod(key runtime.PodKey) (reconcile.Pod, bool)
	Events() *reconcile.Events
	Ready() bool
	Observe(ctx context.Context, key runtime.PodKey) (reconcile.ObservedPod, error)
	Desired(key runtime.PodKey) *reconcile.DesiredPod
}

// Config configures the facade.
type Config struct {
	Backend Backend
	Runtime runtime.Runtime
	// NodeName is the node's name (the host name), as pods' spec.nodeName.
	NodeName string
	// Host describes the machine for the Node object and its metrics;
	// nil serves a node with only its name.
	Host HostSource
	// Version is the agent's version (gitVersion, kubelet and runtime
	// versions); Commit its commit.
	Version, Commit string
	// MaxPods is the node's pod capacity (default 110, as kubelet's).
	MaxPods int
	// Node is the node's identity (spec/node): its labels, the
	// well-known ones included, and its taints, as the agent matches pods
	// with them. When set, its name is NodeName; nil serves a node with
	// the well-known labels of NodeName only.
	Node *node.Node
	// Writes, when set, accepts writes of Pods, ConfigMaps and Secrets as
	// manifest files in its directory; nil keeps the API read-only.
	Writes *Writer
	// Streams serve exec, attach and port-forward.
	Streams Streams
	// Changes tells the facade which pods a pass touched (see Changes).
	Changes *Changes
	// Workloads lists the workloads and their status, served read-only
	// as apps/v1 and batch/v1; nil serves none.
	Workloads func() []workload.Object
	Log       zerolog.Logger
	Now       func() time.Time
}

// Server is the Kubernetes API facade.
type Server struct {
	cfg   Config
	vs    *versions
	start time.Time

	pods   *pods
	events *events
	node   *nodeState
	docs   *docs
	// metrics.k8s.io: measured on request.
	nodeSampler, podSampler *sampler
	nodeMetrics, podMetrics *collection
	resources               map[string]*resourceDef // by group/version/resource
	order                   []*resourceDef          // discovery order
	openapi                 openAPICache
	watchStart              chan struct{}
	mux                     http.Handler
	// bookmarkEvery is how often a watch that allows bookmarks gets one
	// (the API server sends them about once a minute).
	bookmarkEvery time.Duration
}

// New returns a facade; Run keeps it current and Handler serves it.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxPods <= 0 {
		cfg.MaxPods = 110
	}
	if cfg.Changes == nil {
		cfg.Changes = NewChanges()
	}
	if cfg.Node != nil {
		cfg.NodeName = cfg.Node.Name
	}
	s := &Server{cfg: cfg, start: cfg.Now(), watchStart: make(chan struct{}, 1), bookmarkEvery: time.Minute}
	s.vs = newVersions(s.start)
	s.pods = newPods(s)
	s.events = newEvents(s)
	s.node = newNodeState(s)
	s.docs = newDocs(s)
	s.nodeSampler, s.podSampler = newSampler(cfg.Now), newSampler(cfg.Now)
	s.nodeMetrics, s.podMetrics = newCollection(s.vs), newCollection(s.vs)
	s.registerResources()
	if cfg.Workloads != nil {
		s.registerWorkloads()
	}
	s.mux = s.routes()
	return s
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// Run keeps watched collections current until ctx ends: events as the
// reconciler records them, pods as passes touch them. It costs nothing
// while nobody watches beyond taking in events; lists and gets bring
// their collection up to date themselves.
func (s *Server) Run(ctx context.Context) {
	evs, cancel := s.cfg.Backend.Events().Subscribe()
	defer cancel()
	s.events.refreshAll()
	// A slow safety net catches what no pass or event announces (a
	// manifest error on a pod that is not re-passed); it ticks only while
	// someone watches.
	var tick *time.Ticker
	var tickC <-chan time.Time
	for {
		watching := s.pods.coll.watching() || s.node.coll.watching()
		switch {
		case watching && tick == nil:
			tick = time.NewTicker(5 * time.Second)
			tickC = tick.C
		case !watching && tick != nil:
			tick.Stop()
			tick, tickC = nil, nil
		}
		select {
		case <-ctx.Done():
			if tick != nil {
				tick.Stop()
			}
			return
		case ev := <-evs:
			s.events.record(ev)
			if ev.InvolvedObject.Kind == "Pod" && s.pods.coll.watching() {
				s.pods.refresh(runtime.PodKey{Namespace: ev.InvolvedObject.Namespace, Name: ev.InvolvedObject.Name})
			}
		case <-s.cfg.Changes.signal:
			keys := s.cfg.Changes.take()
			if s.pods.coll.watching() {
				for _, k := range keys {
					s.pods.refresh(k)
				}
			}
		case <-tickC:
			if s.pods.coll.watching() {
				s.pods.refreshAll()
			}
			if s.node.coll.watching() {
				s.node.refresh(ctx)
			}
		case <-s.watchStart:
		}
	}
}

// Handler serves the API. Every request must carry an Identity
// (WithIdentity).
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	health := func(check func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if err := check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		}
	}
	alive := func() error { return nil }
	mux.HandleFunc("GET /healthz", health(alive))
	mux.HandleFunc("GET /livez", health(alive))
	mux.HandleFunc("GET /readyz", health(s.ready))
	mux.HandleFunc("GET /version", s.serveVersion)
	mux.HandleFunc("GET /api", s.serveCoreVersions)
	mux.HandleFunc("GET /api/v1", s.serveResourceList)
	mux.HandleFunc("GET /apis", s.serveGroups)
	mux.HandleFunc("GET /apis/{group}", s.serveGroup)
	mux.HandleFunc("GET /apis/{group}/{version}", s.serveResourceList)
	mux.HandleFunc("GET /openapi/v2", s.serveOpenAPIV2)
	mux.HandleFunc("GET /openapi/v3", s.serveOpenAPIV3Index)
	mux.HandleFunc("GET /openapi/v3/{path...}", s.serveOpenAPIV3)
	mux.HandleFunc("/api/v1/", s.serveResource)
	mux.HandleFunc("/apis/", s.serveResource)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, newError(http.StatusNotFound, "NotFound", "the server could not find the requested resource"))
	})
	return mux
}

// ready is /readyz: start-up recovery and the first manifest load done.
func (s *Server) ready() error {
	if !s.cfg.Backend.Ready() {
		return errNotReady
	}
	return nil
}

var errNotReady = errors.New("not ready: start-up recovery or the first manifest load has not finished")

// writeJSON writes v as the response, as application/json unless the
// caller set another JSON media type.
func writeJSON(w http.ResponseWriter, code int, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func queryInt(r *http.Request, name string) (int64, bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, errBadRequest("%s: %q is not an integer", name, s)
	}
	return n, true, nil
}
