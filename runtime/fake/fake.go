// Package fake is an in-memory runtime.Runtime and runtime.ImageService for
// testing the reconciler: deterministic IDs, IPs, PIDs and clock, container
// exits simulated on demand, and failures injectable per operation. It passes
// the same conformance suite (runtime/runtimetest) as runtime/linux, which is
// what makes it trustworthy.
package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Op names a method whose calls can be made to fail.
type Op string

// Operations that accept injected failures. The argument a Failure's Match
// sees is given per operation.
const (
	OpCreateSandbox   Op = "CreateSandbox"   // arg: pod key "ns/name"
	OpRemoveSandbox   Op = "RemoveSandbox"   // arg: sandbox ID
	OpGetSandbox      Op = "GetSandbox"      // arg: sandbox ID
	OpListSandboxes   Op = "ListSandboxes"   // arg: ""
	OpStartContainer  Op = "StartContainer"  // arg: container name
	OpStopContainer   Op = "StopContainer"   // arg: container ID
	OpRemoveContainer Op = "RemoveContainer" // arg: container ID
	OpGetContainer    Op = "GetContainer"    // arg: container ID
	OpListContainers  Op = "ListContainers"  // arg: sandbox ID filter
	OpExec            Op = "Exec"            // arg: container ID
	OpAttach          Op = "Attach"          // arg: container ID
	OpPortForward     Op = "PortForward"     // arg: sandbox ID
	OpGC              Op = "GC"              // arg: ""
	OpEnsureImage     Op = "EnsureImage"     // arg: image reference
	OpGetImage        Op = "GetImage"        // arg: image reference
	OpListImages      Op = "ListImages"      // arg: ""
	OpRemoveImage     Op = "RemoveImage"     // arg: image reference
)

// Failure makes matching calls of Op return Err before doing anything.
type Failure struct {
	Op Op
	// Match selects calls by their argument; nil matches every call.
	Match func(arg string) bool
	// Times is how many matching calls fail; 0 means every one until
	// ClearFailures.
	Times int
	Err   error
	// HalfDone, for OpCreateSandbox only, leaves a not-ready sandbox behind
	// as a crash midway through creation would, before returning Err.
	HalfDone bool
}

// StopExitCode is the exit code StopContainer records, as a process killed
// by SIGTERM would report it.
const StopExitCode = 143

// Runtime is the in-memory runtime. The zero value is not usable; call New.
type Runtime struct {
	mu         sync.Mutex
	sandboxes  map[string]*runtime.Sandbox
	containers map[string]*runtime.Container
	resources  map[string]runtime.Resources // by container ID
	podRes     map[string]runtime.Resources // by sandbox ID
	images     map[string]*runtime.Image    // by reference
	failures   []*Failure
	calls      map[Op]int
	reads      int // objects handed out by Get and List calls
	pulls      map[string]int
	corrupt    map[string]corruption // "kind/id" -> damage not yet found
	problems   []runtime.RecordProblem
	watchers   []chan runtime.ExitEvent
	consoles   map[string]*console         // by container ID
	sizes      map[string]runtime.TermSize // last terminal size, by container ID
	ports      map[string]map[int32]string // served ports: sandbox ID -> port -> address
	seq        int
	now        func() time.Time
	onStart    func(cfg *runtime.ContainerConfig) (exits bool, code int)
	onExec     func(id string, opts runtime.ExecOptions) int
}

var (
	_ runtime.Runtime         = (*Runtime)(nil)
	_ runtime.ImageService    = (*Runtime)(nil)
	_ runtime.ExitWatcher     = (*Runtime)(nil)
	_ runtime.ProblemReporter = (*Runtime)(nil)
	_ runtime.ResourceUpdater = (*Runtime)(nil)
)

// Epoch is where the default clock starts. The default clock advances one
// millisecond per reading, so creation times are distinct and ordered.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// New returns an empty fake runtime.
func New() *Runtime {
	tick := Epoch
	return &Runtime{
		sandboxes:  map[string]*runtime.Sandbox{},
		containers: map[string]*runtime.Container{},
		resources:  map[string]runtime.Resources{},
		podRes:     map[string]runtime.Resources{},
		images:     map[string]*runtime.Image{},
		calls:      map[Op]int{},
		pulls:      map[string]int{},
		corrupt:    map[string]corruption{},
		consoles:   map[string]*console{},
		sizes:      map[string]runtime.TermSize{},
		ports:      map[string]map[int32]string{},
		now: func() time.Time {
			tick = tick.Add(time.Millisecond)
			return tick
		},
	}
}

