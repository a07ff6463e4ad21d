// Package api is the agent's local HTTP API and its client, which the CLI
// uses. The API is the Kubernetes API of package kubeapi, served on a unix
// socket that only root may open (and, optionally, on TCP with TLS and
// client certificates), plus a few routes of the agent's own under
// /pelagos/, where they cannot collide with a Kubernetes path:
//
//	/metrics                                          Prometheus metrics
//	/pelagos/v1/errors                                manifest problems that belong to no pod
//	/pelagos/v1/workloads                             Deployments, StatefulSets, DaemonSets, Jobs and their status
//
// Everything else is Kubernetes': /api, /apis, /version, /openapi, /healthz...
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
	"github.com/pelagos-containers/pelagos-agent/reconcile/workload"
	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Backend is what the agent's own routes read; *reconcile.Reconciler
// implements it.
type Backend interface {
	FileErrors() []reconcile.FileError
	DirError() error
}

// Server serves the API.
type Server struct {
	Kube    *kubeapi.Server
	Backend Backend
	Runtime runtime.Runtime
	Metrics http.Handler // optional
	// Workloads lists the workload objects with their status (optional).
	Workloads func() []workload.Object
	Log       zerolog.Logger
}

// Handler returns the routes: the agent's own, then Kubernetes' for every
// other path.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	mux.HandleFunc("GET /pelagos/v1/errors", s.errors)
	mux.HandleFunc("GET /pelagos/v1/workloads", s.workloads)
	mux.Handle("/", s.Kube.Handler())
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

// Serve serves the unix socket l until ctx ends. Its clients are root: the
// socket is root-only.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return serve(ctx, l, kubeapi.WithIdentity(s.Handler(), kubeapi.Root), nil, s.Log)
}

// ServeTLS serves l with TLS until ctx ends. cfg must require and verify
// client certificates; a client is who its certificate says.
func (s *Server) ServeTLS(ctx context.Context, l net.Listener, cfg *tls.Config) error {
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		return errors.New("api: TCP serving needs client certificates required and verified")
	}
	return serve(ctx, l, kubeapi.WithIdentity(s.Handler(), kubeapi.CertIdentity), cfg, s.Log)
}

func serve(ctx context.Context, l net.Listener, h http.Handler, cfg *tls.Config, log zerolog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: cfg,
		BaseContext: func(net.Listener) context.Context { return ctx },
		// The server's own complaints (a TLS client without a
		// certificate, a broken connection) are a client's problem: debug.
		ErrorLog: stdlog.New(debugWriter{log}, "", 0)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	}()
	var err error
	if cfg != nil {
		err = srv.ServeTLS(l, "", "")
	} else {
		err = srv.Serve(l)
	}
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

func (s *Server) workloads(w http.ResponseWriter, _ *http.Request) {
	out := struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []workload.Object `json:"items"`
	}{APIVersion: "v1", Kind: "List", Items: []workload.Object{}}
	if s.Workloads != nil {
		out.Items = append(out.Items, s.Workloads()...)
	}
	writeJSON(w, out)
}

// debugWriter turns the http server's log lines into debug events.
type debugWriter struct{ log zerolog.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.log.Debug().Str("component", "api").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
