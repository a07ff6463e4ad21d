// Package agent assembles the node agent — the runtime, the image store,
// the reconciler, the manifest watchers, the probes, the API, metrics and
// Kubernetes API servers, and the CRI server when configured — from
// Options, and runs it until its context ends, with systemd notification
// and signal-driven reload. It is the one composition root that builds
// runtime/linux (ADR 0010); nothing else under reconcile imports it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/agent/internal/resident"
	"github.com/pelagos-containers/pelagos-agent/reconcile/agent/internal/sdnotify"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/reconcile/hooks"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
	"github.com/pelagos-containers/pelagos-agent/reconcile/metrics"
	"github.com/pelagos-containers/pelagos-agent/reconcile/prober"
	"github.com/pelagos-containers/pelagos-agent/reconcile/workload"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/cri"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
	"github.com/pelagos-containers/pelagos-agent/spec/node"
)

// Options are what the agent is assembled from: the settings of `run`
// (and, in part, of `apply --once` and `cri`), with the runtime's and the
// image store's configuration already worked out from the host-wide
// settings.
type Options struct {
	// Runtime configures the real runtime; InsecureRegistries is set
	// from the field of the same name below.
	Runtime linux.Config
	// Images configures the image store (root, size caps, logger); the
	// insecure registries and the mirrors below are added.
	Images image.Options
	// Socket is the API's unix socket.
	Socket string
	// SettingsFile is the settings file the options came from ("" none),
	// for the log.
	SettingsFile string
	Log          zerolog.Logger
	// Out receives the plans of a dry run.
	Out io.Writer
	// Version and Commit name the build, for the metrics, the Kubernetes
	// API and the CRI.
	Version, Commit string
	// Reload works the settings out again on SIGHUP: the log level takes
	// effect at once, the settings it returns at the next start. Nil:
	// SIGHUP re-reads only the manifests.
	Reload func() (restart []string, err error)

	Manifests          string
	MetricsAddr        string
	Resync             time.Duration
	BackoffInitial     time.Duration
	BackoffMax         time.Duration
	Workers            int
	MaxPods            int
	Debounce           time.Duration
	RemovalSettle      time.Duration
	DryRun             bool
	StopPodsOnExit     bool
	SkipTrustCheck     bool
	InsecureRegistries []string
	Mirrors            map[string]string
	APIListen          string
	APIWriteDir        string
	NodeLabels         map[string]string
	NodeTaints         []string
	// CRI, with Listen set, also serves the CRI (Run only).
	CRI CRIOptions
}

// UsageError is a setting the agent cannot be assembled with: the command
// line's or the settings file's fault, not the node's.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// runtimeConfig is the runtime's configuration with the registries added.
func (o *Options) runtimeConfig() linux.Config {
	cfg := o.Runtime
	cfg.InsecureRegistries = o.InsecureRegistries
	return cfg
}

// imageOptions are the image store's options with the registries added.
func (o *Options) imageOptions() image.Options {
	opts := o.Images
	opts.InsecureRegistries, opts.Mirrors = o.InsecureRegistries, o.Mirrors
	return opts
}

// Agent is the assembled agent: runtime, image store, reconciler.
type Agent struct {
	node      *node.Node
	workloads *workload.Controller
	rt        *linux.Runtime
	// view is the runtime without the CRI's pods: what the reconciler
	// sees, so that it never removes kubelet's pods as unwanted.
	view    runtime.Runtime
	images  *image.Store
	rec     *reconcile.Reconciler
	metrics *metrics.Metrics
	bridge  *prober.Bridge
	changes *kubeapi.Changes
	lock    *os.File
	// stateRoot is the runtime's state root, where the node's disk is.
	stateRoot string
	// quiet releases memory once the agent has been idle (run only).
	quiet atomic.Pointer[resident.Quiet]
}

// activityMetrics tells the agent's quiet timer of every action applied:
// work done, so memory is released only once the node is idle again.
type activityMetrics struct {
	*metrics.Metrics
	a *Agent
}

func (m activityMetrics) Action(kind reconcile.ActionKind, err error, d time.Duration) {
	m.Metrics.Action(kind, err, d)
	if q := m.a.quiet.Load(); q != nil {
		q.Kick()
	}
}

// ReleaseAfter is how long the agent must have applied nothing before it
// gives back what it holds without using it (resident.Release): the pages
// of its executable that start-up or a burst of pod changes touched.
const ReleaseAfter = 10 * time.Second

