package linux

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/ipam"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/netconf"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"golang.org/x/sys/unix"
)

// inflight holds the directories of sandboxes and containers this process
// is creating, across Runtime objects, so GC can tell a creation in
// progress from one that crashed even when both were started by this very
// process.
var inflight sync.Map

// errSimulatedCrash is returned at Runtime.crashAt; tests only.
var errSimulatedCrash = errors.New("simulated crash")

// Creation steps, named for the crash-injection hook, in order.
const (
	stepLease    = "lease"    // address leased, intent not yet published
	stepRecorded = "recorded" // intent record written, nothing made yet
	stepPause    = "pause"    // pause running in its namespaces
	stepNetNS    = "netns"    // netns pinned
	stepVeth     = "veth"     // veth made and addressed
	stepPorts    = "ports"    // ports published, pod files written (podnet.go)
)

// initSandboxes prepares the sandbox side at start: the records directory,
// the address pool, and the pool reconciled against the records (a lease
// whose sandbox is gone is freed; a recorded sandbox without its lease gets
// it back).
func (r *Runtime) initSandboxes() error {
	if err := os.MkdirAll(r.sandboxesDir(), 0o700); err != nil {
		return fmt.Errorf("linux runtime: create %s: %w", r.sandboxesDir(), err)
	}
	pfx, err := netip.ParsePrefix(r.cfg.Subnet)
	if err != nil {
		return fmt.Errorf("linux runtime: subnet %q: %w: %w", r.cfg.Subnet, err, runtime.ErrInvalidConfig)
	}
	dir := filepath.Join(r.cfg.StateRoot, "ipam", strings.ReplaceAll(pfx.Masked().String(), "/", "_"))
	if r.pool, err = ipam.Open(dir, r.cfg.Subnet); err != nil {
		return fmt.Errorf("linux runtime: %w", err)
	}
	if r.self, err = procid.Self(); err != nil {
		return fmt.Errorf("linux runtime: own start time: %w", err)
	}
	_, err = r.reconcileLeases()
	return err
}

// reconcileLeases makes the pool agree with the records and returns what
// it freed.
func (r *Runtime) reconcileLeases() ([]string, error) {
	ids, err := r.recordIDs()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		rec, err := r.sandboxRecord(id)
		if err != nil || rec.IP == "" {
			continue
		}
		if a, err := netip.ParseAddr(rec.IP); err == nil {
			if err := r.pool.Reserve(a, id); err != nil {
				r.log.Warn().Err(err).Str("sandbox", id).Msg("re-record lease")
			}
		}
	}
	freed, err := r.pool.Reconcile(func(owner string) bool {
		if _, err := os.Stat(r.sandboxDir(owner)); err == nil {
			return true
		}
		// A sandbox being published holds its address already; one set
		// aside keeps it until the cleanup of its veth releases it.
		return r.publishing(owner) || r.setAsidePending(kindSandbox, owner)
	})
	if err != nil {
		return freed, fmt.Errorf("reconcile leases: %w", err)
	}
	return freed, nil
}

func newSandboxID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// resolveNamespaces applies the defaults (network and IPC per pod, PID per
// container) and refuses modes the kind cannot have.
func resolveNamespaces(in runtime.NamespaceOptions) (runtime.NamespaceOptions, error) {
	out := in
	if out.Network == "" {
		out.Network = runtime.NamespacePod
	}
	if out.IPC == "" {
		out.IPC = runtime.NamespacePod
	}
	if out.PID == "" {
		out.PID = runtime.NamespaceContainer
	}
	podOrNode := func(m runtime.NamespaceMode) bool {
		return m == runtime.NamespacePod || m == runtime.NamespaceNode
	}
	if !podOrNode(out.Network) || !podOrNode(out.IPC) || !(podOrNode(out.PID) || out.PID == runtime.NamespaceContainer) {
		return out, fmt.Errorf("namespaces %+v: network and IPC are Pod or Node, PID is Pod, Container or Node: %w", in, runtime.ErrInvalidConfig)
	}
	return out, nil
}

