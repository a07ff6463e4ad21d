package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/netconf"
	"golang.org/x/sys/unix"
)

// GC implements runtime.Runtime. It removes, in order: sandboxes whose
// creation crashed and sandboxes whose pause died; pauses of this run root
// without a record; pinned netns with this runtime's prefix and veths on
// this runtime's bridge that no record names; and leases without a
// sandbox. Objects with another prefix, bridge or run root are never
// looked at, and a creation in progress (in this process or another live
// one) is left alone.
func (r *Runtime) GC(ctx context.Context) (*runtime.GCReport, error) {
	rep := &runtime.GCReport{Removed: []string{}}
	var errs []error

	// Pass 1: records. Each is re-read under its ID lock, so a creation
	// in this Runtime finishes before it is judged.
	ids, err := r.recordIDs()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		what, err := r.gcRecord(ctx, id)
		if err != nil {
			errs = append(errs, err)
		}
		if what != "" {
			rep.Removed = append(rep.Removed, what)
		}
	}

	// Directories a crash left hidden (being published or retired).
	hidden, err := r.gcHiddenDirs()
	if err != nil {
		errs = append(errs, fmt.Errorf("gc: %w", err))
	}
	rep.Removed = append(rep.Removed, hidden...)

	// Snapshot the kernel objects first and read the records after: a
	// record is always published before its sandbox's objects are made, so
	// a creation racing with this pass either made nothing we saw or has
	// its record in the listing below.
	pauses, err := findPauses(r.cfg.RunRoot)
	if err != nil {
		errs = append(errs, err)
	}
	names, err := netconf.ListNetNS(r.cfg.NetNSPrefix)
	if err != nil {
		errs = append(errs, err)
	}
	var ports []string
	br, err := netconf.BridgeIndex(r.cfg.Bridge)
	if err != nil {
		errs = append(errs, err)
	} else if br != 0 {
		if ports, err = netconf.BridgePorts(br); err != nil {
			errs = append(errs, err)
		}
	}

	// What other run roots' sandboxes own is never this runtime's.
	foreign := r.readOwners()

	// What is recorded after pass 1 is what the kernel may keep.
	ids, err = r.recordIDs()
	if err != nil {
		return rep, err
	}
	recorded := map[string]*sandboxRecord{}
	netnsNames := map[string]bool{}
	veths := map[string]bool{}
	for _, id := range ids {
		rec, err := r.sandboxRecord(id)
		if errors.Is(err, runtime.ErrNotFound) {
			continue // removed since, or set aside
		}
		if err != nil {
			// A directory whose record cannot be read: published
			// directories always hold one, so this is damage for a person
			// to look at. Keep its names rather than guess.
			netnsNames[r.cfg.NetNSPrefix+id] = true
			veths[netconf.VethName(r.cfg.NetNSPrefix+id)] = true
			recorded[id] = nil
			continue
		}
		recorded[id] = rec
		netnsNames[rec.NetNSName] = true
		veths[rec.VethHost] = true
	}

	// Pass 2: pauses of this run root that no record owns.
	for _, p := range pauses {
		rec, ok := recorded[p.id]
		if ok && (rec == nil || rec.Phase != phaseReady || rec.Pause == p.proc) {
			continue
		}
		if err := p.proc.Stop(unix.SIGKILL, r.stopGrace); err != nil {
			errs = append(errs, fmt.Errorf("gc: stop pause %d of sandbox %s: %w", p.proc.PID, p.id, err))
			continue
		}
		rep.Removed = append(rep.Removed, fmt.Sprintf("pause %d of unrecorded sandbox %s", p.proc.PID, p.id))
	}

	// Pass 2b: nftables rules of sandboxes without a directory (podnet.go).
	// The directory is re-checked at deletion time: a creation that starts
	// after the listing above makes it before publishing any port.
	nftRemoved, err := r.podNetGC(func(id string) bool {
		if _, ok := recorded[id]; ok || foreign.ids[id] != "" {
			return true
		}
		_, err := os.Stat(r.sandboxDir(id))
		return err == nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("gc: %w", err))
	}
	rep.Removed = append(rep.Removed, nftRemoved...)

	// Pass 2c: volumes of sandboxes without a directory (volumes.go), with
	// the same re-check at deletion time.
	volRemoved, err := r.gcVolumes(func(id string) bool {
		if _, ok := recorded[id]; ok {
			return true
		}
		_, err := os.Stat(r.sandboxDir(id))
		return err == nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	rep.Removed = append(rep.Removed, volRemoved...)

	// Pass 2d: container leftovers (container_gc.go): records, shims,
	// cgroups, rootfs mounts and upper dirs of containers whose sandbox is gone.
	ctrRemoved, err := r.GCContainers(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	rep.Removed = append(rep.Removed, ctrRemoved...)

	// Pass 2e: what records set aside (by the passes above or earlier)
	// named (quarantine.go).
	qRemoved, err := r.cleanQuarantine(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("gc: %w", err))
	}
	rep.Removed = append(rep.Removed, qRemoved...)

	// Pass 2f: what the state root keeps for records that are gone
	// (stategc.go): write layers, logs, subPath directories, leases of
	// other subnets.
	stRemoved, err := r.gcStateRoot()
	if err != nil {
		errs = append(errs, err)
	}
	rep.Removed = append(rep.Removed, stRemoved...)

	// Pass 3: netns pinned with our prefix that no record names.
	for _, n := range names {
		if netnsNames[n] || foreign.netns[n] != "" {
			continue
		}
		if err := netconf.UnpinNetNS(n); err != nil {
			errs = append(errs, fmt.Errorf("gc: %w", err))
			continue
		}
		rep.Removed = append(rep.Removed, "netns "+n)
	}

	// Pass 4: veths on our bridge that no record names.
	for _, v := range ports {
		if veths[v] || foreign.veths[v] != "" || !strings.HasPrefix(v, "pv") {
			continue
		}
		if err := netconf.Teardown(v); err != nil {
			errs = append(errs, fmt.Errorf("gc: %w", err))
			continue
		}
		rep.Removed = append(rep.Removed, "veth "+v)
	}

	// Pass 5: leases without a sandbox.
	freed, err := r.reconcileLeases()
	if err != nil {
		errs = append(errs, err)
	}
	for _, f := range freed {
		rep.Removed = append(rep.Removed, "lease "+f)
	}

	// Pass 6: owner entries of this run root whose sandbox is gone.
	ownRemoved, err := r.gcOwners(foreign)
	if err != nil {
		errs = append(errs, err)
	}
	rep.Removed = append(rep.Removed, ownRemoved...)
	slices.Sort(rep.Removed)
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	return rep, nil
}

// gcRecord removes sandbox id if its creation crashed or its pause died,
// and says what it removed ("" for nothing).
func (r *Runtime) gcRecord(ctx context.Context, id string) (string, error) {
	unlock := r.lockID(id)
	defer unlock()
	rec, err := r.sandboxRecord(id)
	if errors.Is(err, runtime.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var why string
	switch {
	case rec.Phase != phaseReady:
		if r.creating(rec) {
			return "", nil
		}
		why = "creation did not finish"
	case !rec.Pause.Alive():
		why = "pause process is gone"
	default:
		return "", nil
	}
	if err := r.teardown(ctx, rec); err != nil {
		return "", fmt.Errorf("gc: %w", err)
	}
	// GC deletes the veth itself rather than leave it to the kernel's
	// asynchronous netns cleanup, so one pass leaves nothing for the next.
	if rec.VethHost != "" {
		if err := netconf.Teardown(rec.VethHost); err != nil {
			return "", fmt.Errorf("gc: %w", err)
		}
	}
	return fmt.Sprintf("sandbox %s (%s): %s", id, rec.Pod, why), nil
}

// creating reports whether the record's creation may still be in
// progress: its creator is another live process, or this one with the
// creation in flight.
func (r *Runtime) creating(rec *sandboxRecord) bool {
	if rec.Creator.PID == os.Getpid() && rec.Creator.Start == r.self.Start {
		_, ok := inflight.Load(rec.Dir)
		return ok
	}
	return rec.Creator.Alive()
}
