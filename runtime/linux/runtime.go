// Package linux implements runtime.Runtime on a real Linux kernel: pod
// sandboxes held open by a pause process on a bridge-attached network
// namespace, and the containers that join them.
package linux

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/hostlock"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/ipam"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
)

var _ runtime.Runtime = (*Runtime)(nil)

// Runtime is the Linux runtime. It keeps no authoritative state in memory:
// records under the run root and the kernel are the truth, so a new Runtime
// (a restarted agent) sees everything an earlier one made.
type Runtime struct {
	cfg Config
	log zerolog.Logger

	// Sandbox side: the address pool, the bridge (made on first use) and
	// this process's identity, recorded as the creator of sandboxes.
	pool      *ipam.Pool
	bridgeMu  sync.Mutex
	bridgeIdx int
	self      procid.ID
	// stopGrace bounds the wait for a pause to exit on SIGTERM.
	stopGrace time.Duration
	// crashAt, set by tests only, makes sandbox creation stop at the named
	// step as a crash would: without cleaning up.
	crashAt string

	// net is the pod-networking half (podnet.go): published ports,
	// masquerade, resolv.conf/hosts files, sysctls.
	net *podNet

	ctr containers

	// probs holds what was handed to the reconciler of the records set
	// aside, and the cleanup of what they named (quarantine.go).
	probs problems

	// names are the host-wide names this runtime holds (hostlock).
	names *hostlock.Set
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

// Defaults applied by New to empty Config fields.
const (
	DefaultStateRoot   = "/var/lib/pelagos"
	DefaultRunRoot     = "/run/pelagos"
	DefaultBridge      = "pelagos0"
	DefaultSubnet      = "172.16.128.0/20" // see docs/networking.md: no common tool defaults to it
	DefaultNetNSPrefix = "pelagos-"
	DefaultNFTable     = "pelagos"
)

// New returns a Runtime for cfg, filling empty fields with the defaults,
// taking the host-wide names (Close gives them back) and creating the run
// and state roots.
func New(cfg Config) (_ *Runtime, err error) {
	cfg.applyDefaults()
	for _, dir := range []string{cfg.RunRoot, cfg.StateRoot} {
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("linux runtime: root %q must be an absolute path", dir)
		}
	}
	r := &Runtime{
		cfg:       cfg,
		log:       cfg.Logger,
		stopGrace: 2 * time.Second,
	}
	if r.names, err = r.lockNames(); err != nil {
		return nil, fmt.Errorf("linux runtime: %w", err)
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	for _, dir := range []string{cfg.RunRoot, cfg.StateRoot} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("linux runtime: create root: %w", err)
		}
	}
	r.ctr.rt = r
	if err := r.checkPidsLimits(); err != nil {
		return nil, fmt.Errorf("linux runtime: %w", err)
	}
	r.ctr.index = newCtrIndex(r.containersDir())
	r.ctr.index.setAside = func(id string, err error) { r.setAside(kindContainer, id, err) }
	if err := r.initSandboxes(); err != nil {
		return nil, err
	}
	if err := r.initPodNet(); err != nil {
		return nil, err
	}
	if err := r.checkForeignPods(); err != nil {
		return nil, fmt.Errorf("linux runtime: %w", err)
	}
	r.startCleanup()
	return r, nil
}

// lockNames takes the host-wide names of this runtime (hostlock): its
// roots, bridge, subnet, netns prefix, nftables table and cgroup parent
// belong to its state root while it runs; another agent's runtime with a
// name in common (or overlapping) is refused, naming the holder.
func (r *Runtime) lockNames() (*hostlock.Set, error) {
	pfx, err := netip.ParsePrefix(r.cfg.Subnet)
	if err != nil {
		return nil, fmt.Errorf("subnet %q: %w: %w", r.cfg.Subnet, err, runtime.ErrInvalidConfig)
	}
	cg, err := cgroups.New(r.cfg.CgroupParent)
	if err != nil {
		return nil, err
	}
	return hostlock.Acquire(hostlock.Owner{StateRoot: r.cfg.StateRoot, RunRoot: r.cfg.RunRoot}, []hostlock.Name{
		{Kind: hostlock.StateRoot, Value: r.cfg.StateRoot},
		{Kind: hostlock.RunRoot, Value: r.cfg.RunRoot},
		{Kind: hostlock.Bridge, Value: r.cfg.Bridge},
		{Kind: hostlock.Subnet, Value: pfx.Masked().String()},
		{Kind: hostlock.NetNSPrefix, Value: r.cfg.NetNSPrefix},
		{Kind: hostlock.NFTable, Value: r.cfg.NFTable},
		{Kind: hostlock.CgroupParent, Value: cg.Parent()},
	})
}

// Close gives back the host-wide names New took; the Runtime must not be
// used afterwards. Pods keep running: a Runtime holds none of their
// objects.
func (r *Runtime) Close() error {
	if r.names != nil {
		r.names.Release()
	}
	return nil
}

func (c *Config) applyDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.StateRoot, DefaultStateRoot)
	def(&c.RunRoot, DefaultRunRoot)
	def(&c.Bridge, DefaultBridge)
	def(&c.Subnet, DefaultSubnet)
	def(&c.NetNSPrefix, DefaultNetNSPrefix)
	def(&c.NFTable, DefaultNFTable)
	// Paths are compared (lock keys, pause arguments in /proc): one
	// spelling per directory.
	c.StateRoot, c.RunRoot = filepath.Clean(c.StateRoot), filepath.Clean(c.RunRoot)
}

// idLocks serialise operations on one object ID (a sandbox, or
// "container/<id>") within this process; different IDs proceed in parallel.
// They are per process, not per Runtime object, and keyed by run root, so
// that two Runtime objects over the same run root (an agent's GC pass and
// its workers, say) exclude each other too.
var idLocks = struct {
	sync.Mutex
	m map[string]*idLock
}{m: map[string]*idLock{}}

// lockID takes the in-process lock of one ID and returns its release.
func (r *Runtime) lockID(id string) func() {
	key := r.cfg.RunRoot + "\x00" + id
	idLocks.Lock()
	l := idLocks.m[key]
	if l == nil {
		l = &idLock{}
		idLocks.m[key] = l
	}
	l.refs++
	idLocks.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		idLocks.Lock()
		l.refs--
		if l.refs == 0 {
			delete(idLocks.m, key)
		}
		idLocks.Unlock()
	}
}