// podHostname is the UTS hostname: the configured one, or the pod name cut
// to the kernel's 64-byte limit, as Kubernetes does.
func podHostname(cfg *runtime.SandboxConfig) (string, error) {
	if cfg.Hostname != "" {
		if len(cfg.Hostname) > 64 {
			return "", fmt.Errorf("hostname %q: longer than 64 bytes: %w", cfg.Hostname, runtime.ErrInvalidConfig)
		}
		return cfg.Hostname, nil
	}
	h := cfg.Pod.Name
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h, nil
}

// bridge returns the bridge's index, making the bridge (with its address)
// on first use and again whenever the one found last is gone: deleted
// under the agent, or down (netconf.BridgeUp, two sysfs reads per sandbox
// made). The pods that were ports of a deleted bridge are not ready
// (observe) and are made again on the new one.
func (r *Runtime) bridge() (int, error) {
	r.bridgeMu.Lock()
	defer r.bridgeMu.Unlock()
	if r.bridgeIdx != 0 && netconf.BridgeUp(r.bridgeIdx, r.cfg.Bridge) {
		return r.bridgeIdx, nil
	}
	gw := netip.PrefixFrom(r.pool.Gateway(), r.pool.Prefix().Bits())
	idx, err := netconf.EnsureBridge(r.cfg.Bridge, gw)
	if err != nil {
		return 0, err
	}
	r.bridgeIdx = idx
	return idx, nil
}

func (r *Runtime) crash(step string) error {
	if r.crashAt == step {
		return errSimulatedCrash
	}
	return nil
}

