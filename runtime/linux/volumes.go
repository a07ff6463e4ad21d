package linux

import (
	"context"
	"errors"
	"fmt"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

// Pod volumes (issue 8): the sandbox owns them, from its creation to its
// removal, so they outlive container restarts; containers only bind what
// the sandbox made. volume.Manager keeps no state of its own: every path is
// derived from the roots and the sandbox ID, so a restarted agent and GC
// find the same directories.

var _ runtime.VolumeUpdater = (*Runtime)(nil)

func (r *Runtime) volumes() *volume.Manager {
	m := volume.New(r.cfg.StateRoot, r.cfg.RunRoot)
	m.Warn = func(msg string) { r.log.Warn().Msg(msg) }
	return m
}

// setupVolumes materialises the sandbox's volumes. It runs after the record
// is written, so a crash part-way is undone by teardown or GC.
func (r *Runtime) setupVolumes(rec *sandboxRecord, cfg *runtime.SandboxConfig) error {
	if len(cfg.Volumes) == 0 {
		return nil
	}
	if _, err := r.volumes().Setup(rec.ID, cfg.Volumes); err != nil {
		return fmt.Errorf("create sandbox %s: %w", rec.ID, err)
	}
	return nil
}

// teardownVolumes removes every volume and subPath mount of the sandbox.
func (r *Runtime) teardownVolumes(id string) error {
	return r.volumes().Teardown(id)
}

// gcVolumes removes the volume state of sandboxes that keep does not
// claim. keep is asked at deletion time: volumes are made after the sandbox
// directory, so a creation racing the listing is always kept.
func (r *Runtime) gcVolumes(keep func(id string) bool) ([]string, error) {
	ids, err := r.volumes().Sandboxes()
	if err != nil {
		return nil, fmt.Errorf("gc: list volumes: %w", err)
	}
	var removed []string
	var errs []error
	for _, id := range ids {
		if keep(id) {
			continue
		}
		if err := r.teardownVolumes(id); err != nil {
			errs = append(errs, fmt.Errorf("gc: %w", err))
			continue
		}
		removed = append(removed, "volumes of unrecorded sandbox "+id)
	}
	return removed, errors.Join(errs...)
}

// UpdateVolume implements runtime.VolumeUpdater: a projected volume of a
// ready sandbox is rewritten atomically (only when its files changed), and
// containers that mounted the volume see the new files through "..data";
// a persistent volume gets its (new) size.
func (r *Runtime) UpdateVolume(ctx context.Context, sandboxID string, vol *runtime.VolumeConfig) error {
	if vol == nil || (vol.Files == nil && vol.Persistent == nil) {
		return fmt.Errorf("update volume of sandbox %s: only projected and persistent volumes are updated: %w", sandboxID, runtime.ErrInvalidConfig)
	}
	unlock := r.lockID(sandboxID)
	defer unlock()
	rec, err := r.sandboxRecord(sandboxID)
	if err != nil {
		return fmt.Errorf("update volume %q of sandbox %s: %w", vol.Name, sandboxID, err)
	}
	known := false
	for _, v := range rec.Config.Volumes {
		switch {
		case v.Name != vol.Name:
		case v.Files != nil && vol.Files != nil:
			known = true
		case v.Persistent != nil && vol.Persistent != nil:
			// The claim the sandbox was made with, whatever its size now.
			known = v.Persistent.Namespace == vol.Persistent.Namespace && v.Persistent.Name == vol.Persistent.Name
		}
	}
	if !known {
		return fmt.Errorf("update volume %q of sandbox %s: no such projected or persistent volume: %w", vol.Name, sandboxID, runtime.ErrNotFound)
	}
	return r.volumes().UpdateVolume(sandboxID, vol)
}

// PersistentVolumes lists the node-local named volumes (persistent volume
// claims) with the sandboxes that use each.
func (r *Runtime) PersistentVolumes() ([]*volume.PersistentVolume, error) {
	vols, err := r.volumes().ListPersistent()
	if err != nil {
		return nil, fmt.Errorf("list persistent volumes: %w", err)
	}
	users, err := r.persistentUsers()
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		v.UsedBy = users[runtime.PodKey{Namespace: v.Namespace, Name: v.Name}]
	}
	return vols, nil
}

// PersistentVolume describes one persistent volume.
func (r *Runtime) PersistentVolume(namespace, name string) (*volume.PersistentVolume, error) {
	v, err := r.volumes().GetPersistent(namespace, name)
	if err != nil {
		return nil, err
	}
	users, err := r.persistentUsers()
	if err != nil {
		return nil, err
	}
	v.UsedBy = users[runtime.PodKey{Namespace: namespace, Name: name}]
	return v, nil
}

// RemovePersistentVolume deletes a persistent volume and its data; while
// any sandbox (running or not, until it is removed) names it, the removal
// fails with ErrConflict.
func (r *Runtime) RemovePersistentVolume(namespace, name string) error {
	return r.volumes().RemovePersistent(namespace, name, func() ([]string, error) {
		users, err := r.persistentUsers()
		return users[runtime.PodKey{Namespace: namespace, Name: name}], err
	})
}

// persistentUsers maps each persistent volume (namespace/name) to the
// sandboxes whose records name it, as "pod (sandbox ID)".
func (r *Runtime) persistentUsers() (map[runtime.PodKey][]string, error) {
	ids, err := r.recordIDs()
	if err != nil {
		return nil, err
	}
	out := map[runtime.PodKey][]string{}
	for _, id := range ids {
		rec, err := r.sandboxRecord(id)
		if errors.Is(err, runtime.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, v := range rec.Config.Volumes {
			if p := v.Persistent; p != nil {
				k := runtime.PodKey{Namespace: p.Namespace, Name: p.Name}
				out[k] = append(out[k], fmt.Sprintf("pod %s (sandbox %s)", rec.Pod, id))
			}
		}
	}
	return out, nil
}
