package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// OCI annotations that name an image in a layout's index.json.
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// Import stores every image in an archive or layout: a docker-archive
// tarball (docker save, gzip-compressed or not), an OCI archive (a tar of
// an OCI layout), or an OCI layout directory. Images are named by the
// archive's RepoTags or the layout's ref.name annotations; an image without
// a usable name is stored by digest only.
func (s *Store) Import(ctx context.Context, p string) ([]*runtime.Image, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", p, err)
	}
	var imgs []*runtime.Image
	if fi.IsDir() {
		imgs, err = s.importLayout(ctx, p)
	} else {
		imgs, err = s.importFile(ctx, p)
	}
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", p, err)
	}
	return imgs, nil
}

func (s *Store) importFile(ctx context.Context, p string) ([]*runtime.Image, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	magic := make([]byte, 4)
	n, _ := io.ReadFull(f, magic)
	if compression(magic[:n]) == "" {
		return s.importPlainTar(ctx, p)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	// A compressed archive is expanded once into tmp/: the docker-archive
	// reader seeks back into the tar for every layer.
	zr, err := Decompress(f)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	work, err := os.MkdirTemp(s.path("tmp"), "import-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	plain := filepath.Join(work, "archive.tar")
	out, err := os.Create(plain)
	if err != nil {
		return nil, err
	}
	// The image cap bounds the expanded archive too: it holds the image's
	// layers (compressed or not) and little else.
	capped := &capReader{r: zr, max: s.opts.MaxImageSize, what: "archive", setting: FlagMaxImageSize}
	if _, err := io.Copy(out, capped); err != nil {
		out.Close()
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	return s.importPlainTar(ctx, plain)
}

// importPlainTar tells a docker-archive (manifest.json) from an OCI archive
// (oci-layout). Newer docker save writes both; manifest.json wins because
// it carries the tags.
func (s *Store) importPlainTar(ctx context.Context, p string) ([]*runtime.Image, error) {
	names, err := tarNames(p)
	if err != nil {
		return nil, err
	}
	switch {
	case names["manifest.json"]:
		return s.importDockerArchive(ctx, p)
	case names["oci-layout"] && names["index.json"]:
		work, err := os.MkdirTemp(s.path("tmp"), "import-*")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
		if err := extractLayout(p, work); err != nil {
			return nil, err
		}
		return s.importLayout(ctx, work)
	}
	return nil, fmt.Errorf("neither a docker-archive (no manifest.json) nor an OCI archive (no oci-layout): %w", runtime.ErrInvalidConfig)
}

func tarNames(p string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		names[strings.TrimPrefix(hdr.Name, "./")] = true
	}
}

// extractLayout unpacks an OCI archive. Only regular files and directories
// with clean relative names are accepted: a layout holds nothing else.
func extractLayout(p, dst string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		n, err := cleanName(hdr.Name)
		if err != nil {
			return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
		if n == "" {
			continue
		}
		target := filepath.Join(dst, n)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
			}
		default:
			return fmt.Errorf("archive entry %q: type %q has no place in an OCI layout: %w", hdr.Name, hdr.Typeflag, ErrHostileLayer)
		}
	}
}

type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (s *Store) importDockerArchive(ctx context.Context, p string) ([]*runtime.Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	rc, err := extractFromTar(p, "manifest.json")
	if err != nil {
		return nil, err
	}
	var entries []dockerManifestEntry
	err = json.NewDecoder(rc).Decode(&entries)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var out []*runtime.Image
	for i, e := range entries {
		var tag *name.Tag
		var refs []string
		for _, t := range e.RepoTags {
			nt, err := name.NewTag(t)
			if err != nil {
				return nil, fmt.Errorf("manifest.json: entry %d: tag %q: %v: %w", i, t, err, runtime.ErrInvalidConfig)
			}
			if tag == nil {
				tag = &nt
			}
			refs = append(refs, canonical(nt))
		}
		if tag == nil && len(entries) > 1 {
			return nil, fmt.Errorf("manifest.json: entry %d (%s) has no RepoTags to select it by: %w", i, e.Config, runtime.ErrInvalidConfig)
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("manifest.json: entry %d: %w", i, err)
		}
		stored, err := s.storeImage(ctx, img, nil, refs, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, stored)
	}
	return out, nil
}

func extractFromTar(p, want string) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			f.Close()
			return nil, fmt.Errorf("%s: not in archive: %w", want, runtime.ErrNotFound)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read archive: %w", err)
		}
		if strings.TrimPrefix(hdr.Name, "./") == want {
			return struct {
				io.Reader
				io.Closer
			}{tr, f}, nil
		}
	}
}

func (s *Store) importLayout(ctx context.Context, dir string) ([]*runtime.Image, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("not an OCI layout: %w", err)
	}
	ii, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("OCI layout index: %w", err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("OCI layout index: %w", err)
	}
	var out []*runtime.Image
	for _, d := range im.Manifests {
		refs := layoutRefs(d.Annotations)
		img, err := layoutImage(ii, d)
		if err != nil {
			return nil, fmt.Errorf("OCI layout manifest %s: %w", d.Digest, err)
		}
		stored, err := s.storeImage(ctx, img, nil, refs, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, stored)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("OCI layout holds no image: %w", runtime.ErrNotFound)
	}
	return out, nil
}