// CreateSandbox implements runtime.Runtime. An existing record with the ID
// is returned as observed (idempotency); a record of another pod is
// ErrAlreadyExists.
func (r *Runtime) CreateSandbox(ctx context.Context, cfg *runtime.SandboxConfig) (_ *runtime.Sandbox, err error) {
	// Step 0: validate, resolve defaults, and adopt an existing sandbox.
	if cfg == nil || cfg.Pod.Name == "" {
		return nil, fmt.Errorf("create sandbox: pod name is empty: %w", runtime.ErrInvalidConfig)
	}
	id := cfg.ID
	if id == "" {
		id = newSandboxID()
	}
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("create sandbox for %s: %w", cfg.Pod, err)
	}
	ns, err := resolveNamespaces(cfg.Namespaces)
	if err != nil {
		return nil, fmt.Errorf("create sandbox for %s: %w", cfg.Pod, err)
	}
	hostname, err := podHostname(cfg)
	if err != nil {
		return nil, fmt.Errorf("create sandbox for %s: %w", cfg.Pod, err)
	}
	if err := checkExternalNetwork(cfg, ns); err != nil {
		return nil, fmt.Errorf("create sandbox for %s: %w", cfg.Pod, err)
	}
	if err := cfg.Resources.Validate(); err != nil {
		return nil, fmt.Errorf("create sandbox for %s: pod resources: %w", cfg.Pod, err)
	}
	unlock := r.lockID(id)
	defer unlock()
	// A container start follows: the spare shim pool grows for it now,
	// while the sandbox is being made (shims.go).
	r.ctr.spares.expect(1)
	defer r.ctr.spares.expect(-1)
	inflight.Store(r.sandboxDir(id), true)
	defer inflight.Delete(r.sandboxDir(id))
	if rec, err := r.sandboxRecord(id); err == nil {
		if rec.Pod != cfg.Pod {
			return nil, fmt.Errorf("create sandbox %s for %s: held by %s: %w", id, cfg.Pod, rec.Pod, runtime.ErrAlreadyExists)
		}
		return r.observe(rec), nil
	} else if !errors.Is(err, runtime.ErrNotFound) {
		return nil, err
	}
	if cfg.ID != "" && r.setAsidePending(kindSandbox, id) {
		// Its kernel objects carry names from this ID and are being
		// removed: the ID is not free until they are.
		return nil, fmt.Errorf("create sandbox %s for %s: a sandbox of this ID was set aside and is being cleaned up: %w", id, cfg.Pod, runtime.ErrConflict)
	}
	// Networking: refuse invalid sysctls/DNS/ports, and a hostPort another
	// sandbox holds (ErrConflict), before anything is made (podnet.go).
	if err := r.podNetCheck(id, cfg, ns); err != nil {
		return nil, err
	}

	// Step 1: record the intent, with the lease. Every kernel name derives
	// from the ID, so this record is all a GC pass needs to undo a crash at
	// any later step.
	cgParent := cfg.CgroupParent
	if cgParent == "" {
		cgParent = r.cfg.CgroupParent
	}
	rec := &sandboxRecord{
		Version:      record.Version,
		ID:           id,
		Phase:        phaseCreating,
		Creator:      r.self,
		Pod:          cfg.Pod,
		UID:          cfg.UID,
		Hostname:     hostname,
		Labels:       maps.Clone(cfg.Labels),
		Annotations:  maps.Clone(cfg.Annotations),
		Namespaces:   ns,
		Config:       *cfg,
		CgroupParent: cgParent,
		Dir:          r.sandboxDir(id),
		CreatedAt:    time.Now().UTC(),
	}
	rec.Config.ID = id
	if cgParent != "" {
		rec.CgroupPath = path.Join(cgParent, "pod-"+id)
	}
	if ns.Network == runtime.NamespacePod {
		rec.NetNSName = r.cfg.NetNSPrefix + id
		rec.NetNSPath = filepath.Join(netconf.NetNSDir, rec.NetNSName)
		if !cfg.ExternalNetwork {
			rec.VethHost = netconf.VethName(rec.NetNSName)
		}
	}
	// The lease is taken while the intent is written, so the intent names
	// it: a pod that cannot get an address fails here, having made no
	// kernel object at all.
	if err := r.publishRecord(rec); err != nil {
		return nil, err
	}
	defer func() {
		// A failed creation undoes itself; a simulated crash must not.
		if err != nil && !errors.Is(err, errSimulatedCrash) {
			if terr := r.teardown(context.WithoutCancel(ctx), rec); terr != nil {
				err = fmt.Errorf("%w (cleanup: %v)", err, terr)
			}
		}
	}()
	if err := r.crash(stepRecorded); err != nil {
		return nil, err
	}

	// Step 2: what can still fail without a process or a namespace: the
	// bridge (shared by every pod) and the pod's volumes (hostPath type
	// checks; emptyDir, ConfigMap and Secret files; volumes.go), before any
	// container can mount them.
	var bridge int
	if rec.VethHost != "" {
		if bridge, err = r.bridge(); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", id, err)
		}
	}
	if err := r.setupVolumes(rec, cfg); err != nil {
		return nil, err
	}
	if err := r.limitPod(rec); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}

	// Step 3: the pause, born in the pod's new namespaces (net, IPC, UTS,
	// and PID when shared), which it holds open.
	rec.Pause, err = startPause(pauseSpec{runRoot: r.cfg.RunRoot, id: id, hostname: hostname, ns: ns})
	if err != nil {
		return nil, err
	}
	if err := r.crash(stepPause); err != nil {
		return nil, err
	}

	// Step 4: pod network: pin the netns by name and attach a veth whose
	// peer is made inside the netns as eth0, with the leased address.
	if ns.Network == runtime.NamespacePod {
		setup := func(rec *sandboxRecord) error { return r.setupNetwork(rec, bridge) }
		if cfg.ExternalNetwork {
			setup = r.setupExternalNetwork
		}
		if err := setup(rec); err != nil {
			return nil, err
		}
	}

	// Step 4b: published ports, resolv.conf/hosts/hostname on the pod's
	// size-capped tmpfs, sysctls in the pod's namespaces, peers' hosts
	// files (podnet.go). A failure here is undone by teardown like any
	// other step (the tmpfs goes with the volumes).
	if err := r.podNetAttach(rec); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	if err := r.crash(stepPorts); err != nil {
		return nil, err
	}

	// Step 5: ready. From here on the sandbox is complete.
	rec.Phase = phaseReady
	if err := r.writeRecord(rec); err != nil {
		return nil, err
	}
	return r.observe(rec), nil
}

