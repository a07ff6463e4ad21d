package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/ipam"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

// gcStateRoot removes what the state root holds for records that are gone
// (issue 12): a reboot wipes the run root and its records, but not the
// state root, where every container's write layer and every pod's logs
// would stay for ever. It removes the write layers of containers without a
// record, the log directories of sandboxes without one, subPath
// directories of containers without one, and the leases of pools of other
// subnets (an agent whose --subnet changed) whose sandbox is gone. Volumes
// of sandboxes without a record are gcVolumes'. Everything else there
// (images, seccomp profiles, the agent's own files) is never looked at.
//
// Records are always written before what they name is made, and removed
// after it, so an entry without a record is a leftover; a creation in
// flight (this process's, or a live process's unpublished directory) and a
// record set aside and not yet cleaned up keep theirs.
func (r *Runtime) gcStateRoot() ([]string, error) {
	var removed []string
	var errs []error
	// removeTree removes dir unless something is mounted at or below it:
	// RemoveAll would cross into the mount.
	removeTree := func(dir, what string) {
		if mps, err := volume.MountsUnder(dir); err != nil || len(mps) > 0 {
			errs = append(errs, fmt.Errorf("gc: %s: mounted below %s: %v %v", what, dir, mps, err))
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("gc: %s: %w", what, err))
			return
		}
		removed = append(removed, what)
	}

	// Write layers, <state root>/containers/<id>, and logs,
	// <state root>/logs/<sandbox>.
	for _, kind := range []struct {
		dir   string
		known func(id string) bool
		path  func(id string) string
		what  string
	}{
		{"containers", r.containerKnown, r.containerStateDir, "write layer of container %s (no record)"},
		{"logs", r.sandboxKnown, r.sandboxLogDir, "logs of sandbox %s (no record)"},
	} {
		ids, err := dirNames(filepath.Join(r.cfg.StateRoot, kind.dir))
		if err != nil {
			errs = append(errs, err)
		}
		for _, id := range ids {
			if validID(id) == nil && !kind.known(id) {
				removeTree(kind.path(id), fmt.Sprintf(kind.what, id))
			}
		}
	}

	// SubPath directories of containers without a record, in sandboxes
	// that are kept (gcVolumes takes those of sandboxes that are not).
	vols := volume.New(r.cfg.StateRoot, r.cfg.RunRoot)
	subRoot := filepath.Join(r.cfg.RunRoot, "volume-subpaths")
	sids, err := dirNames(subRoot)
	if err != nil {
		errs = append(errs, err)
	}
	for _, sid := range sids {
		if validID(sid) != nil || !r.sandboxKnown(sid) {
			continue
		}
		cids, _ := dirNames(filepath.Join(subRoot, sid))
		for _, cid := range cids {
			if validID(cid) != nil || r.containerKnown(cid) {
				continue
			}
			if err := vols.CleanupSubPaths(sid, cid); err != nil {
				errs = append(errs, fmt.Errorf("gc: %w", err))
				continue
			}
			removed = append(removed, fmt.Sprintf("subPath mounts of container %s in sandbox %s (no record)", cid, sid))
		}
	}

	// Pools of other subnets: their leases whose sandbox is gone, and the
	// pool once it holds none.
	pools, err := dirNames(filepath.Join(r.cfg.StateRoot, "ipam"))
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range pools {
		dir := filepath.Join(r.cfg.StateRoot, "ipam", name)
		if dir == r.pool.Dir() {
			continue // reconcileLeases'
		}
		pool, err := ipam.Open(dir, strings.Replace(name, "_", "/", 1))
		if err != nil {
			continue // not a pool of ours
		}
		freed, err := pool.Reconcile(r.sandboxKnown)
		if err != nil {
			errs = append(errs, fmt.Errorf("gc: %w", err))
			continue
		}
		for _, f := range freed {
			removed = append(removed, "lease "+f+" of subnet "+pool.Prefix().String())
		}
		if leases, err := pool.Leases(); err == nil && len(leases) == 0 {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("gc: %w", err))
				continue
			}
			removed = append(removed, "address pool of subnet "+pool.Prefix().String()+" (no lease left)")
		}
	}
	return removed, errors.Join(errs...)
}

// containerKnown reports whether container id has a record (or is being
// created by this process, or was set aside and is not cleaned up yet):
// its state-root entries stay.
func (r *Runtime) containerKnown(id string) bool {
	if _, ok := inflight.Load(r.containerDir(id)); ok {
		return true
	}
	if _, err := os.Lstat(filepath.Join(r.containerDir(id), record.ContainerFile)); err == nil {
		return true
	}
	return r.setAsidePending(kindContainer, id)
}

// sandboxKnown is containerKnown for a sandbox: it has a directory, is
// being published, or was set aside and is not cleaned up yet.
func (r *Runtime) sandboxKnown(id string) bool {
	if _, err := os.Lstat(r.sandboxDir(id)); err == nil {
		return true
	}
	return r.publishing(id) || r.setAsidePending(kindSandbox, id)
}

// dirNames lists the names in dir; a missing dir has none.
func dirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}
