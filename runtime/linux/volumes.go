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
	return volume.New(r.cfg.StateRoot, r.cfg.RunRoot)
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
// containers that mounted the volume see the new files through "..data".
func (r *Runtime) UpdateVolume(ctx context.Context, sandboxID string, vol *runtime.VolumeConfig) error {
	if vol == nil || vol.Files == nil {
		return fmt.Errorf("update volume of sandbox %s: only projected volumes are updated: %w", sandboxID, runtime.ErrInvalidConfig)
	}
	unlock := r.lockID(sandboxID)
	defer unlock()
	rec, err := r.sandboxRecord(sandboxID)
	if err != nil {
		return fmt.Errorf("update volume %q of sandbox %s: %w", vol.Name, sandboxID, err)
	}
	known := false
	for _, v := range rec.Config.Volumes {
		if v.Name == vol.Name && v.Files != nil {
			known = true
		}
	}
	if !known {
		return fmt.Errorf("update volume %q of sandbox %s: no such projected volume: %w", vol.Name, sandboxID, runtime.ErrNotFound)
	}
	return r.volumes().UpdateVolume(sandboxID, vol)
}