// lockStateRoot takes the single-instance lock: an flock on
// <root>/agent.lock, which the kernel drops when the process dies, so a
// crash never leaves a stale lock. The file holds the owner's PID for the
// message a second agent prints.
func lockStateRoot(root string) (*os.File, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("state root %s: %w", root, err)
	}
	path := filepath.Join(root, "agent.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			owner := strings.TrimSpace(string(b[:n]))
			if owner == "" {
				owner = "-"
			}
			return nil, fmt.Errorf("another pelagos-agent (pid %s) already uses the state root %s (lock %s); stop it first or give this one its own --root", owner, root, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// New assembles the agent without its probes, for one convergence its
// caller drives (apply --once): the state root's lock, the runtime, the
// image store, the workload controllers and the reconciler. Close
// releases them.
func New(o Options) (*Agent, error) { return build(&o, false) }

// build makes the runtime, the image store and the reconciler. This is
// the only place the real runtime is built for the agent.
func build(o *Options, withProbes bool) (*Agent, error) {
	id, err := nodeIdentity(o)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	root := o.Runtime.StateRoot
	lock, err := lockStateRoot(root)
	if err != nil {
		return nil, err
	}
	a := &Agent{lock: lock, node: id, stateRoot: root}
	a.rt, err = linux.New(o.runtimeConfig())
	if err != nil {
		a.Close()
		return nil, err // "linux runtime: ..." already
	}
	a.images, err = image.Open(o.imageOptions())
	if err != nil {
		a.Close()
		return nil, err // "open image store DIR: ..." already
	}
	a.rt.SetImageStore(a.images)
	a.images.SetInUse(containersUse(a.rt))
	a.view = cri.WithoutCRI(a.rt)
	a.metrics = metrics.New()
	rc := o.Runtime
	a.metrics.SetAgentInfo(metrics.AgentInfo{Version: o.Version, Root: rc.StateRoot, RunRoot: rc.RunRoot, Bridge: rc.Bridge,
		Subnet: rc.Subnet, NetNSPrefix: rc.NetNSPrefix, NFTable: rc.NFTable, CgroupParent: rc.CgroupParent})
	events := reconcile.NewEvents(0, o.Log.With().Str("component", "events").Logger())
	var h reconcile.Hooks
	runner := hooks.New(a.rt)
	runner.Install(&h)
	if withProbes {
		a.bridge, err = prober.NewBridge(a.rt, prober.Options{Registerer: a.metrics.Registry()})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("prober: %w", err)
		}
		h.Prober = a.bridge
		// A container being stopped is no longer judged by its probes.
		runner.BeforeStop = a.bridge.Stopping
		a.bridge.Events = events
		a.bridge.OnError = func(key runtime.PodKey, container string, err error) {
			o.Log.Warn().Str("pod", key.String()).Str("container", container).Err(err).Msg("probes not started")
		}
	}
	maxPods := o.MaxPods
	if maxPods <= 0 {
		maxPods = -1 // reconcile reads 0 as its default
	}
	// The workload controllers and the API's watches hear of every pass
	// through the prober seam.
	var records workload.Store = workload.DirStore{Dir: filepath.Join(root, "workloads")}
	if o.DryRun {
		records = workload.NewMemStore() // a dry run changes nothing, a Job's record included
	}
	a.workloads = workload.New(workload.Config{Translator: a.Translator(),
		Store:   records,
		Backoff: reconcile.BackoffPolicy{Initial: o.BackoffInitial, Max: o.BackoffMax},
		Log:     o.Log.With().Str("component", "workloads").Logger()})
	h.Prober = a.workloads.Chain(h.Prober)
	a.changes = kubeapi.NewChanges()
	h.Prober = a.changes.Chain(h.Prober)
	a.rec = reconcile.New(reconcile.Config{
		Runtime: a.view, Images: a.images, Workers: o.Workers, Resync: o.Resync, MaxPods: maxPods, NodeName: id.Name,
		Backoff: reconcile.BackoffPolicy{Initial: o.BackoffInitial, Max: o.BackoffMax},
		DryRun:  o.DryRun, DryRunOut: o.Out,
		Log: o.Log, Events: events, Metrics: activityMetrics{a.metrics, a}, Hooks: h,
	})
	a.workloads.Attach(a.rec)
	if a.bridge != nil {
		a.bridge.Reporter = a.rec
	}
	a.metrics.WatchPods(a.rec)
	return a, nil
}

// Close stops the probes and releases the host-wide names and the state
// root's lock.
func (a *Agent) Close() {
	if a.bridge != nil {
		a.bridge.Close()
	}
	if a.rt != nil {
		a.rt.Close() // the host-wide names
	}
	if a.lock != nil {
		a.lock.Close()
	}
}

// settleOption maps the flag (0 = remove at once) onto WatchOptions.Settle
// (0 = the default, negative = off).
func settleOption(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// Translator translates manifests for this node: its name answers
// spec.nodeName references, its labels and taints decide which pods are
// meant for it, and its allocatable CPU and disk (under the state root)
// are the downward API's defaults for unset limits.
func (a *Agent) Translator() reconcile.Translator {
	cpu, disk := nodeAllocatable(a.stateRoot)
	return reconcile.Translator{NodeName: a.node.Name, Node: a.node, NodeMemory: nodeMemory(), NodeCPUMilli: cpu,
		NodeEphemeralStorage: disk, FileTime: fileCreated}
}

// Reconciler is the agent's reconciler.
func (a *Agent) Reconciler() *reconcile.Reconciler { return a.rec }

// Workloads is the agent's workload controller.
func (a *Agent) Workloads() *workload.Controller { return a.workloads }

// View is the runtime as the reconciler sees it: without the CRI's pods.
func (a *Agent) View() runtime.Runtime { return a.view }

// Run assembles the agent and runs it until ctx ends or a SIGTERM or
// SIGINT arrives; SIGHUP reloads the settings (Options.Reload) and the
// manifests. Pods keep running after it returns unless
// Options.StopPodsOnExit.
func Run(ctx context.Context, o Options) error {
	log := o.Log
	setAgentOOMScore(log)
	a, err := build(&o, true)
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	// A long-running agent keeps one shim (and container init) started
	// ahead of need, which takes both Go process starts off a container
	// start. The spare exits with the agent.
	if !o.DryRun {
		a.rt.EnableSpareShim()
		defer a.rt.DisableSpareShim()
	}

	kube, writes, err := newKubeAPI(&o, a)
	if err != nil {
		return err
	}
	l, err := api.Listen(o.Socket)
	if err != nil {
		return err
	}
	srv := &api.Server{Kube: kube, Backend: a.rec, Runtime: a.rt, Metrics: a.metrics.Handler(), Workloads: a.workloads.Workloads, Log: log}
	var wg sync.WaitGroup
	wg.Go(func() { kube.Run(ctx) })
	wg.Go(func() {
		if err := srv.Serve(ctx, l); err != nil {
			log.Error().Err(err).Msg("API server stopped")
		}
	})
	defer os.Remove(o.Socket)
	if o.APIListen != "" {
		stopTCP, err := serveTCP(ctx, &wg, &o, srv)
		if err != nil {
			return err
		}
		defer stopTCP()
	}
	if o.MetricsAddr != "" {
		ml, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %s: %w", o.MetricsAddr, err)
		}
		ms := &http.Server{Handler: a.metrics.Handler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() { _ = ms.Serve(ml) })
		go func() { <-ctx.Done(); ms.Close() }()
	}

	// Every change reloads the whole directory; the caches keep that to
	// the files whose bytes changed. The API's write directory, when it is
	// another directory, is watched too and both loads are merged.
	dirs := []string{o.Manifests}
	if writes != nil && resolveDir(writes.Dir()) != resolveDir(o.Manifests) {
		dirs = append(dirs, writes.Dir())
	}
	tr := a.Translator()
	tr.Cache = reconcile.NewTranslateCache()
	loaded := make(chan struct{})
	reloaded := make(chan struct{}, 1) // a full reload (SIGHUP, resync) was handed over
	var once sync.Once
	merged := newLoadMerger(len(dirs))
	var watchers []*manifest.Watcher
	for i, dir := range dirs {
		w, err := manifest.NewWatcher(dir, manifest.Options{SkipTrustCheck: o.SkipTrustCheck, AllowUnsafeSysctls: o.Runtime.AllowUnsafeSysctls, Cache: manifest.NewCache()},
			manifest.WatchOptions{Debounce: o.Debounce, Settle: settleOption(o.RemovalSettle)})
		if err != nil {
			return fmt.Errorf("watch %s: %w", dir, err)
		}
		watchers = append(watchers, w)
		wg.Go(func() {
			err := w.Run(ctx, func(one manifest.Load) {
				merged.Lock()
				defer merged.Unlock()
				ld, ok := merged.add(i, one)
				if !ok {
					return // the other directory has not loaded yet
				}
				set := tr.FromSnapshot(ld.Snapshot, ld.Err)
				set.Changed = ld.Changed
				if ld.Err != nil {
					log.Warn().Err(ld.Err).Str("reason", ld.Reason).Msg("manifest directory unavailable; keeping every pod as it is")
				} else {
					log.Debug().Str("reason", ld.Reason).Int("pods", len(set.Pods)).Int("errors", len(set.Errors)).Msg("manifests loaded")
				}
				a.workloads.SetManifests(set, ld.Snapshot)
				if ld.Err == nil {
					kube.SetSnapshot(ld.Snapshot)
				}
				once.Do(func() { close(loaded) })
				if ld.Reason == "reload" {
					select {
					case reloaded <- struct{}{}:
					default:
					}
				}
			})
			if err != nil && ctx.Err() == nil {
				log.Error().Err(err).Str("directory", dir).Msg("manifest watch stopped; relying on the periodic resync")
			}
		})
	}
	reload := func() {
		for _, w := range watchers {
			w.Reload()
		}
	}
	if o.CRI.Listen != "" && !o.DryRun {
		wg.Go(func() {
			if err := serveCRI(ctx, &o, a.rt, a.images); err != nil {
				log.Error().Err(err).Msg("CRI server stopped")
			}
		})
	}
	// Offline edge boxes receive images as archives dropped into
	// <root>/images/import: each is imported once and moved aside.
	wg.Go(func() {
		err := a.images.WatchImports(ctx, 0, func(imgs []*runtime.Image, err error) {
			for _, img := range imgs {
				log.Info().Strs("references", img.References).Str("id", img.ID).Msg("image imported from the import directory")
			}
			if err != nil {
				log.Warn().Err(err).Msg("image import directory")
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("image import watch stopped")
		}
	})
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		_ = a.rec.Run(ctx)
	}()
	wg.Go(func() { a.workloads.Run(ctx) })
	// The periodic resync re-reads the manifests too; the reconciler
	// re-lists the runtime on its own timer.
	wg.Go(func() {
		t := time.NewTicker(o.Resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				reload()
			}
		}
	})
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	select {
	case <-loaded:
	case <-ctx.Done():
	}
	select {
	case <-a.rec.Started():
	case <-ctx.Done():
	}
	if err := a.rec.DirError(); err != nil {
		// Up, adopting what runs, but without a truth to converge to: say
		// so; readiness (/readyz) waits for the first good load.
		log.Warn().Err(err).Msg("agent started; waiting for the manifest directory")
	} else {
		log.Info().Str("manifests", o.Manifests).Str("socket", o.Socket).Str("root", o.Runtime.StateRoot).Str("settings", o.SettingsFile).Msg("agent ready")
	}
	notifyReady(log, a.rec, o.Manifests)
	wg.Go(func() { watchdog(ctx, log, a.rec, recDone) })
	quiet := resident.NewQuiet(ReleaseAfter, func() {
		if err := resident.Release(); err != nil {
			log.Debug().Err(err).Msg("memory not released")
		}
	})
	a.quiet.Store(quiet)
	defer quiet.Stop()

	reloading := false
	for {
		select {
		case <-ctx.Done():
			return shutdown(a, &wg, recDone, &o)
		case <-reloaded:
			if reloading {
				reloading = false
				notifyReady(log, a.rec, o.Manifests)
			}
		case s := <-sigs:
			if s == syscall.SIGHUP {
				log.Info().Msg("SIGHUP: re-reading the settings and the manifests")
				notify(log, sdnotify.Reloading())
				reloading = true
				select {
				case <-reloaded: // an earlier reload's, not this one's
				default:
				}
				if o.Reload != nil {
					if restart, err := o.Reload(); err != nil {
						log.Error().Err(err).Msg("settings not reloaded; keeping the running ones")
					} else if len(restart) > 0 {
						log.Warn().Strs("settings", restart).Msg("settings changed that take effect at the next start")
					}
				}
				reload()
				continue
			}
			log.Info().Str("signal", s.String()).Bool("stopPods", o.StopPodsOnExit).Msg("shutting down")
			notify(log, sdnotify.Stopping())
			stop()
		}
	}
}

func shutdown(a *Agent, wg *sync.WaitGroup, recDone chan struct{}, o *Options) error {
	<-recDone
	wg.Wait()
	if !o.StopPodsOnExit {
		o.Log.Info().Msg("agent stopped; pods keep running and the next start adopts them")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a.rec.SetDesired(reconcile.DesiredSet{})
	if err := removeAll(ctx, a.rec, a.view, o.Workers); err != nil {
		return fmt.Errorf("stop pods on exit: %w", err)
	}
	o.Log.Info().Msg("agent stopped; every pod removed")
	return nil
}

// removeAll runs passes until the runtime holds no pod; the desired state
// must already be empty. Pods are removed in parallel (at most workers at
// once): each may take its whole grace period, and one slow pod must not
// hold up the others.
func removeAll(ctx context.Context, rec *reconcile.Reconciler, rt runtime.Runtime, workers int) error {
	if workers <= 0 {
		workers = 16
	}
	for attempt := 0; ; attempt++ {
		boxes, err := rt.ListSandboxes(ctx)
		if err != nil {
			return err
		}
		if len(boxes) == 0 {
			return nil
		}
		if attempt > 20 {
			return fmt.Errorf("%d sandboxes remain after %d passes", len(boxes), attempt)
		}
		seen := map[runtime.PodKey]bool{}
		var (
			mu   sync.Mutex
			errs []error
			wg   sync.WaitGroup
		)
		slots := make(chan struct{}, workers)
		for _, b := range boxes {
			if seen[b.Pod] {
				continue
			}
			seen[b.Pod] = true
			key := b.Pod
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				if _, err := rec.Sync(ctx, key); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
	}
}
