package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"sync"
	"sync/atomic"
)

// Caps on what compressed content may expand to. A gzip or zstd stream of
// a few megabytes can expand to terabytes of zeros; without a cap, a pull
// or an import of such a layer fills the node's disk. The caps are checked
// on the uncompressed stream while it is read, so a bomb stops at the cap.
const (
	// DefaultMaxLayerSize caps one layer's uncompressed tar: large enough
	// for the biggest layers of common images (CUDA and ML bases carry a
	// few GiB), small enough to leave an edge box its disk.
	DefaultMaxLayerSize = 10 << 30
	// DefaultMaxImageSize caps all layers of one image together, and what
	// a compressed archive expands to on import.
	DefaultMaxImageSize = 20 << 30

	// FlagMaxLayerSize and FlagMaxImageSize are the agent's settings for
	// the caps; errors name them so whoever hits a cap knows what to change.
	FlagMaxLayerSize = "max-layer-size"
	FlagMaxImageSize = "max-image-size"
)

// ErrTooLarge: content expanded past a configured size cap. Retrying does
// not help; raising the cap (SizeCapError names it) does.
var ErrTooLarge = errors.New("over the size cap")

// SizeCapError says which cap stopped a layer, an image or an archive.
type SizeCapError struct {
	What    string // "layer", "image" (all its layers) or "archive"
	Cap     int64  // bytes
	Setting string // the flag that sets the cap
	// budget is the image budget that ran out (What "image"): a layer
	// shared with another pull may have been stopped by that image's cap.
	budget *sizeBudget
}

func (e *SizeCapError) Error() string {
	what := "uncompressed " + e.What + " exceeds"
	if e.What == "image" {
		what = "uncompressed layers of the image together exceed"
	}
	return fmt.Sprintf("%s the cap of %s (--%s)", what, capString(e.Cap), e.Setting)
}

func (e *SizeCapError) Unwrap() error { return ErrTooLarge }

// capString prints a cap exactly: in binary units when it is a whole
// number of them, else in bytes.
func capString(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// minExpanded is the least a compressed blob of n bytes expands to: gzip
// and zstd add at most a few bytes per block (deflate 5 per 16 KiB, zstd 3
// per 128 KiB) plus a header, so a blob declared larger than a cap by more
// than that cannot fit under it.
func minExpanded(n int64) int64 { return n - n/1024 - 1024 }

// sizeBudget is what an image's layers may still expand to, shared by the
// layers unpacking in parallel. A nil budget has no cap.
type sizeBudget struct {
	cap  int64
	left atomic.Int64
}

func newSizeBudget(limit int64) *sizeBudget {
	if limit <= 0 {
		return nil
	}
	b := &sizeBudget{cap: limit}
	b.left.Store(limit)
	return b
}

func (b *sizeBudget) take(n int64) error {
	if b == nil || n <= 0 {
		return nil
	}
	if b.left.Add(-n) < 0 {
		return &SizeCapError{What: "image", Cap: b.cap, Setting: FlagMaxImageSize, budget: b}
	}
	return nil
}

// capReader fails a stream that expands past max bytes (max <= 0: no
// cap) or past the image's budget. It never reads more than one byte past
// the cap, and hands out no byte beyond it.
type capReader struct {
	r       io.Reader
	n, max  int64
	budget  *sizeBudget
	what    string
	setting string
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.max > 0 && int64(len(p)) > c.max-c.n+1 {
		p = p[:c.max-c.n+1]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.max > 0 && c.n > c.max {
		return 0, &SizeCapError{What: c.what, Cap: c.max, Setting: c.setting}
	}
	if berr := c.budget.take(int64(n)); berr != nil {
		return 0, berr
	}
	return n, err
}

// madeSet records the blobs and layers one storeImage call created, so a
// refused image can take them back. Layers unpack in parallel.
type madeSet struct {
	mu     sync.Mutex
	blobs  []string // digests
	layers []string // diffIDs
}

func (m *madeSet) blob(digest string) {
	m.mu.Lock()
	m.blobs = append(m.blobs, digest)
	m.mu.Unlock()
}

func (m *madeSet) layer(diffID string) {
	m.mu.Lock()
	m.layers = append(m.layers, diffID)
	m.mu.Unlock()
}

// forget removes what a refused image made that no stored image refers
// to: a cap refusal is final, so keeping it would only hold disk until the
// next prune. An image being stored at this very moment that shares such
// a layer finds it missing at first use and pulls it again.
func (s *Store) forget(m *madeSet) error {
	return s.updateIndex(func(idx *index) error {
		used := map[string]bool{}
		for _, r := range idx.Images {
			used[r.Digest], used[r.ID] = true, true
			for _, l := range r.Layers {
				used[l.Digest], used[l.DiffID] = true, true
			}
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		var errs []error
		for _, d := range m.blobs {
			if used[d] {
				continue
			}
			if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		for _, d := range m.layers {
			if !used[d] {
				errs = append(errs, os.RemoveAll(s.layerPath(d)))
			}
		}
		return errors.Join(errs...)
	})
}

// checkDeclaredSizes refuses, before any download, an image whose
// manifest already declares more compressed bytes than its caps allow
// uncompressed.
func (s *Store) checkDeclaredSizes(rec *record) error {
	var total int64
	for _, l := range rec.Layers {
		least := max(minExpanded(l.Size), 0)
		if s.opts.MaxLayerSize > 0 && least > s.opts.MaxLayerSize {
			return fmt.Errorf("layer %s: %d compressed bytes: %w", l.Digest, l.Size,
				&SizeCapError{What: "layer", Cap: s.opts.MaxLayerSize, Setting: FlagMaxLayerSize})
		}
		total = min(total, math.MaxInt64-least) + least
	}
	if s.opts.MaxImageSize > 0 && total > s.opts.MaxImageSize {
		return fmt.Errorf("its compressed layers expand to at least %d bytes: %w", total, &SizeCapError{What: "image", Cap: s.opts.MaxImageSize, Setting: FlagMaxImageSize})
	}
	return nil
}
