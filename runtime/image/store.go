// Package image is the OCI image store: it pulls images from registries,
// imports docker-archive and OCI archives offline, verifies every blob by
// digest, and unpacks each layer once (by diffID) into a directory that is
// ready to be an overlayfs lowerdir.
//
// Layout under Options.Root/images:
//
//	blobs/sha256/<hex>   verified blobs (manifests, configs, compressed layers)
//	layers/<hex>         one unpacked layer per diffID, overlay whiteout form
//	index.json           image records and the references that name them
//	tmp/                 work in progress; anything here is garbage after a crash
//	import/              auto-import inbox; done/ and failed/ below it
//
// Everything that looks complete was made complete before it got its name:
// blobs and layers are built under tmp/ and renamed into place, index.json is
// replaced atomically. A crash therefore leaves only tmp/ litter, which Open
// and Prune remove.
package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Options configures a Store.
type Options struct {
	// Root is the agent's state root; the store lives under Root/images.
	Root string
	// InsecureRegistries may be reached over plain HTTP (host or host:port).
	// Loopback registries always may.
	InsecureRegistries []string
	// DockerConfig is a Docker config.json with registry credentials. Empty
	// means the usual places ($DOCKER_CONFIG, ~/.docker/config.json).
	DockerConfig string
	// MaxLayerEntries bounds the number of tar entries in one layer, so a
	// hostile layer cannot exhaust inodes. 0 means DefaultMaxLayerEntries.
	MaxLayerEntries int
	// MaxLayerSize caps the uncompressed size of one layer and
	// MaxImageSize that of all layers of one image together (and what a
	// compressed archive expands to on import), in bytes: a compression
	// bomb fails the pull or import and leaves nothing. 0 means
	// DefaultMaxLayerSize / DefaultMaxImageSize, -1 no cap.
	MaxLayerSize int64
	MaxImageSize int64
	// Mirrors maps a registry (as references name it: docker.io, gcr.io,
	// host:port) to the registry host[:port] pulls of its images go to
	// instead; the image keeps its own name. A mirror answers for the
	// registry it stands in for, so it must be one the node trusts.
	Mirrors map[string]string
	Logger  zerolog.Logger
}

// DefaultMaxLayerEntries is generous: the largest common base images carry
// well under 100,000 files per layer.
const DefaultMaxLayerEntries = 1 << 20

// Store is a content-addressed image store. It is safe for concurrent use,
// also by several processes sharing Root (the agent and the CLI): index
// updates and garbage collection are serialised with file locks.
type Store struct {
	dir     string
	opts    Options
	log     zerolog.Logger
	flights flightGroup

	mu    sync.Mutex
	inUse func(imageID string) bool
}

// record is one stored image in index.json.
type record struct {
	ID        string              `json:"id"`     // config digest
	Digest    string              `json:"digest"` // manifest digest
	MediaType string              `json:"mediaType"`
	Layers    []layerRecord       `json:"layers"`
	Size      int64               `json:"size"`
	Config    runtime.ImageConfig `json:"config"`
	OS        string              `json:"os,omitempty"`
	Arch      string              `json:"architecture,omitempty"`
	CreatedAt time.Time           `json:"createdAt,omitzero"`
	StoredAt  time.Time           `json:"storedAt"`
}

type layerRecord struct {
	Digest    string `json:"digest"` // compressed blob
	DiffID    string `json:"diffID"` // uncompressed tar; names the unpacked dir
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
	// TarSize is the uncompressed size, counted against the image cap of
	// later images that share the layer; 0 when not known.
	TarSize int64 `json:"tarSize,omitempty"`
}

// index is the content of index.json.
type index struct {
	Images map[string]*record `json:"images"` // by manifest digest
	Refs   map[string]string  `json:"refs"`   // canonical reference -> manifest digest
}

