package cri

import (
	"context"
	"errors"
	"sync"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// WithoutCRI is the runtime as the reconciler must see it when the CRI
// server shares it: the CRI's sandboxes (owner runtime.OwnerCRI) and their
// containers are left out, so the reconciler never takes kubelet's pods
// for pods no manifest wants. Removing a CRI sandbox through the view does
// nothing. The view keeps the runtime's ExitWatcher (filtered) and
// VolumeUpdater abilities; the reconciler uses no other.
func WithoutCRI(rt runtime.Runtime) runtime.Runtime {
	v := &view{Runtime: rt, owned: map[string]bool{}}
	ew, hasEW := rt.(runtime.ExitWatcher)
	vu, hasVU := rt.(runtime.VolumeUpdater)
	switch {
	case hasEW && hasVU:
		return struct {
			*view
			exitsView
			runtime.VolumeUpdater
		}{v, exitsView{v, ew}, vu}
	case hasEW:
		return struct {
			*view
			exitsView
		}{v, exitsView{v, ew}}
	case hasVU:
		return struct {
			*view
			runtime.VolumeUpdater
		}{v, vu}
	}
	return v
}

type view struct {
	runtime.Runtime
	mu    sync.Mutex
	owned map[string]bool // sandbox ID -> the CRI's; ownership never changes
}

func isCRI(b *runtime.Sandbox) bool { return b.Owner == runtime.OwnerCRI }

func (v *view) note(b *runtime.Sandbox) bool {
	cri := isCRI(b)
	v.mu.Lock()
	v.owned[b.ID] = cri
	v.mu.Unlock()
	return cri
}

// criSandbox reports whether id is a CRI sandbox; an unknown ID is looked
// up once.
func (v *view) criSandbox(ctx context.Context, id string) (bool, error) {
	v.mu.Lock()
	cri, ok := v.owned[id]
	v.mu.Unlock()
	if ok {
		return cri, nil
	}
	b, err := v.Runtime.GetSandbox(ctx, id)
	if errors.Is(err, runtime.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return v.note(b), nil
}

func (v *view) GetSandbox(ctx context.Context, id string) (*runtime.Sandbox, error) {
	b, err := v.Runtime.GetSandbox(ctx, id)
	if err != nil {
		return nil, err
	}
	if v.note(b) {
		return nil, errors.Join(runtime.ErrNotFound, errors.New("sandbox "+id+" belongs to the CRI"))
	}
	return b, nil
}

func (v *view) ListSandboxes(ctx context.Context) ([]*runtime.Sandbox, error) {
	all, err := v.Runtime.ListSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	// The listing is the whole truth: the map is rebuilt from it, so it
	// never holds more than the sandboxes that exist.
	owned := make(map[string]bool, len(all))
	out := all[:0]
	for _, b := range all {
		owned[b.ID] = isCRI(b)
		if !owned[b.ID] {
			out = append(out, b)
		}
	}
	v.mu.Lock()
	v.owned = owned
	v.mu.Unlock()
	return out, nil
}

func (v *view) RemoveSandbox(ctx context.Context, id string) error {
	cri, err := v.criSandbox(ctx, id)
	if err != nil {
		return err
	}
	if cri {
		return nil
	}
	return v.Runtime.RemoveSandbox(ctx, id)
}

func (v *view) ListContainers(ctx context.Context, f runtime.ContainerFilter) ([]*runtime.Container, error) {
	if f.SandboxID != "" {
		if cri, err := v.criSandbox(ctx, f.SandboxID); err != nil || cri {
			return []*runtime.Container{}, err
		}
	}
	all, err := v.Runtime.ListContainers(ctx, f)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, c := range all {
		cri, err := v.criSandbox(ctx, c.SandboxID)
		if err != nil {
			return nil, err
		}
		if !cri {
			out = append(out, c)
		}
	}
	return out, nil
}

// exitsView passes on the exits of the reconciler's containers only.
type exitsView struct {
	v *view
	w runtime.ExitWatcher
}

func (e exitsView) WatchExits(ctx context.Context) (<-chan runtime.ExitEvent, error) {
	in, err := e.w.WatchExits(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan runtime.ExitEvent, cap(in))
	go func() {
		defer close(out)
		for ev := range in {
			if cri, err := e.v.criSandbox(ctx, ev.SandboxID); err == nil && cri {
				continue
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
