package imagetest

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// WriteDockerArchive writes images as a docker-archive tarball (the format
// of docker save), keyed by reference (name:tag).
func WriteDockerArchive(path string, images map[string]v1.Image) error {
	m := map[name.Tag]v1.Image{}
	for ref, img := range images {
		tag, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("docker-archive %s: %w", path, err)
		}
		m[tag] = img
	}
	if err := tarball.MultiWriteToFile(path, m); err != nil {
		return fmt.Errorf("docker-archive %s: %w", path, err)
	}
	return nil
}

// WriteOCILayout writes images into an OCI layout directory, each named
// by the org.opencontainers.image.ref.name annotation (the full reference,
// as skopeo and ggcr write it).
func WriteOCILayout(dir string, images map[string]v1.Image) error {
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	refs := make([]string, 0, len(images))
	for ref := range images {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		opts := []layout.Option{}
		if ref != "" {
			opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
		}
		if err := lp.AppendImage(images[ref], opts...); err != nil {
			return fmt.Errorf("OCI layout %s: %s: %w", dir, ref, err)
		}
	}
	return nil
}

// WriteOCIArchive writes images as an OCI archive: a tar of an OCI layout.
func WriteOCIArchive(path string, images map[string]v1.Image) error {
	dir, err := os.MkdirTemp("", "imagetest-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := WriteOCILayout(dir, images); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("OCI archive %s: %w", path, err)
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("OCI archive %s: %w", path, err)
	}
	return nil
}

// Importer is what ImportInto needs: *image.Store satisfies it.
type Importer interface {
	Import(ctx context.Context, path string) ([]*runtime.Image, error)
}

// ImportInto stores img in s under ref (e.g. "busybox:1.36") through an
// OCI layout in a temporary directory, and returns the stored image.
func ImportInto(t testing.TB, s Importer, ref string, img v1.Image) *runtime.Image {
	t.Helper()
	dir := t.TempDir()
	if err := WriteOCILayout(dir, map[string]v1.Image{ref: img}); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.Import(context.Background(), dir)
	if err != nil {
		t.Fatalf("import %s: %v", ref, err)
	}
	if len(imgs) != 1 {
		t.Fatalf("import %s: got %d images, want 1", ref, len(imgs))
	}
	return imgs[0]
}

// ImportBusybox builds the busybox image and imports it into s as ref.
func ImportBusybox(t testing.TB, s Importer, ref string) *runtime.Image {
	t.Helper()
	return ImportInto(t, s, ref, Busybox(t))
}