// limitPod makes the pod cgroup with the pod-level limits, when the pod
// has any, before a container can start in it: the containers then share
// them from their first moment. The cgroup goes with the containers'
// (removeAllInSandbox), so a failed creation removes it too.
func (r *Runtime) limitPod(rec *sandboxRecord) error {
	res := podCgroupResources(rec.Config.Resources)
	if res == (cgroups.Resources{}) {
		return nil
	}
	cg, err := r.cgroupManager(rec.CgroupParent)
	if err != nil {
		return err
	}
	if err := cg.Create(podCgroup(rec.ID), res); err != nil {
		return fmt.Errorf("pod-level resources: %w", err)
	}
	return nil
}

// lease takes the sandbox's address into the record; it runs while the
// intent is being published, so a crash leaves a lease whose owner GC can
// tell from a creation in flight (leaseLive).
func (r *Runtime) lease(rec *sandboxRecord) error {
	addr, err := r.pool.Allocate(rec.ID)
	if err != nil {
		return fmt.Errorf("create sandbox %s: %w", rec.ID, err)
	}
	rec.IP = addr.String()
	rec.PrefixLen = r.pool.Prefix().Bits()
	rec.Gateway = r.pool.Gateway().String()
	return r.crash(stepLease)
}

// pinNetNS pins the pause's network namespace by the sandbox's name and
// opens it, for the network set-up that follows (ours or the caller's).
func (r *Runtime) pinNetNS(rec *sandboxRecord) (*os.File, error) {
	if _, err := netconf.PinNetNS(rec.Pause.PID, rec.NetNSName); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", rec.ID, err)
	}
	if err := r.crash(stepNetNS); err != nil {
		return nil, err
	}
	nsf, err := os.Open(rec.NetNSPath)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: open netns: %w", rec.ID, err)
	}
	return nsf, nil
}

func (r *Runtime) setupNetwork(rec *sandboxRecord, bridge int) error {
	nsf, err := r.pinNetNS(rec)
	if err != nil {
		return err
	}
	defer nsf.Close()
	addr, err := netip.ParseAddr(rec.IP)
	if err != nil {
		return fmt.Errorf("create sandbox %s: leased address %q: %w", rec.ID, rec.IP, err)
	}
	err = netconf.Setup(netconf.Pod{
		NetNS:       nsf,
		HostVeth:    rec.VethHost,
		BridgeIndex: bridge,
		Addr:        netip.PrefixFrom(addr, rec.PrefixLen),
		Gateway:     r.pool.Gateway(),
	})
	if err != nil {
		return fmt.Errorf("create sandbox %s: %w", rec.ID, err)
	}
	return r.crash(stepVeth)
}

// RemoveSandbox implements runtime.Runtime. Removing what is gone succeeds.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return fmt.Errorf("remove sandbox: %w", err)
	}
	unlock := r.lockID(id)
	defer unlock()
	rec, err := r.sandboxRecord(id)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	return r.teardown(ctx, rec)
}

