package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

// DefaultAPIListen is where the Kubernetes API is served over TCP unless
// --api-listen says otherwise: kubectl cannot open a unix socket, so a
// loopback endpoint (TLS, client certificates only) is how it reaches the
// node. 6448 is next to, not on, the ports of kube-apiserver (6443) and
// k3s (6444).
const DefaultAPIListen = "127.0.0.1:6448"

// newKubeAPI builds the Kubernetes API facade over the agent.
func newKubeAPI(o *Options, a *Agent) (*kubeapi.Server, *kubeapi.Writer, error) {
	var writes *kubeapi.Writer
	if o.APIWriteDir != "" {
		if err := os.MkdirAll(o.APIWriteDir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("--api-write-dir: %w", err)
		}
		var err error
		writes, err = kubeapi.NewWriter(o.APIWriteDir, manifest.Options{SkipTrustCheck: o.SkipTrustCheck, AllowUnsafeSysctls: o.Runtime.AllowUnsafeSysctls})
		if err != nil {
			return nil, nil, fmt.Errorf("--api-write-dir: %w", err)
		}
	}
	kube := kubeapi.New(kubeapi.Config{
		Backend: a.rec, Runtime: a.rt, Node: a.node, Host: newHostReader(a.stateRoot),
		Version: o.Version, Commit: o.Commit, MaxPods: o.MaxPods, Writes: writes,
		Changes: a.changes, Workloads: a.workloads.Workloads, Log: o.Log.With().Str("component", "kubeapi").Logger(),
	})
	kube.SetStreams(kube.RuntimeStreams())
	return kube, writes, nil
}

// serveTCP serves the API on --api-listen with TLS; the address actually
// bound is recorded for the kubeconfig command.
func serveTCP(ctx context.Context, wg *sync.WaitGroup, o *Options, srv *api.Server) (func(), error) {
	root := o.Runtime.StateRoot
	l, err := net.Listen("tcp", o.APIListen)
	if err != nil {
		return nil, fmt.Errorf("--api-listen %s: %w (give each agent its own address, or \"\" to serve only the socket)", o.APIListen, err)
	}
	cfg, err := ServerTLS(root, l.Addr())
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("--api-listen: %w", err)
	}
	endpoint := filepath.Join(tlsDir(root), endpointFile)
	if err := writeFile(endpoint, []byte(l.Addr().String()+"\n")); err != nil {
		l.Close()
		return nil, fmt.Errorf("--api-listen: record the endpoint: %w", err)
	}
	wg.Go(func() {
		if err := srv.ServeTLS(ctx, l, cfg); err != nil {
			o.Log.Error().Err(err).Msg("TCP API server stopped")
		}
	})
	o.Log.Info().Str("address", l.Addr().String()).Msg("Kubernetes API served over TLS; `pelagos-agent kubeconfig` prints a kubeconfig for it")
	return func() { os.Remove(endpoint) }, nil
}

func resolveDir(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

// loadMerger combines the loads of several watched directories (the
// manifests and the API's write directory) into one: the latest of each,
// merged with the loader's duplicate rule. Callers hold its lock for the
// whole handling of a load, so merged loads reach the reconciler in order.
type loadMerger struct {
	sync.Mutex
	last []*manifest.Load
}

func newLoadMerger(n int) *loadMerger { return &loadMerger{last: make([]*manifest.Load, n)} }

// add records directory i's load and returns the merged load, once every
// directory has loaded. Without a truth in one directory there is none.
func (m *loadMerger) add(i int, ld manifest.Load) (manifest.Load, bool) {
	m.last[i] = &ld
	if len(m.last) == 1 {
		return ld, true
	}
	out := manifest.Load{Reason: ld.Reason, Changed: ld.Changed}
	var files []*manifest.FileResult
	for _, l := range m.last {
		if l == nil {
			return out, false
		}
		if l.Err != nil {
			out.Err = l.Err
			return out, true
		}
		for _, fr := range l.Snapshot.Files {
			// Merge edits the results it is given; each directory's last
			// load must stay as loaded for the next merge.
			c := *fr
			c.Pods, c.ConfigMaps, c.Secrets, c.Errs = slices.Clone(fr.Pods), slices.Clone(fr.ConfigMaps), slices.Clone(fr.Secrets), slices.Clone(fr.Errs)
			c.Claims, c.Workloads, c.Warnings = slices.Clone(fr.Claims), slices.Clone(fr.Workloads), slices.Clone(fr.Warnings)
			files = append(files, &c)
		}
	}
	out.Snapshot = manifest.Merge(files...)
	return out, true
}
