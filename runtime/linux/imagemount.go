package linux

import (
	"context"
	"fmt"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/rootfs"
)

// Image volumes (KEP-4639): a Mount.Image names an image of the store, the
// caller pulled it first, as it pulls the container's own. Its layers are
// resolved when the container is made and kept in the record, so the
// container mounts what it was made with, and the image stays in use
// (Container.MountImageIDs) until the container is removed. The mount
// itself is made inside the container's mount namespace (rootfs.Setup), so
// there is nothing on the host to unmount or leak.

var _ runtime.MountChecker = (*Runtime)(nil)

// CheckMount implements runtime.MountChecker: an image mount's image must
// be in the store and its subPath in the image's tree.
func (r *Runtime) CheckMount(ctx context.Context, m runtime.Mount) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if m.Image == "" || m.SubPath == "" {
		return nil
	}
	imgs, err := r.imageStore()
	if err != nil {
		return err
	}
	layers, _, err := imgs.LayerDirs(ctx, m.Image)
	if err != nil {
		return fmt.Errorf("image %s: %w", m.Image, err)
	}
	if err := rootfs.CheckImagePath(layers, m.SubPath); err != nil {
		return fmt.Errorf("image %s: %w", m.Image, err)
	}
	return nil
}

// resolveMountImages finds the image of every image mount; an image not
// in the store fails with ErrNotFound, a malformed mount with
// ErrInvalidConfig.
func resolveMountImages(ctx context.Context, imgs ImageLayers, mounts []runtime.Mount) ([]record.MountImage, error) {
	var out []record.MountImage
	for i, m := range mounts {
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("mounts[%d]: %w", i, err)
		}
		if m.Image == "" {
			continue
		}
		layers, img, err := imgs.LayerDirs(ctx, m.Image)
		if err != nil {
			return nil, fmt.Errorf("mounts[%d]: image %s: %w", i, m.Image, err)
		}
		out = append(out, record.MountImage{Mount: i, ID: img.ID, Layers: layers})
	}
	return out, nil
}

// imageMountBind is the rootfs bind of rec's image mount i.
func imageMountBind(rec *record.Container, i int) (rootfs.Bind, error) {
	m := rec.Config.Mounts[i]
	for _, mi := range rec.MountImages {
		if mi.Mount == i {
			return rootfs.Bind{Destination: m.ContainerPath, Layers: mi.Layers, SubPath: m.SubPath, ReadOnly: true}, nil
		}
	}
	return rootfs.Bind{}, fmt.Errorf("mounts[%d]: image %s was not resolved: %w", i, m.Image, runtime.ErrInvalidConfig)
}
