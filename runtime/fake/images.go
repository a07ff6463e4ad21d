package fake

import (
	"context"
	"fmt"
	"sort"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// AddImage stores an image as if pulled earlier and returns it.
func (f *Runtime) AddImage(ref string, cfg runtime.ImageConfig) *runtime.Image {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addImage(ref, cfg)
}

func (f *Runtime) addImage(ref string, cfg runtime.ImageConfig) *runtime.Image {
	img := &runtime.Image{
		ID:         imageID(ref),
		Digest:     imageID("manifest:" + ref),
		References: []string{ref},
		Size:       1 << 20,
		Config:     cfg,
	}
	f.images[ref] = img
	c := *img
	return &c
}

// EnsureImage implements runtime.ImageService. Any reference can be
// "pulled" unless a failure is injected for it.
func (f *Runtime) EnsureImage(ctx context.Context, ref string, opts runtime.PullOptions) (*runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpEnsureImage, ref); fl != nil {
		return nil, fl.Err
	}
	img, ok := f.images[ref]
	switch {
	case opts.Policy == runtime.PullNever && !ok:
		return nil, fmt.Errorf("image %s: not present and pull policy is Never: %w", ref, runtime.ErrNotFound)
	case ok && opts.Policy != runtime.PullAlways:
		c := *img
		return &c, nil
	}
	f.pulls[ref]++
	var cfg runtime.ImageConfig
	if ok {
		cfg = img.Config
	}
	return f.addImage(ref, cfg), nil
}

// GetImage implements runtime.ImageService.
func (f *Runtime) GetImage(ctx context.Context, ref string) (*runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpGetImage, ref); fl != nil {
		return nil, fl.Err
	}
	img, ok := f.lookupImage(ref)
	if !ok {
		return nil, fmt.Errorf("image %s: %w", ref, runtime.ErrNotFound)
	}
	c := *img
	return &c, nil
}

// lookupImage finds an image by reference or, as the real store does, by
// ID. The caller holds f.mu.
func (f *Runtime) lookupImage(ref string) (*runtime.Image, bool) {
	if img, ok := f.images[ref]; ok {
		return img, true
	}
	for _, img := range f.images {
		if img.ID == ref {
			return img, true
		}
	}
	return nil, false
}

// ListImages implements runtime.ImageService; ordered by reference.
func (f *Runtime) ListImages(ctx context.Context) ([]*runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpListImages, ""); fl != nil {
		return nil, fl.Err
	}
	var out []*runtime.Image
	for _, img := range f.images {
		c := *img
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].References[0] < out[j].References[0] })
	return out, nil
}

// RemoveImage implements runtime.ImageService.
func (f *Runtime) RemoveImage(ctx context.Context, ref string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.call(OpRemoveImage, ref); fl != nil {
		return fl.Err
	}
	img, ok := f.images[ref]
	if !ok {
		return nil
	}
	if !force {
		for _, c := range f.containers {
			if c.Image == ref || c.UsesImage(img.ID) {
				return fmt.Errorf("remove image %s: used by container %s: %w", ref, c.ID, runtime.ErrConflict)
			}
		}
	}
	delete(f.images, ref)
	return nil
}