// SetClock replaces the clock used for creation, start and finish times.
func (f *Runtime) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// Inject adds a failure.
func (f *Runtime) Inject(fl Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := fl
	f.failures = append(f.failures, &c)
}

// FailNext makes the next call of op fail with err.
func (f *Runtime) FailNext(op Op, err error) { f.Inject(Failure{Op: op, Times: 1, Err: err}) }

// ClearFailures drops every injected failure.
func (f *Runtime) ClearFailures() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = nil
}

// Calls reports how many times op was called (failed calls included).
func (f *Runtime) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Reads reports how many objects Get and List calls have handed out since
// New: the fake's stand-in for the records a real runtime reads and
// decodes, so tests and benchmarks can show what a pass or a resync costs.
func (f *Runtime) Reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// Pulls reports how many times EnsureImage pulled ref.
func (f *Runtime) Pulls(ref string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pulls[ref]
}

// OnStart decides, per started container, whether it exits at once and with
// what code. By default containers keep running until Exit or Stop.
func (f *Runtime) OnStart(fn func(cfg *runtime.ContainerConfig) (exits bool, code int)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onStart = fn
}

// OnExec decides the exit code of Exec; by default 0.
func (f *Runtime) OnExec(fn func(id string, opts runtime.ExecOptions) int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onExec = fn
}

// call counts op and returns the injected failure for it, if any. The
// caller holds f.mu.
func (f *Runtime) call(op Op, arg string) *Failure {
	f.calls[op]++
	for i, fl := range f.failures {
		if fl.Op != op || (fl.Match != nil && !fl.Match(arg)) {
			continue
		}
		if fl.Times > 0 {
			fl.Times--
			if fl.Times == 0 {
				f.failures = slices.Delete(f.failures, i, i+1)
			}
		}
		return fl
	}
	return nil
}

func (f *Runtime) newID(kind string) string {
	f.seq++
	return fmt.Sprintf("%s%04d", kind, f.seq)
}

// CreateSandbox implements runtime.Runtime.
func (f *Runtime) CreateSandbox(ctx context.Context, cfg *runtime.SandboxConfig) (*runtime.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := validSandboxConfig(cfg); err != nil {
		f.calls[OpCreateSandbox]++
		return nil, err
	}
	if cfg.ID != "" {
		if sb, ok := f.sandboxes[cfg.ID]; ok {
			f.calls[OpCreateSandbox]++
			if sb.Pod != cfg.Pod {
				return nil, fmt.Errorf("create sandbox %s for %s: held by %s: %w", cfg.ID, cfg.Pod, sb.Pod, runtime.ErrAlreadyExists)
			}
			return clone(sb), nil
		}
	}
	fl := f.call(OpCreateSandbox, cfg.Pod.String())
	if fl != nil && !fl.HalfDone {
		return nil, fl.Err
	}
	id := cfg.ID
	if id == "" {
		id = f.newID("sb")
	}
	ns := cfg.Namespaces
	if ns.Network == "" {
		ns.Network = runtime.NamespacePod
	}
	if ns.IPC == "" {
		ns.IPC = runtime.NamespacePod
	}
	if ns.PID == "" {
		ns.PID = runtime.NamespaceContainer
	}
	f.seq++
	sb := &runtime.Sandbox{
		ID:          id,
		Pod:         cfg.Pod,
		UID:         cfg.UID,
		Hostname:    cfg.Hostname,
		State:       runtime.SandboxReady,
		PausePID:    10000 + f.seq,
		Namespaces:  ns,
		Ports:       slices.Clone(cfg.Ports),
		Labels:      maps.Clone(cfg.Labels),
		Annotations: maps.Clone(cfg.Annotations),
		Owner:       cfg.Owner,
		CreatedAt:   f.now(),
	}
	if ns.Network == runtime.NamespacePod {
		sb.NetNSName = "fake-" + id
		sb.NetNSPath = "/run/netns/fake-" + id
		if !cfg.ExternalNetwork {
			sb.VethHost = "fv" + id
			sb.IP = fmt.Sprintf("10.88.%d.%d", (f.seq/250)%256, f.seq%250+2)
		}
	}
	f.sandboxes[id] = sb
	f.podRes[id] = cfg.Resources
	if fl != nil {
		sb.State = runtime.SandboxNotReady
		sb.Reason = "creation interrupted"
		sb.PausePID = 0
		return nil, fl.Err
	}
	return clone(sb), nil
}