// teardown removes everything the record names, each step tolerant of its
// object being gone already, and the record last, so an interrupted
// teardown is finished by the next one.
func (r *Runtime) teardown(ctx context.Context, rec *sandboxRecord) error {
	var errs []error
	// Step 1: the containers, before the namespaces they live in.
	if err := r.ctr.removeAllInSandbox(ctx, rec); err != nil {
		errs = append(errs, fmt.Errorf("remove containers: %w", err))
	}

	// Step 2: the pause. A crash can lose its PID before it was recorded;
	// then it is found in /proc by its arguments (run root and ID).
	pauses := []procid.ID{rec.Pause}
	if rec.Phase != phaseReady {
		found, err := findPauses(r.cfg.RunRoot)
		if err != nil {
			errs = append(errs, err)
		}
		for _, p := range found {
			if p.id == rec.ID && p.proc != rec.Pause {
				pauses = append(pauses, p.proc)
			}
		}
	}
	// The pause holds nothing that needs a graceful end: SIGKILL. It is
	// only signalled here; its exit (the kernel releasing its namespaces)
	// overlaps the steps below and is awaited before step 4.
	var waits []func(time.Duration) error
	for _, p := range pauses {
		waits = append(waits, p.Terminate(unix.SIGKILL))
	}

	// Step 3a: published ports and this pod's lines in the other pods'
	// hosts files (podnet.go).
	if err := r.podNetRelease(rec.ID); err != nil {
		errs = append(errs, err)
	}

	// Step 3: the network. Unpinning the netns (with the pause gone) frees
	// it and the kernel deletes the veth pair with it, far faster than
	// deleting the veth first; then the lease goes.
	if rec.NetNSName != "" {
		if err := netconf.UnpinNetNS(rec.NetNSName); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.pool.Release(rec.ID); err != nil {
		errs = append(errs, err)
	}

	// Step 3c: the volumes and the pod-files tmpfs (volumes.go); the
	// containers that used them are gone (step 1), so unmounting and
	// removing them is safe.
	if err := r.teardownVolumes(rec.ID); err != nil {
		errs = append(errs, err)
	}

	// Step 4: the pause's end, then the record and the sandbox directory,
	// last.
	for _, wait := range waits {
		if err := wait(r.stopGrace); err != nil {
			errs = append(errs, fmt.Errorf("stop pause: %w", err))
		}
	}
	if len(errs) == 0 {
		if err := r.releaseOwner(rec); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := r.retireDir(rec); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", rec.ID, err)
	}
	return nil
}

// GetSandbox implements runtime.Runtime.
func (r *Runtime) GetSandbox(ctx context.Context, id string) (*runtime.Sandbox, error) {
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("get sandbox: %w", err)
	}
	rec, err := r.sandboxRecord(id)
	if err != nil {
		return nil, fmt.Errorf("get sandbox: %w", err)
	}
	return r.observe(rec), nil
}

// ListSandboxes implements runtime.Runtime: every recorded sandbox, checked
// against the kernel, ordered by creation time.
func (r *Runtime) ListSandboxes(ctx context.Context) ([]*runtime.Sandbox, error) {
	ids, err := r.recordIDs()
	if err != nil {
		return nil, err
	}
	out := make([]*runtime.Sandbox, 0, len(ids))
	for _, id := range ids {
		rec, err := r.sandboxRecord(id)
		if errors.Is(err, runtime.ErrNotFound) {
			continue // removed since the listing, or intent not yet written
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r.observe(rec))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// pauseProc is a pause found in /proc.
type pauseProc struct {
	proc procid.ID
	id   string
}

// findPauses lists the running pauses of runRoot, by their arguments.
func findPauses(runRoot string) ([]pauseProc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("scan /proc for pauses: %w", err)
	}
	var out []pauseProc
	for _, e := range ents {
		pid := 0
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.HasPrefix(string(b), PauseName+"\x00") {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) != 3 || args[1] != runRoot {
			continue
		}
		p, err := procid.Of(pid)
		if err != nil {
			continue
		}
		if p.Alive() {
			out = append(out, pauseProc{proc: p, id: args[2]})
		}
	}
	return out, nil
}

// removeDir removes a sandbox directory. Writers that refresh files in
// every sandbox's directory (the hosts files) can add a file while it is
// being emptied; the removal is retried a few times for them.
func removeDir(dir string) error {
	var err error
	for range 10 {
		if err = os.RemoveAll(dir); err == nil || !errors.Is(err, syscall.ENOTEMPTY) {
			return err
		}
	}
	return err
}

func deviceOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev
	}
	return 0
}
