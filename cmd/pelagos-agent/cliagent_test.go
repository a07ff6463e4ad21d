package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/agent"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

// cliAgent is the agent's API over the fake runtime, fed from a manifest
// directory of the test's and driven pass by pass, so that what the
// client commands print is reproducible: every time comes from the
// test's clock.
type cliAgent struct {
	t    *testing.T
	sock string
	dir  string
	f    *fake.Runtime
	rec  *reconcile.Reconciler
	kube *kubeapi.Server
	srv  *api.Server
	ctx  context.Context
	wg   sync.WaitGroup

	mu  sync.Mutex
	now time.Time
}

// cliNodeIP is the node's address the fake host reports (TEST-NET-1).
const cliNodeIP = "192.0.2.10"

type fixedHost struct{}

func (fixedHost) HostInfo(context.Context) (kubeapi.HostInfo, error) {
	return kubeapi.HostInfo{InternalIP: cliNodeIP, CPUs: 2, MemoryBytes: 4 << 30, PIDsMax: 32768}, nil
}

// cliEpoch is where the test clock starts.
var cliEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newCLIAgent(t *testing.T, manifests map[string]string) *cliAgent {
	t.Helper()
	// The manifest directory's name has a fixed length, so that tables
	// that show it line up the same way in every run (normalize).
	dir := fmt.Sprintf("/tmp/pelagos-cli-%08x", rand.Uint32())
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &cliAgent{t: t, dir: dir, f: fake.New(), now: cliEpoch}
	a.f.SetClock(a.clock)
	// Init containers complete; a container named "crash" fails at once;
	// the others run.
	a.f.OnStart(func(cfg *runtime.ContainerConfig) (bool, int) {
		switch {
		case cfg.Annotations[reconcile.AnnotationInit] == "true":
			return true, 0
		case cfg.Name == "crash":
			return true, 3
		}
		return false, 0
	})
	a.rec = reconcile.New(reconcile.Config{Runtime: a.f, Images: a.f, Log: zerolog.Nop(), Resync: time.Hour, Now: a.clock})
	a.kube = kubeapi.New(kubeapi.Config{Backend: a.rec, Runtime: a.f, NodeName: "node", Host: fixedHost{},
		Version: "v0.0.0-test", Log: zerolog.Nop(), Now: a.clock})
	a.srv = &api.Server{Backend: a.rec, Runtime: a.f, Kube: a.kube, Log: zerolog.Nop()}
	a.sock = filepath.Join(t.TempDir(), "agent.sock")
	l, err := api.Listen(a.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.ctx = ctx
	a.wg.Go(func() { a.srv.Serve(ctx, l) })
	t.Cleanup(func() { cancel(); a.wg.Wait() })
	a.write(manifests)
	return a
}

func (a *cliAgent) clock() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.now
}

func (a *cliAgent) advance(d time.Duration) {
	a.mu.Lock()
	a.now = a.now.Add(d)
	a.mu.Unlock()
}

// write puts manifests into the directory, loads it as the agent does
// and runs passes until every pod settles.
func (a *cliAgent) write(manifests map[string]string) {
	a.t.Helper()
	for name, body := range manifests {
		if err := os.WriteFile(filepath.Join(a.dir, name), []byte(body), 0o644); err != nil {
			a.t.Fatal(err)
		}
	}
	snap, err := manifest.LoadDir(a.dir, manifest.Options{SkipTrustCheck: true})
	if err != nil {
		a.t.Fatal(err)
	}
	a.rec.SetDesired(reconcile.Translator{NodeName: "node"}.FromSnapshot(snap, nil))
	a.kube.SetSnapshot(snap)
	a.settle()
}

// settle runs passes for every pod until none plans anything more (a
// back-off counts as settled).
func (a *cliAgent) settle() {
	a.t.Helper()
	for _, p := range a.rec.Pods() {
		key := runtime.PodKey{Namespace: p.Metadata.Namespace, Name: p.Metadata.Name}
		for i := 0; ; i++ {
			plan, _ := a.rec.Sync(a.ctx, key)
			if plan.Empty() {
				break
			}
			if i == 20 {
				a.t.Fatalf("pod %s does not settle:\n%s", key, plan.String())
			}
		}
	}
}

// cli runs a command against the agent, the way main does.
func (a *cliAgent) cli(args ...string) (string, string, error) {
	a.t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(a.ctx, append(slices.Clone(args), "--socket", a.sock), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// serveTLS serves the API on loopback TCP with the agent's TLS material
// and returns a kubeconfig for it, as `run --api-listen` and `kubeconfig`
// do.
func (a *cliAgent) serveTLS() string {
	a.t.Helper()
	root := a.t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.t.Fatal(err)
	}
	cfg, err := agent.ServerTLS(root, l.Addr())
	if err != nil {
		a.t.Fatal(err)
	}
	a.wg.Go(func() { a.srv.ServeTLS(a.ctx, l, cfg) })
	var out, errb bytes.Buffer
	if err := run(a.ctx, []string{"kubeconfig", "--root", root, "--server", "https://" + l.Addr().String()}, &out, &errb); err != nil {
		a.t.Fatalf("kubeconfig: %v %s", err, errb.String())
	}
	path := filepath.Join(a.t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		a.t.Fatal(err)
	}
	return path
}

// normalize gives the manifest directory the same name (of the same
// length) in every run.
func (a *cliAgent) normalize(s string) string {
	return strings.ReplaceAll(s, a.dir, "/tmp/pelagos-cli-xxxxxxxx")
}

// measureAges makes the client commands measure ages against the test's
// clock, five seconds after its present, until the test ends.
func (a *cliAgent) measureAges() {
	orig := clock
	a.t.Cleanup(func() { clock = orig })
	clock = func() time.Time { return a.clock().Add(5 * time.Second) }
}
