package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/hostlock"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/netconf"
)

// Every sandbox has a host-wide owner entry: a symlink named after its
// netns name (<netns prefix><id>, for host-network sandboxes too) in
// hostlock.OwnersDir, pointing at its record directory, <run root>/sandboxes/<id>.
// It is made before any kernel object of the sandbox and removed after
// the last one, and it outlives a lost record (a wiped run root, a record
// set aside), so the kernel objects that carry the sandbox's names —
// netns, veth, pod cgroup, nftables chain — can always be told apart:
// GC removes one that no record of its own names only when the entry
// points into its own run root or is missing (a sandbox of an older
// agent), never another agent's pod that shares a name with it; and an
// agent does not start on names whose objects belong to live pods of
// another run root.

func (r *Runtime) ownerKey(rec *sandboxRecord) string {
	if rec.NetNSName != "" {
		return rec.NetNSName
	}
	return r.cfg.NetNSPrefix + rec.ID
}

// claimOwner makes the sandbox's owner entry. An entry of another run
// root's sandbox that still has its record is ErrAlreadyExists; one whose
// record is gone is stale and replaced.
func (r *Runtime) claimOwner(rec *sandboxRecord) error {
	if err := os.MkdirAll(hostlock.OwnersDir(), 0o755); err != nil {
		return fmt.Errorf("create sandbox %s: owner entry: %w", rec.ID, err)
	}
	path := filepath.Join(hostlock.OwnersDir(), r.ownerKey(rec))
	for range 2 {
		err := os.Symlink(rec.Dir, path)
		if !errors.Is(err, os.ErrExist) {
			if err != nil {
				return fmt.Errorf("create sandbox %s: owner entry: %w", rec.ID, err)
			}
			return nil
		}
		old, rerr := os.Readlink(path)
		if rerr == nil && old == rec.Dir {
			return nil
		}
		if rerr == nil {
			if _, err := os.Stat(old); err == nil {
				return fmt.Errorf("create sandbox %s: the name %s belongs to sandbox %s: %w", rec.ID, r.ownerKey(rec), old, runtime.ErrAlreadyExists)
			}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("create sandbox %s: owner entry: %w", rec.ID, err)
		}
	}
	return fmt.Errorf("create sandbox %s: owner entry %s: taken while being replaced: %w", rec.ID, path, runtime.ErrConflict)
}

// releaseOwner removes the sandbox's owner entry if it is this one's.
func (r *Runtime) releaseOwner(rec *sandboxRecord) error {
	path := filepath.Join(hostlock.OwnersDir(), r.ownerKey(rec))
	if old, err := os.Readlink(path); err != nil || old != rec.Dir {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove sandbox %s: owner entry: %w", rec.ID, err)
	}
	return nil
}

// owners are the owner entries of other run roots, read once per GC pass:
// what they name is not this runtime's to remove.
type owners struct {
	netns map[string]string // netns name -> record directory
	ids   map[string]string // sandbox ID -> record directory
	veths map[string]string // host veth -> record directory
	mine  []string          // entries of this run root
}

func (r *Runtime) readOwners() *owners {
	o := &owners{netns: map[string]string{}, ids: map[string]string{}, veths: map[string]string{}}
	ents, _ := os.ReadDir(hostlock.OwnersDir())
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(hostlock.OwnersDir(), e.Name()))
		if err != nil {
			continue
		}
		if filepath.Dir(target) == r.sandboxesDir() {
			o.mine = append(o.mine, e.Name())
			continue
		}
		o.netns[e.Name()] = target
		o.ids[filepath.Base(target)] = target
		o.veths[netconf.VethName(e.Name())] = target
	}
	return o
}

// gcOwners removes the owner entries of this run root whose sandbox is
// gone (and not being made or cleaned up): GC has removed its objects.
func (r *Runtime) gcOwners(o *owners) ([]string, error) {
	var removed []string
	var errs []error
	for _, name := range o.mine {
		path := filepath.Join(hostlock.OwnersDir(), name)
		target, err := os.Readlink(path)
		if err != nil {
			continue
		}
		if r.sandboxKnown(filepath.Base(target)) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("gc: owner entry: %w", err))
			continue
		}
		removed = append(removed, "owner entry "+name)
	}
	return removed, errors.Join(errs...)
}

// checkForeignPods refuses to start on names whose objects belong to live
// pods of another run root (an agent that was stopped, leaving its pods
// running): this runtime's GC would leave them alone, but its pods would
// share their netns names, bridge or cgroups.
func (r *Runtime) checkForeignPods() error {
	o := r.readOwners()
	for name, target := range o.netns {
		runRoot := filepath.Dir(filepath.Dir(target))
		if strings.HasPrefix(name, r.cfg.NetNSPrefix) && pinned(filepath.Join(netconf.NetNSDir, name)) {
			return fmt.Errorf("netns prefix %q: netns %s belongs to a live pod of the agent with run root %s; remove its pods or give this agent its own --netns-prefix", r.cfg.NetNSPrefix, name, runRoot)
		}
		veth := netconf.VethName(name)
		if master, err := os.Readlink(filepath.Join(sysClassNet, veth, "master")); err == nil && filepath.Base(master) == r.cfg.Bridge {
			return fmt.Errorf("bridge %q: its port %s belongs to a live pod of the agent with run root %s (netns %s); remove its pods or give this agent its own --bridge", r.cfg.Bridge, veth, runRoot, name)
		}
	}
	if len(o.ids) == 0 {
		return nil
	}
	cg, err := r.cgroupManager(r.cfg.CgroupParent)
	if err != nil {
		return nil
	}
	for id, target := range o.ids {
		if busy, err := cg.BusyChildrenPidsMax(podCgroup(id)); err == nil && busy > 0 {
			return fmt.Errorf("cgroup parent %s: pod-%s holds a live pod of the agent with run root %s; remove its pods or give this agent its own --cgroup-parent", cg.Parent(), id, filepath.Dir(filepath.Dir(target)))
		}
	}
	return nil
}