func validSandboxConfig(cfg *runtime.SandboxConfig) error {
	if cfg == nil || cfg.Pod.Name == "" {
		return fmt.Errorf("create sandbox: pod name is empty: %w", runtime.ErrInvalidConfig)
	}
	if cfg.ID != "" && (strings.ContainsAny(cfg.ID, "/\\") || cfg.ID == "." || cfg.ID == "..") {
		return fmt.Errorf("create sandbox %q: ID is not a plain name: %w", cfg.ID, runtime.ErrInvalidConfig)
	}
	for _, m := range []runtime.NamespaceMode{cfg.Namespaces.Network, cfg.Namespaces.IPC} {
		if m == runtime.NamespaceContainer {
			return fmt.Errorf("create sandbox for %s: network and IPC cannot be per container: %w", cfg.Pod, runtime.ErrInvalidConfig)
		}
	}
	if cfg.ExternalNetwork && (cfg.Namespaces.Network == runtime.NamespaceNode || len(cfg.Ports) > 0) {
		return fmt.Errorf("create sandbox for %s: externalNetwork needs the pod's own network namespace and no ports: %w", cfg.Pod, runtime.ErrInvalidConfig)
	}
	if err := cfg.Resources.Validate(); err != nil {
		return fmt.Errorf("create sandbox for %s: pod resources: %w", cfg.Pod, err)
	}
	return nil
}

// KillSandbox simulates the death of the sandbox's pause process: the
// sandbox turns not ready and its containers exit with SIGKILL.
func (f *Runtime) KillSandbox(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	if !ok {
		return fmt.Errorf("kill sandbox %s: %w", id, runtime.ErrNotFound)
	}
	sb.State = runtime.SandboxNotReady
	sb.Reason = "pause process exited"
	for _, c := range f.sortedContainers() {
		if c.SandboxID == id && c.State == runtime.ContainerRunning {
			f.exit(c, 137, "SIGKILL")
		}
	}
	return nil
}

// RemoveSandbox implements runtime.Runtime.
func (f *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpRemoveSandbox, id); fl != nil {
		return fl.Err
	}
	for cid, c := range f.containers {
		if c.SandboxID == id {
			f.forget(cid)
		}
	}
	delete(f.sandboxes, id)
	delete(f.ports, id)
	delete(f.podRes, id)
	return nil
}

// PodResources returns the pod-level limits a sandbox was made with, as
// runtime/linux writes them to the pod cgroup.
func (f *Runtime) PodResources(sandboxID string) (runtime.Resources, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.podRes[sandboxID]
	return r, ok
}

// GetSandbox implements runtime.Runtime.
func (f *Runtime) GetSandbox(ctx context.Context, id string) (*runtime.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpGetSandbox, id); fl != nil {
		return nil, fl.Err
	}
	f.findCorruption("sandbox", id)
	sb, ok := f.sandboxes[id]
	if !ok {
		return nil, fmt.Errorf("get sandbox %s: %w", id, runtime.ErrNotFound)
	}
	f.reads++
	return clone(sb), nil
}

// ListSandboxes implements runtime.Runtime; the result is ordered by ID.
func (f *Runtime) ListSandboxes(ctx context.Context) ([]*runtime.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpListSandboxes, ""); fl != nil {
		return nil, fl.Err
	}
	f.findCorruption("sandbox", "")
	f.reads += len(f.sandboxes)
	out := make([]*runtime.Sandbox, 0, len(f.sandboxes))
	for _, sb := range f.sandboxes {
		out = append(out, clone(sb))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// GC implements runtime.Runtime: sandboxes left half-made or whose pause
// died are removed with their containers.
func (f *Runtime) GC(ctx context.Context) (*runtime.GCReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpGC, ""); fl != nil {
		return nil, fl.Err
	}
	rep := &runtime.GCReport{Removed: []string{}}
	ids := slices.Sorted(maps.Keys(f.sandboxes))
	for _, id := range ids {
		sb := f.sandboxes[id]
		if sb.State == runtime.SandboxReady {
			continue
		}
		for cid, c := range f.containers {
			if c.SandboxID == id {
				f.forget(cid)
				rep.Removed = append(rep.Removed, "container "+cid)
			}
		}
		delete(f.sandboxes, id)
		delete(f.podRes, id)
		delete(f.ports, id)
		rep.Removed = append(rep.Removed, "sandbox "+id+" ("+sb.Reason+")")
	}
	return rep, nil
}

func clone(sb *runtime.Sandbox) *runtime.Sandbox {
	c := *sb
	c.Ports = slices.Clone(sb.Ports)
	c.Labels = maps.Clone(sb.Labels)
	c.Annotations = maps.Clone(sb.Annotations)
	return &c
}

func imageID(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}