// Open creates the store directories if needed and removes work left in
// tmp/ by a crashed process (only when no other process holds the store).
func Open(opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("open image store: state root is empty: %w", runtime.ErrInvalidConfig)
	}
	if opts.MaxLayerEntries <= 0 {
		opts.MaxLayerEntries = DefaultMaxLayerEntries
	}
	if opts.MaxLayerSize == 0 {
		opts.MaxLayerSize = DefaultMaxLayerSize
	}
	if opts.MaxImageSize == 0 {
		opts.MaxImageSize = DefaultMaxImageSize
	}
	s := &Store{dir: filepath.Join(opts.Root, "images"), opts: opts, log: opts.Logger}
	for _, d := range []string{s.dir, s.path("blobs", "sha256"), s.path("layers"), s.path("tmp"), s.importDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open image store %s: %w", s.dir, err)
		}
	}
	// The import inbox is where people drop files; the rest is private.
	if err := os.Chmod(s.importDir(), 0o700); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", s.dir, err)
	}
	if err := s.cleanTmp(); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir is the store directory (Root/images).
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

func (s *Store) importDir() string { return s.path("import") }

func (s *Store) blobPath(digest string) string {
	return s.path("blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) layerPath(diffID string) string {
	return s.path("layers", strings.TrimPrefix(diffID, "sha256:"))
}

// SetInUse installs the hook RemoveImage and Prune ask whether a container
// uses an image (by image ID, the config digest). The Linux runtime sets it.
func (s *Store) SetInUse(f func(imageID string) bool) {
	s.mu.Lock()
	s.inUse = f
	s.mu.Unlock()
}

func (s *Store) isInUse(id string) bool {
	s.mu.Lock()
	f := s.inUse
	s.mu.Unlock()
	return f != nil && f(id)
}

// cleanTmp removes what crashed writers left in tmp/. It takes the GC lock
// exclusively without waiting: when another process is mid-pull its work in
// tmp/ is live, and the next Open or Prune will clean up instead.
func (s *Store) cleanTmp() error {
	unlock, ok, err := s.tryLock("gc.lock")
	if err != nil {
		return err
	}
	if !ok {
		return nil
	}
	defer unlock()
	_, err = s.removeTmp()
	return err
}

func (s *Store) removeTmp() (int64, error) {
	entries, err := os.ReadDir(s.path("tmp"))
	if err != nil {
		return 0, fmt.Errorf("clean %s: %w", s.path("tmp"), err)
	}
	var freed int64
	for _, e := range entries {
		p := s.path("tmp", e.Name())
		freed += diskUsage(p)
		if err := os.RemoveAll(p); err != nil {
			return freed, fmt.Errorf("clean %s: %w", p, err)
		}
	}
	return freed, nil
}

// lock takes a flock on a file under the store directory. Flocks belong to
// the open file description, so they also exclude other goroutines of this
// process that open the file themselves.
func (s *Store) lock(name string, how int) (func(), error) {
	f, err := os.OpenFile(s.path(name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", s.path(name), err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", s.path(name), &os.SyscallError{Syscall: "flock", Err: err})
	}
	return func() { f.Close() }, nil
}

func (s *Store) tryLock(name string) (func(), bool, error) {
	unlock, err := s.lock(name, unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return unlock, true, nil
}

// readIndex reads index.json; callers that modify it hold index.lock.
func (s *Store) readIndex() (*index, error) {
	idx := &index{Images: map[string]*record{}, Refs: map[string]string{}}
	b, err := os.ReadFile(s.path("index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	if err := json.Unmarshal(b, idx); err != nil {
		return nil, fmt.Errorf("read image index %s: %w", s.path("index.json"), err)
	}
	if idx.Images == nil {
		idx.Images = map[string]*record{}
	}
	if idx.Refs == nil {
		idx.Refs = map[string]string{}
	}
	return idx, nil
}

// updateIndex applies fn to the index under the index lock and writes the
// result atomically.
func (s *Store) updateIndex(fn func(*index) error) error {
	unlock, err := s.lock("index.lock", unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := fn(idx); err != nil {
		return err
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	return writeFileAtomic(s.path("index.json"), b, 0o600)
}

// lookup resolves a user's reference to a record: a canonical or short
// reference (busybox:1.36), a manifest digest, an image ID, or a unique
// prefix of at least 12 hex digits of either.
func (idx *index) lookup(ref string) (*record, error) {
	if d, ok := idx.Refs[ref]; ok {
		return idx.Images[d], nil
	}
	if canon, err := NormalizeReference(ref); err == nil {
		if d, ok := idx.Refs[canon]; ok {
			return idx.Images[d], nil
		}
		// name@digest: any stored copy of that manifest will do.
		if i := strings.LastIndex(canon, "@"); i >= 0 {
			if r, ok := idx.Images[canon[i+1:]]; ok {
				return r, nil
			}
		}
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if len(hex) >= 12 && isHex(hex) {
		var found *record
		for _, r := range idx.Images {
			if strings.HasPrefix(strings.TrimPrefix(r.ID, "sha256:"), hex) ||
				strings.HasPrefix(strings.TrimPrefix(r.Digest, "sha256:"), hex) {
				if found != nil && found != r {
					return nil, fmt.Errorf("image %q: ambiguous prefix: %w", ref, runtime.ErrInvalidConfig)
				}
				found = r
			}
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("image %q: %w", ref, runtime.ErrNotFound)
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (idx *index) refsOf(digest string) []string {
	var refs []string
	for r, d := range idx.Refs {
		if d == digest {
			refs = append(refs, r)
		}
	}
	sort.Strings(refs)
	return refs
}

func (idx *index) image(r *record) *runtime.Image {
	return &runtime.Image{
		ID:         r.ID,
		Digest:     r.Digest,
		References: idx.refsOf(r.Digest),
		Size:       r.Size,
		Config:     r.Config,
		CreatedAt:  r.CreatedAt,
	}
}

// GetImage returns a stored image; a missing image is runtime.ErrNotFound.
func (s *Store) GetImage(_ context.Context, ref string) (*runtime.Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	r, err := idx.lookup(ref)
	if err != nil {
		return nil, err
	}
	return idx.image(r), nil
}

// ListImages returns every stored image, sorted by first reference then ID.
func (s *Store) ListImages(_ context.Context) ([]*runtime.Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	out := make([]*runtime.Image, 0, len(idx.Images))
	for _, r := range idx.Images {
		out = append(out, idx.image(r))
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := "", ""
		if len(out[i].References) > 0 {
			a = out[i].References[0]
		}
		if len(out[j].References) > 0 {
			b = out[j].References[0]
		}
		if a != b {
			return a < b
		}
		return out[i].Digest < out[j].Digest
	})
	return out, nil
}

// LayerDirs returns the unpacked layer directories of an image, lowest
// first, ready to be overlayfs lowerdirs (overlayfs itself wants them
// highest first in its lowerdir= option).
func (s *Store) LayerDirs(_ context.Context, ref string) ([]string, *runtime.Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, nil, err
	}
	r, err := idx.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	dirs := make([]string, 0, len(r.Layers))
	for _, l := range r.Layers {
		d := s.layerPath(l.DiffID)
		if _, err := os.Lstat(d); err != nil {
			return nil, nil, fmt.Errorf("image %s: layer %s: %w", ref, l.DiffID, err)
		}
		dirs = append(dirs, d)
	}
	return dirs, idx.image(r), nil
}

// RemoveImage removes one reference, or when ref names the image by digest
// or ID, the image with all its references. Layers and blobs are freed by
// Prune. It refuses with runtime.ErrConflict while a container uses the
// image unless force. Removing a missing image succeeds.
func (s *Store) RemoveImage(_ context.Context, ref string, force bool) error {
	return s.updateIndex(func(idx *index) error {
		r, err := idx.lookup(ref)
		if errors.Is(err, runtime.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var drop []string
		canon, cerr := NormalizeReference(ref)
		if _, ok := idx.Refs[ref]; ok {
			drop = []string{ref}
		} else if _, ok := idx.Refs[canon]; cerr == nil && ok {
			drop = []string{canon}
		} else {
			drop = idx.refsOf(r.Digest)
		}
		remaining := len(idx.refsOf(r.Digest)) - len(drop)
		if remaining <= 0 && !force && s.isInUse(r.ID) {
			return fmt.Errorf("remove image %s (%s): in use by a container: %w", ref, shortID(r.ID), runtime.ErrConflict)
		}
		for _, d := range drop {
			delete(idx.Refs, d)
		}
		// A forced removal of an image in use keeps the untagged record,
		// so Prune leaves the layers a running container has mounted.
		if remaining <= 0 && !s.isInUse(r.ID) {
			delete(idx.Images, r.Digest)
		}
		return nil
	})
}

// Prune removes images without references that no container uses, then
// every blob and unpacked layer no remaining image needs, and tmp/ litter.
// It returns the bytes freed on disk.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	// The exclusive GC lock waits for running pulls and imports, which hold
	// it shared: their blobs are not in the index yet.
	unlock, err := s.lock("gc.lock", unix.LOCK_EX)
	if err != nil {
		return 0, err
	}
	defer unlock()
	var keepBlobs, keepLayers map[string]bool
	err = s.updateIndex(func(idx *index) error {
		for d, r := range idx.Images {
			if len(idx.refsOf(d)) == 0 && !s.isInUse(r.ID) {
				delete(idx.Images, d)
			}
		}
		keepBlobs, keepLayers = map[string]bool{}, map[string]bool{}
		for _, r := range idx.Images {
			keepBlobs[hexOf(r.Digest)] = true
			keepBlobs[hexOf(r.ID)] = true
			for _, l := range r.Layers {
				keepBlobs[hexOf(l.Digest)] = true
				keepLayers[hexOf(l.DiffID)] = true
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	freed, err := s.removeTmp()
	if err != nil {
		return freed, err
	}
	for _, set := range []struct {
		dir  string
		keep map[string]bool
	}{{s.path("blobs", "sha256"), keepBlobs}, {s.path("layers"), keepLayers}} {
		entries, err := os.ReadDir(set.dir)
		if err != nil {
			return freed, fmt.Errorf("prune %s: %w", set.dir, err)
		}
		for _, e := range entries {
			if set.keep[e.Name()] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return freed, err
			}
			p := filepath.Join(set.dir, e.Name())
			n := diskUsage(p)
			if err := os.RemoveAll(p); err != nil {
				return freed, fmt.Errorf("prune %s: %w", p, err)
			}
			freed += n
		}
	}
	return freed, nil
}

func hexOf(d string) string { return strings.TrimPrefix(d, "sha256:") }

func shortID(d string) string {
	h := hexOf(d)
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// diskUsage is the allocated size of a tree; errors count as zero because
// it only feeds a report.
func diskUsage(p string) int64 {
	var n int64
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*unix.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	return n
}

// writeFileAtomic writes data to a temp file beside path, syncs it and
// renames it into place, so readers see the old or the new content.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// flightGroup makes concurrent callers with the same key share one call:
// a second pull of an image waits for the first instead of duplicating it.
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	waiters int
	done    chan struct{}
	val     any
	err     error
}

// fn runs with the first caller's context; when that caller gives up,
// waiters whose own context is still live run fn again themselves.
func (g *flightGroup) do(ctx context.Context, key string, fn func() (any, error)) (any, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*flight{}
	}
	if f, ok := g.m[key]; ok {
		f.waiters++
		g.mu.Unlock()
		select {
		case <-f.done:
			if (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				return g.do(ctx, key, fn)
			}
			return f.val, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	g.m[key] = f
	g.mu.Unlock()
	f.val, f.err = fn()
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
	close(f.done)
	return f.val, f.err
}

// waiting is how many callers wait for the call running under key.
func (g *flightGroup) waiting(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok {
		return f.waiters
	}
	return 0
}

var _ runtime.ImageService = (*Store)(nil)

// Details is everything the store knows about an image (image inspect).
type Details struct {
	runtime.Image
	MediaType    string         `json:"mediaType"`
	OS           string         `json:"os,omitempty"`
	Architecture string         `json:"architecture,omitempty"`
	StoredAt     time.Time      `json:"storedAt"`
	Layers       []LayerDetails `json:"layers"`
}

// LayerDetails describes one layer of an image, lowest first.
type LayerDetails struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
	Dir       string `json:"dir"`
}

// Inspect returns an image's details; a missing image is ErrNotFound.
func (s *Store) Inspect(_ context.Context, ref string) (*Details, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	r, err := idx.lookup(ref)
	if err != nil {
		return nil, err
	}
	d := &Details{Image: *idx.image(r), MediaType: r.MediaType, OS: r.OS, Architecture: r.Arch, StoredAt: r.StoredAt}
	for _, l := range r.Layers {
		d.Layers = append(d.Layers, LayerDetails{Digest: l.Digest, DiffID: l.DiffID, Size: l.Size, MediaType: l.MediaType, Dir: s.layerPath(l.DiffID)})
	}
	return d, nil
}
