// Package api is the agent's local HTTP API, served on a unix socket that
// only root may open, and its client, which the CLI uses.
//
// Routes (all GET unless noted):
//
//	/healthz, /readyz                         liveness and readiness of the agent
//	/metrics                                  Prometheus metrics
//	/api/v1/pods                              a Kubernetes-style List of Pods
//	/api/v1/namespaces/{ns}/pods/{name}       one Pod
//	/api/v1/namespaces/{ns}/pods/{name}/log   ?container=&follow=&tailLines=&previous=&timestamps=
//	/api/v1/namespaces/{ns}/pods/{name}/exec         GET or POST, upgraded: the Kubernetes
//	/api/v1/namespaces/{ns}/pods/{name}/attach       streaming protocols (runtime/streaming),
//	/api/v1/namespaces/{ns}/pods/{name}/portforward  as kubectl speaks them
//	/api/v1/events                            ?namespace=&name=&watch= (watch streams JSON lines)
//	/api/v1/errors                            manifest problems that belong to no pod
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/streaming"
)

// Backend is what the API reads; *reconcile.Reconciler implements it.
type Backend interface {
	Pods() []reconcile.Pod
	Pod(key runtime.PodKey) (reconcile.Pod, bool)
	Events() *reconcile.Events
	Ready() bool
	Observe(ctx context.Context, key runtime.PodKey) (reconcile.ObservedPod, error)
	Desired(key runtime.PodKey) *reconcile.DesiredPod
	FileErrors() []reconcile.FileError
	DirError() error
}

// Server serves the API.
type Server struct {
	Backend Backend
	Runtime runtime.Runtime
	Metrics http.Handler // optional
	Log     zerolog.Logger
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Backend.Ready() {
			http.Error(w, "not ready: start-up recovery or the first manifest load has not finished", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	mux.HandleFunc("GET /api/v1/pods", s.listPods)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods", s.listPods)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{name}", s.getPod)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{name}/log", s.logs)
	for sub, h := range map[string]http.Handler{
		"exec":        streaming.ExecHandler(s.Runtime, s.streamTarget),
		"attach":      streaming.AttachHandler(s.Runtime, s.streamTarget),
		"portforward": streaming.PortForwardHandler(s.Runtime, s.streamTarget),
	} {
		mux.Handle("GET /api/v1/namespaces/{ns}/pods/{name}/"+sub, h)
		mux.Handle("POST /api/v1/namespaces/{ns}/pods/{name}/"+sub, h)
	}
	mux.HandleFunc("GET /api/v1/events", s.events)
	mux.HandleFunc("GET /api/v1/errors", s.errors)
	return mux
}

// Listen opens the unix socket with root-only permissions, replacing a
// stale socket file left by a crash (the caller holds the single-instance
// lock, so no live agent owns it).
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("api socket %s: remove stale: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	// The socket is created with the umask's mode; narrow it before anyone
	// could have connected in a way that matters (connect needs write).
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("api socket %s: chmod: %w", path, err)
	}
	return l, nil
}

