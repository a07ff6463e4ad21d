package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// ErrDigestMismatch: content did not hash to the digest that names it.
var ErrDigestMismatch = errors.New("digest mismatch")

// layerJobs bounds parallel layer downloads/unpacks of one image; two cores
// are shared by everything on an edge box.
const layerJobs = 3

// storeImage copies img into the store (blobs verified, layers unpacked)
// and points refs at it. Work already done (an existing blob or layer) is
// skipped, which is what makes a retried pull cheap.
//
// blobs, when not nil, fetches blobs by digest (a registry, with resumable
// downloads); otherwise the image's own layers and config are read.
func (s *Store) storeImage(ctx context.Context, img v1.Image, blobs blobOpener, refs []string, prog *progress) (*runtime.Image, error) {
	// Shared GC lock: Prune must not collect blobs that are not yet indexed.
	unlock, err := s.lock("gc.lock", unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()

	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("manifest digest: %w", err)
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("manifest %s: media type: %w", digest, err)
	}
	manifest, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	configName := manifest.Config.Digest
	// What this call creates, so that a refusal (a size cap) takes it back.
	made := &madeSet{}
	if _, err := os.Lstat(s.blobPath(digest.String())); err != nil {
		made.blob(digest.String())
	}
	if err := s.writeBlobBytes(digest.String(), rawManifest); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	// The config is a blob like a layer: fetched with the same retries and
	// verification when the source is remote, and never twice.
	if _, err := os.Lstat(s.blobPath(configName.String())); err != nil {
		made.blob(configName.String())
		if blobs != nil {
			cr := layerRecord{Digest: configName.String(), Size: manifest.Config.Size}
			if err := s.fetchBlob(ctx, blobs(ctx, cr.Digest, cr.Size), cr, nil); err != nil {
				return nil, fmt.Errorf("manifest %s: config: %w", digest, err)
			}
		} else {
			raw, err := img.RawConfigFile()
			if err != nil {
				return nil, fmt.Errorf("manifest %s: read config: %w", digest, err)
			}
			if err := s.writeBlobBytes(configName.String(), raw); err != nil {
				return nil, fmt.Errorf("manifest %s: config %s: %w", digest, configName, err)
			}
		}
	}
	rawConfig, err := s.readBlob(configName.String())
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", configName, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("manifest %s: layers: %w", digest, err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("manifest %s: %d layers but config %s lists %d diffIDs: %w",
			digest, len(layers), configName, len(cfg.RootFS.DiffIDs), runtime.ErrInvalidConfig)
	}
	rec := &record{
		ID:        configName.String(),
		Digest:    digest.String(),
		MediaType: string(mediaType),
		OS:        cfg.OS,
		Arch:      cfg.Architecture,
		CreatedAt: cfg.Created.Time,
		Config:    imageConfig(&cfg.Config),
		Layers:    make([]layerRecord, len(layers)),
		Size:      int64(len(rawManifest) + len(rawConfig)),
	}
	for i, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("manifest %s: layer %d: %w", digest, i, err)
		}
		size, err := l.Size()
		if err != nil {
			return nil, fmt.Errorf("manifest %s: layer %s: %w", digest, ld, err)
		}
		mt, _ := l.MediaType()
		rec.Layers[i] = layerRecord{Digest: ld.String(), DiffID: cfg.RootFS.DiffIDs[i].String(), Size: size, MediaType: string(mt)}
		rec.Size += size
		prog.addLayer(ld.String(), size)
	}
	if err := s.checkDeclaredSizes(rec); err != nil {
		return nil, s.refused(made, fmt.Errorf("image %s: %w", digest, err))
	}
	// Layers this store already holds count against the image's cap with
	// the size recorded when they were unpacked.
	known := map[string]int64{}
	if idx, err := s.readIndex(); err == nil {
		for _, r := range idx.Images {
			for _, l := range r.Layers {
				known[l.DiffID] = max(known[l.DiffID], l.TarSize)
			}
		}
	}
	budget := newSizeBudget(s.opts.MaxImageSize)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(layerJobs)
	for i, l := range layers {
		lr := rec.Layers[i]
		g.Go(func() error {
			unpack := func() (any, error) {
				var src blobSource = l
				if blobs != nil {
					src = blobs(gctx, lr.Digest, lr.Size)
				}
				return s.ensureLayer(gctx, src, lr, prog, budget, made)
			}
			v, err := s.flights.do(gctx, "layer:"+lr.DiffID, unpack)
			if ce := (*SizeCapError)(nil); errors.As(err, &ce) && ce.budget != nil && ce.budget != budget {
				// Another image's cap stopped the unpack this one waited
				// for; this image may still fit under its own.
				v, err = s.flights.do(gctx, "layer:"+lr.DiffID, unpack)
			}
			if err != nil {
				return fmt.Errorf("image %s: layer %s: %w", digest, lr.Digest, err)
			}
			res := v.(layerResult)
			if res.budget != budget {
				// Present already, or unpacked for another image: it
				// counts now, whole.
				if res.size == 0 {
					res.size = known[lr.DiffID]
				}
				if err := budget.take(res.size); err != nil {
					return fmt.Errorf("image %s: layer %s: %w", digest, lr.Digest, err)
				}
			}
			rec.Layers[i].TarSize = res.size
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, s.refused(made, err)
		}
		return nil, err
	}
	rec.StoredAt = time.Now().UTC()
	var out *runtime.Image
	err = s.updateIndex(func(idx *index) error {
		if old, ok := idx.Images[rec.Digest]; ok {
			rec.StoredAt = old.StoredAt
		}
		idx.Images[rec.Digest] = rec
		for _, r := range refs {
			idx.Refs[r] = rec.Digest
		}
		out = idx.image(rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func imageConfig(c *v1.Config) runtime.ImageConfig {
	out := runtime.ImageConfig{
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		Env:        c.Env,
		WorkingDir: c.WorkingDir,
		User:       c.User,
		StopSignal: c.StopSignal,
		Labels:     c.Labels,
	}
	for p := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, p)
	}
	sort.Strings(out.ExposedPorts)
	return out
}

// blobOpener returns a source for the blob with this digest and size.
type blobOpener func(ctx context.Context, digest string, size int64) blobSource

// layerResult is what ensureLayer reports to the image it works for, and
// to images that wait for the same layer.
type layerResult struct {
	size   int64       // uncompressed tar bytes; 0 when the layer was already there
	budget *sizeBudget // the image budget the unpack counted against
}

// ensureLayer makes sure the layer blob is stored and unpacked, counting
// the uncompressed stream against the layer cap and budget.
func (s *Store) ensureLayer(ctx context.Context, l blobSource, lr layerRecord, prog *progress, budget *sizeBudget, made *madeSet) (layerResult, error) {
	if _, err := os.Lstat(s.layerPath(lr.DiffID)); err == nil {
		prog.skip(lr.Digest)
		return layerResult{}, nil
	}
	if _, err := os.Lstat(s.blobPath(lr.Digest)); err != nil {
		if err := s.fetchBlob(ctx, l, lr, prog); err != nil {
			return layerResult{}, err
		}
		made.blob(lr.Digest)
	} else {
		prog.skip(lr.Digest)
	}
	f, err := os.Open(s.blobPath(lr.Digest))
	if err != nil {
		return layerResult{}, fmt.Errorf("unpack: %w", err)
	}
	defer f.Close()
	size, created, err := s.unpackLayer(ctx, f, lr.DiffID, budget)
	if err != nil {
		return layerResult{}, err
	}
	if created {
		made.layer(lr.DiffID)
	}
	return layerResult{size: size, budget: budget}, nil
}

// refused takes back what a refused image made and returns err, with
// any failure of that cleanup added.
func (s *Store) refused(made *madeSet, err error) error {
	if ferr := s.forget(made); ferr != nil {
		return fmt.Errorf("%w (cleanup: %v)", err, ferr)
	}
	return err
}

// fetchBlob downloads a blob with a few retries: a registry that drops
// the connection mid-blob is common and worth another try, a digest
// mismatch or a cancelled context is not. When the source can serve byte
// ranges, a retry resumes where the broken download stopped.
func (s *Store) fetchBlob(ctx context.Context, src blobSource, lr layerRecord, prog *progress) error {
	w, err := s.newBlobWriter(lr.Digest, lr.Size)
	if err != nil {
		return err
	}
	defer w.abort()
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = s.fetchAttempt(w, src, lr, prog)
		if err == nil {
			return w.commit()
		}
		if errors.Is(err, ErrDigestMismatch) || errors.Is(err, errWrite) || ctx.Err() != nil || attempt == 3 {
			return err
		}
		s.log.Warn().Err(err).Str("blob", lr.Digest).Int("attempt", attempt).Int64("have", w.n).Msg("blob download failed; retrying")
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay *= 2
	}
}

func (s *Store) fetchAttempt(w *blobWriter, src blobSource, lr layerRecord, prog *progress) error {
	var rc io.ReadCloser
	var err error
	if rs, ok := src.(rangeSource); ok && w.n > 0 {
		var resumed bool
		rc, resumed, err = rs.CompressedFrom(w.n)
		if err == nil && !resumed {
			if err := w.reset(); err != nil {
				rc.Close()
				return err
			}
			prog.restart(lr.Digest)
		}
	} else {
		if w.n > 0 {
			if err := w.reset(); err != nil {
				return err
			}
			prog.restart(lr.Digest)
		}
		rc, err = src.Compressed()
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", lr.Digest, err)
	}
	defer rc.Close()
	return w.copyFrom(prog.reader(lr.Digest, rc))
}

// blobSource is the one ability fetchBlob needs from a layer.
type blobSource interface {
	Compressed() (io.ReadCloser, error)
}

// rangeSource can serve a blob from an offset; resumed is false when the
// server ignored the range and sent the whole blob.
type rangeSource interface {
	CompressedFrom(offset int64) (rc io.ReadCloser, resumed bool, err error)
}

func (s *Store) writeBlobBytes(digest string, b []byte) error {
	if _, err := os.Lstat(s.blobPath(digest)); err == nil {
		return nil
	}
	return s.writeBlob(digest, int64(len(b)), bytes.NewReader(b))
}

// writeBlob streams r into tmp/, checks size and digest, and only then
// renames it to its digest: nothing partial or unverified is ever named
// like a blob.
func (s *Store) writeBlob(digest string, size int64, r io.Reader) error {
	w, err := s.newBlobWriter(digest, size)
	if err != nil {
		return err
	}
	defer w.abort()
	if err := w.copyFrom(r); err != nil {
		return err
	}
	return w.commit()
}

// errWrite marks a local write failure: retrying the download won't help.
var errWrite = errors.New("write failed")

// blobWriter accumulates one blob in tmp/, hashing as it goes, so that a
// resumed download continues both the file and the hash.
type blobWriter struct {
	s      *Store
	digest string
	want   string
	size   int64
	f      *os.File
	h      hash.Hash
	n      int64
}

func (s *Store) newBlobWriter(digest string, size int64) (*blobWriter, error) {
	want, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(want) != 64 || !isHex(want) {
		return nil, fmt.Errorf("blob %q: only sha256 digests are supported: %w", digest, runtime.ErrInvalidConfig)
	}
	f, err := os.CreateTemp(s.path("tmp"), "blob-*")
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	return &blobWriter{s: s, digest: digest, want: want, size: size, f: f, h: sha256.New()}, nil
}

func (w *blobWriter) copyFrom(r io.Reader) error {
	// Read one byte more than promised so an overlong blob is caught
	// without reading an endless stream.
	limit := int64(1 << 62)
	if w.size >= 0 {
		limit = w.size + 1 - w.n
	}
	n, err := io.Copy(io.MultiWriter(w.f, w.h), &readErrMarker{r: io.LimitReader(r, limit)})
	w.n += n
	if err == nil {
		return nil
	}
	if errors.Is(err, errRead) {
		// A source that verifies digests itself (ggcr's readers) fails
		// at EOF: with every promised byte read, the content is simply
		// wrong, and retrying will not fix it.
		if got := hex.EncodeToString(w.h.Sum(nil)); w.n == w.size && got != w.want {
			return fmt.Errorf("blob %s: content hashes to sha256:%s: %w", w.digest, got, ErrDigestMismatch)
		}
		return fmt.Errorf("blob %s: after %d bytes: %w", w.digest, w.n, errors.Unwrap(err))
	}
	return fmt.Errorf("blob %s: %w: %w", w.digest, errWrite, err)
}

var errRead = errors.New("read failed")

// readErrMarker tags errors of the source so copyFrom can tell them from
// local write errors.
type readErrMarker struct{ r io.Reader }

func (m *readErrMarker) Read(b []byte) (int, error) {
	n, err := m.r.Read(b)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", errRead, err)
	}
	return n, err
}

