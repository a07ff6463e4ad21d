package cri

import (
	"context"
	"errors"
	"fmt"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Recover finishes what a crash of an earlier server left: a sandbox
// whose creation was cut short is removed (its record says "creating"),
// a runtime sandbox of the CRI's without a record is removed, and a
// container record whose sandbox record is gone is dropped. Sandboxes and
// containers that run are adopted as they are: nothing is restarted.
func (s *Server) Recover(ctx context.Context) error {
	var errs []error
	recs, rerrs := s.store.sandboxes()
	s.logErrors(rerrs)
	known := map[string]bool{}
	for _, r := range recs {
		known[r.ID] = true
		if r.State != sandboxCreating {
			continue
		}
		if err := s.teardownNetwork(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("undo the network of pod sandbox %s: %w", r.ID, err))
			continue
		}
		if err := s.rt.RemoveSandbox(ctx, r.ID); err != nil {
			errs = append(errs, fmt.Errorf("undo the creation of pod sandbox %s: %w", r.ID, err))
			continue
		}
		if err := s.store.deleteSandbox(r.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(known, r.ID)
		s.log.Info().Str("sandbox", r.ID).Msg("removed a pod sandbox whose creation a crash cut short")
	}
	boxes, err := s.rt.ListSandboxes(ctx)
	if err != nil {
		return fmt.Errorf("cri recover: %w", err)
	}
	for _, b := range boxes {
		if b.Owner != runtime.OwnerCRI || known[b.ID] {
			continue
		}
		if err := s.rt.RemoveSandbox(ctx, b.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove orphaned pod sandbox %s: %w", b.ID, err))
			continue
		}
		s.log.Info().Str("sandbox", b.ID).Str("pod", b.Pod.String()).Msg("removed a CRI pod sandbox without a record")
	}
	ctrs, cerrs := s.store.containers()
	s.logErrors(cerrs)
	for _, c := range ctrs {
		if known[c.SandboxID] {
			continue
		}
		if err := s.rt.RemoveContainer(ctx, c.ID); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		if err := s.store.deleteContainer(c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cri recover: %w", errors.Join(errs...))
	}
	return nil
}
