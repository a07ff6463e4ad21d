package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
// configBlob, when not nil, fetches the config blob (a remote source);
// otherwise the image's own RawConfigFile is used.
func (s *Store) storeImage(ctx context.Context, img v1.Image, configBlob v1.Layer, refs []string, prog *progress) (*runtime.Image, error) {
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
	if err := s.writeBlobBytes(digest.String(), rawManifest); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	// The config is a blob like a layer: fetched with the same retries and
	// verification when the source is remote, and never twice.
	if _, err := os.Lstat(s.blobPath(configName.String())); err != nil {
		if configBlob != nil {
			cr := layerRecord{Digest: configName.String(), Size: manifest.Config.Size}
			if err := s.fetchBlob(ctx, configBlob, cr, nil); err != nil {
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
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(layerJobs)
	for i, l := range layers {
		lr := rec.Layers[i]
		g.Go(func() error {
			_, err := s.flights.do(gctx, "layer:"+lr.DiffID, func() (any, error) {
				return nil, s.ensureLayer(gctx, l, lr, prog)
			})
			if err != nil {
				return fmt.Errorf("image %s: layer %s: %w", digest, lr.Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
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

// ensureLayer makes sure the layer blob is stored and unpacked.
func (s *Store) ensureLayer(ctx context.Context, l v1.Layer, lr layerRecord, prog *progress) error {
	if _, err := os.Lstat(s.layerPath(lr.DiffID)); err == nil {
		prog.skip(lr.Digest)
		return nil
	}
	if _, err := os.Lstat(s.blobPath(lr.Digest)); err != nil {
		if err := s.fetchBlob(ctx, l, lr, prog); err != nil {
			return err
		}
	} else {
		prog.skip(lr.Digest)
	}
	f, err := os.Open(s.blobPath(lr.Digest))
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer f.Close()
	return s.unpackLayer(ctx, f, lr.DiffID)
}

// fetchBlob downloads a compressed layer with a few retries: a registry
// that drops the connection mid-blob is common and worth another try, a
// digest mismatch or a cancelled context is not.
func (s *Store) fetchBlob(ctx context.Context, l blobSource, lr layerRecord, prog *progress) error {
	var err error
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = s.fetchBlobOnce(l, lr, prog)
		if err == nil || errors.Is(err, ErrDigestMismatch) || ctx.Err() != nil || attempt == 3 {
			break
		}
		s.log.Warn().Err(err).Str("blob", lr.Digest).Int("attempt", attempt).Msg("layer download failed; retrying")
		prog.restart(lr.Digest)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay *= 2
	}
	return err
}

// blobSource is the one ability fetchBlob needs from a layer.
type blobSource interface {
	Compressed() (io.ReadCloser, error)
}

func (s *Store) fetchBlobOnce(l blobSource, lr layerRecord, prog *progress) error {
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	defer rc.Close()
	return s.writeBlob(lr.Digest, lr.Size, prog.reader(lr.Digest, rc))
}

func (s *Store) writeBlobBytes(digest string, b []byte) error {
	if _, err := os.Lstat(s.blobPath(digest)); err == nil {
		return nil
	}
	return s.writeBlob(digest, int64(len(b)), strings.NewReader(string(b)))
}

// writeBlob streams r into tmp/, checks size and digest, and only then
// renames it to its digest: nothing partial or unverified is ever named
// like a blob.
func (s *Store) writeBlob(digest string, size int64, r io.Reader) error {
	want, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(want) != 64 || !isHex(want) {
		return fmt.Errorf("blob %q: only sha256 digests are supported: %w", digest, runtime.ErrInvalidConfig)
	}
	f, err := os.CreateTemp(s.path("tmp"), "blob-*")
	if err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	// Read one byte more than promised so an overlong blob is caught
	// without reading an endless stream.
	limit := size + 1
	if size < 0 {
		limit = 1 << 62
	}
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, limit))
	if err != nil {
		f.Close()
		// A source that verifies digests itself (ggcr's remote reader)
		// fails at EOF: with every promised byte read, the content is
		// simply wrong, and retrying will not fix it.
		if got := hex.EncodeToString(h.Sum(nil)); n == size && got != want {
			return fmt.Errorf("blob %s: content hashes to sha256:%s: %w", digest, got, ErrDigestMismatch)
		}
		return fmt.Errorf("blob %s: after %d bytes: %w", digest, n, err)
	}
	if size >= 0 && n != size {
		f.Close()
		return fmt.Errorf("blob %s: got %d bytes, want %d: %w", digest, n, size, ErrDigestMismatch)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		f.Close()
		return fmt.Errorf("blob %s: content hashes to sha256:%s: %w", digest, got, ErrDigestMismatch)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	if err := os.Chmod(tmp, 0o400); err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	dst := s.blobPath(digest)
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	return syncDir(filepath.Dir(dst))
}

// readBlob returns a stored blob's content.
func (s *Store) readBlob(digest string) ([]byte, error) {
	b, err := os.ReadFile(s.blobPath(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", digest, runtime.ErrNotFound)
	}
	return b, err
}