func (w *blobWriter) reset() error {
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("blob %s: %w: %w", w.digest, errWrite, err)
	}
	if err := w.f.Truncate(0); err != nil {
		return fmt.Errorf("blob %s: %w: %w", w.digest, errWrite, err)
	}
	w.h.Reset()
	w.n = 0
	return nil
}

func (w *blobWriter) commit() error {
	if w.size >= 0 && w.n != w.size {
		return fmt.Errorf("blob %s: got %d bytes, want %d: %w", w.digest, w.n, w.size, ErrDigestMismatch)
	}
	if got := hex.EncodeToString(w.h.Sum(nil)); got != w.want {
		return fmt.Errorf("blob %s: content hashes to sha256:%s: %w", w.digest, got, ErrDigestMismatch)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("blob %s: %w", w.digest, err)
	}
	if err := w.f.Chmod(0o400); err != nil {
		return fmt.Errorf("blob %s: %w", w.digest, err)
	}
	dst := w.s.blobPath(w.digest)
	if err := os.Rename(w.f.Name(), dst); err != nil {
		return fmt.Errorf("blob %s: %w", w.digest, err)
	}
	return syncDir(filepath.Dir(dst))
}

// abort removes the temp file unless commit renamed it.
func (w *blobWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// readBlob returns a stored blob's content.
func (s *Store) readBlob(digest string) ([]byte, error) {
	b, err := os.ReadFile(s.blobPath(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", digest, runtime.ErrNotFound)
	}
	return b, err
}