// Serve serves on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Status is the error body of the API, in Kubernetes' Status shape.
type Status struct {
	Kind    string `json:"kind"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
	Code    int    `json:"code"`
}

func writeError(w http.ResponseWriter, code int, reason, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(Status{Kind: "Status", Status: "Failure", Message: fmt.Sprintf(format, args...), Reason: reason, Code: code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) listPods(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	list := reconcile.PodList{APIVersion: "v1", Kind: "List", Items: []reconcile.Pod{}}
	for _, p := range s.Backend.Pods() {
		if ns == "" || p.Metadata.Namespace == ns {
			list.Items = append(list.Items, p)
		}
	}
	writeJSON(w, list)
}

func podKey(r *http.Request) runtime.PodKey {
	return runtime.PodKey{Namespace: r.PathValue("ns"), Name: r.PathValue("name")}
}

func (s *Server) getPod(w http.ResponseWriter, r *http.Request) {
	key := podKey(r)
	p, ok := s.Backend.Pod(key)
	if !ok {
		writeError(w, http.StatusNotFound, "NotFound", "pods %q not found in namespace %q", key.Name, key.Namespace)
		return
	}
	writeJSON(w, p)
}

func (s *Server) errors(w http.ResponseWriter, _ *http.Request) {
	type fileErr struct {
		File    string `json:"file"`
		Field   string `json:"field,omitempty"`
		Pod     string `json:"pod,omitempty"`
		Message string `json:"message"`
	}
	out := struct {
		Directory string    `json:"directory,omitempty"`
		Files     []fileErr `json:"files"`
	}{Files: []fileErr{}}
	if err := s.Backend.DirError(); err != nil {
		out.Directory = err.Error()
	}
	for _, fe := range s.Backend.FileErrors() {
		e := fileErr{File: fe.File, Field: fe.Field, Message: fe.Message}
		if fe.Pod != nil {
			e.Pod = fe.Pod.String()
		}
		out.Files = append(out.Files, e)
	}
	writeJSON(w, out)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
	match := func(ev reconcile.Event) bool {
		return (ns == "" || ev.InvolvedObject.Namespace == ns) && (name == "" || ev.InvolvedObject.Name == name)
	}
	evs := s.Backend.Events()
	if !boolParam(r, "watch") {
		out := []reconcile.Event{}
		for _, ev := range evs.List() {
			if match(ev) {
				out = append(out, ev)
			}
		}
		writeJSON(w, struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Items      []reconcile.Event `json:"items"`
		}{"v1", "List", out})
		return
	}
	// Watch: what is kept first, then new events as they come, one JSON
	// object per line.
	ch, cancel := evs.Subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	var last uint64
	for _, ev := range evs.List() {
		if match(ev) {
			_ = enc.Encode(ev)
		}
		last = max(last, ev.Seq)
	}
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-ch:
			if ev.Seq <= last || !match(ev) {
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

func boolParam(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}

// pickContainer finds the container a logs or exec request means: by name,
// or the pod's only (first) app container; previous picks the attempt
// before the current one.
func (s *Server) pickContainer(ctx context.Context, key runtime.PodKey, name string, previous bool) (*runtime.Container, int, string) {
	obs, err := s.Backend.Observe(ctx, key)
	if err != nil {
		return nil, http.StatusInternalServerError, err.Error()
	}
	if len(obs.Sandboxes) == 0 && len(obs.Containers) == 0 {
		return nil, http.StatusNotFound, fmt.Sprintf("pod %s has no sandbox (not running)", key)
	}
	if name == "" {
		if d := s.Backend.Desired(key); d != nil && len(d.Containers) > 0 {
			name = d.Containers[0].Name
		} else {
			for _, c := range obs.Containers {
				if c.Annotations[reconcile.AnnotationInit] == "" {
					name = c.Name
					break
				}
			}
		}
	}
	// The newest sandbox's containers, newest attempt first.
	var box *runtime.Sandbox
	for _, sb := range obs.Sandboxes {
		if box == nil || sb.CreatedAt.After(box.CreatedAt) {
			box = sb
		}
	}
	var list []*runtime.Container
	for _, c := range obs.Containers {
		if c.Name == name && (box == nil || c.SandboxID == box.ID) {
			list = append(list, c)
		}
	}
	for i := range list {
		for j := i + 1; j < len(list); j++ {
			if list[j].Attempt > list[i].Attempt {
				list[i], list[j] = list[j], list[i]
			}
		}
	}
	idx := 0
	if previous {
		idx = 1
	}
	if len(list) <= idx {
		what := "container"
		if previous {
			what = "previous terminated container"
		}
		return nil, http.StatusNotFound, fmt.Sprintf("%s %q in pod %s not found", what, name, key)
	}
	return list[idx], 0, ""
}

// streamTarget resolves exec, attach and port-forward requests: the
// container as logs pick it (by name, or the pod's first app container),
// which must be running, with its spec's tty and stdin.
func (s *Server) streamTarget(ctx context.Context, key runtime.PodKey, name string) (streaming.Target, error) {
	c, code, msg := s.pickContainer(ctx, key, name, false)
	switch {
	case c == nil && code == http.StatusNotFound:
		return streaming.Target{}, kindError{msg, runtime.ErrNotFound}
	case c == nil:
		return streaming.Target{}, errors.New(msg)
	case c.State != runtime.ContainerRunning:
		return streaming.Target{}, kindError{fmt.Sprintf("container %s is %s, not running", containerName(key, c.Name), c.State), runtime.ErrConflict}
	}
	t := streaming.Target{ContainerID: c.ID, SandboxID: c.SandboxID}
	if d := s.Backend.Desired(key); d != nil {
		for _, dc := range d.Containers {
			if dc.Name == c.Name {
				t.TTY, t.Stdin = dc.Config.TTY, dc.Config.Stdin
			}
		}
	}
	return t, nil
}

// kindError is a message for people that is also of an error kind.
type kindError struct {
	msg  string
	kind error
}

func (e kindError) Error() string { return e.msg }
func (e kindError) Unwrap() error { return e.kind }

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	key := podKey(r)
	c, code, msg := s.pickContainer(r.Context(), key, r.URL.Query().Get("container"), boolParam(r, "previous"))
	if c == nil {
		writeError(w, code, "NotFound", "%s", msg)
		return
	}
	if c.LogPath == "" {
		writeError(w, http.StatusNotFound, "NotFound", "container %s of pod %s has no log file", c.Name, key)
		return
	}
	opts := crilog.ReadOptions{Timestamps: boolParam(r, "timestamps")}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var out io.Writer = w
	if f, ok := w.(http.Flusher); ok {
		out = flushWriter{w: w, f: f}
	}
	if tail, err := strconv.Atoi(r.URL.Query().Get("tailLines")); err == nil && tail >= 0 {
		var count lineCounter
		if err := crilog.Read(c.LogPath, &count, opts); err != nil && !errors.Is(err, os.ErrNotExist) {
			writeError(w, http.StatusInternalServerError, "InternalError", "read log of %s/%s: %v", key, c.Name, err)
			return
		}
		out = &skipLines{w: out, skip: max(0, count.n-tail)}
	}
	if !boolParam(r, "follow") || c.State != runtime.ContainerRunning {
		if err := crilog.Read(c.LogPath, out, opts); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.Log.Warn().Err(err).Str("pod", key.String()).Msg("read log")
		}
		return
	}
	// Follow until the container exits: its exit is seen by polling the
	// runtime only while someone follows.
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				cur, err := s.Runtime.GetContainer(ctx, c.ID)
				if err != nil || cur.State != runtime.ContainerRunning {
					return
				}
			}
		}
	}()
	if err := crilog.Follow(ctx, c.LogPath, out, opts, done); err != nil {
		s.Log.Warn().Err(err).Str("pod", key.String()).Msg("follow log")
	}
}

type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (fw flushWriter) Write(b []byte) (int, error) {
	n, err := fw.w.Write(b)
	fw.f.Flush()
	return n, err
}

type lineCounter struct{ n int }

func (c *lineCounter) Write(b []byte) (int, error) {
	c.n += bytes.Count(b, []byte{'\n'})
	return len(b), nil
}

// skipLines drops the first skip lines written to it (for --tail).
type skipLines struct {
	w    io.Writer
	skip int
}

func (s *skipLines) Write(b []byte) (int, error) {
	n := len(b)
	for s.skip > 0 && len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return n, nil
		}
		b = b[i+1:]
		s.skip--
	}
	if len(b) == 0 {
		return n, nil
	}
	_, err := s.w.Write(b)
	return n, err
}

// containerName is "ns/pod/container" for messages.
func containerName(key runtime.PodKey, c string) string {
	return strings.Join([]string{key.Namespace, key.Name, c}, "/")
}