// layoutRefs names a layout image. containerd's annotation holds a full
// reference; the OCI ref.name is often only a tag ("1.36"), which names no
// repository, so it counts only when it looks like a reference itself.
func layoutRefs(ann map[string]string) []string {
	for _, key := range []string{annotationContainerdName, annotationRefName} {
		v := ann[key]
		if v == "" || (key == annotationRefName && !strings.ContainsAny(v, ":/@")) {
			continue
		}
		if r, err := NormalizeReference(v); err == nil {
			return []string{r}
		}
	}
	return nil
}

// layoutImage returns the image a layout descriptor names, choosing this
// host's platform when the descriptor is an index.
func layoutImage(ii v1.ImageIndex, d v1.Descriptor) (v1.Image, error) {
	if d.MediaType.IsImage() {
		return ii.Image(d.Digest)
	}
	if !d.MediaType.IsIndex() {
		return nil, fmt.Errorf("media type %s is neither image nor index: %w", d.MediaType, runtime.ErrInvalidConfig)
	}
	child, err := ii.ImageIndex(d.Digest)
	if err != nil {
		return nil, err
	}
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := hostPlatform()
	for _, c := range cm.Manifests {
		if c.MediaType.IsImage() && c.Platform != nil && c.Platform.Satisfies(want) {
			return child.Image(c.Digest)
		}
	}
	return nil, fmt.Errorf("no image for platform %s: %w", platformString(want), runtime.ErrNotFound)
}

// AutoImport imports every regular file dropped into Root/images/import, once:
// each is moved to import/done/ after success, or to import/failed/ beside
// a .error file saying why. Names starting with "." or ending in ".part"
// or ".tmp" are skipped as still being written; drop files by writing them
// under such a name and renaming. The agent calls it at start and whenever
// the directory changes (WatchImports).
func (s *Store) AutoImport(ctx context.Context) ([]*runtime.Image, error) {
	imgs, _, err := s.autoImport(ctx, 0)
	return imgs, err
}

// autoImport skips files modified less than settle ago (still being
// copied in place, most likely) and reports whether it did.
func (s *Store) autoImport(ctx context.Context, settle time.Duration) ([]*runtime.Image, bool, error) {
	entries, err := os.ReadDir(s.importDir())
	if err != nil {
		return nil, false, fmt.Errorf("auto-import %s: %w", s.importDir(), err)
	}
	var out []*runtime.Image
	var errs []error
	pending := false
	for _, e := range entries {
		n := e.Name()
		// Directories are skipped: a layout being copied in cannot be told
		// from a finished one (use image import DIR for layouts).
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".part") || strings.HasSuffix(n, ".tmp") ||
			!e.Type().IsRegular() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return out, pending, err
		}
		if settle > 0 {
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) < settle {
				pending = true
				continue
			}
		}
		src := filepath.Join(s.importDir(), n)
		imgs, err := s.Import(ctx, src)
		if err != nil {
			errs = append(errs, err)
			if merr := s.moveAside(src, "failed", []byte(err.Error()+"\n")); merr != nil {
				errs = append(errs, merr)
			}
			continue
		}
		out = append(out, imgs...)
		if err := s.moveAside(src, "done", nil); err != nil {
			errs = append(errs, err)
		}
	}
	return out, pending, errors.Join(errs...)
}

// WatchImports runs AutoImport now and again whenever the import directory
// changes, until ctx ends; it reports each pass that imported something or
// failed to report. A file is imported once it has not changed for settle
// (0 means one second), so a slow copy is not imported half-written. It
// uses inotify, never polls.
func (s *Store) WatchImports(ctx context.Context, settle time.Duration, report func([]*runtime.Image, error)) error {
	if settle <= 0 {
		settle = time.Second
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.importDir(), err)
	}
	defer w.Close()
	if err := w.Add(s.importDir()); err != nil {
		return fmt.Errorf("watch %s: %w", s.importDir(), err)
	}
	timer := time.NewTimer(0) // first pass at once
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) {
				timer.Reset(settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			report(nil, fmt.Errorf("watch %s: %w", s.importDir(), err))
		case <-timer.C:
			imgs, pending, err := s.autoImport(ctx, settle)
			if len(imgs) > 0 || err != nil {
				report(imgs, err)
			}
			if pending {
				timer.Reset(settle)
			}
		}
	}
}

func (s *Store) moveAside(src, sub string, errText []byte) error {
	dir := filepath.Join(s.importDir(), sub)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("auto-import: move %s aside: %w", src, err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if _, err := os.Lstat(dst); err == nil {
		dst += "." + time.Now().UTC().Format("20060102T150405.000000000")
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("auto-import: move %s aside: %w", src, err)
	}
	if errText != nil {
		if err := writeFileAtomic(dst+".error", errText, 0o600); err != nil {
			return err
		}
	}
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("auto-import: move %s aside: %w", src, err)
	}
	return nil
}
