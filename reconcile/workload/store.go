package workload

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/pelagos-containers/pelagos-agent/spec"
)

// Store keeps records that must outlive the agent: a Job's progress, so a
// finished Job is not run again after a restart or a reboot. Records are
// small JSON documents by key.
type Store interface {
	// Load returns the record, or nil (and no error) when there is none.
	Load(key string) ([]byte, error)
	// Save replaces the record atomically.
	Save(key string, data []byte) error
	// Delete removes the record; a missing one is no error.
	Delete(key string) error
}

func storeKey(k spec.WorkloadKey) string {
	return k.Kind + "_" + k.Namespace + "_" + k.Name
}

// MemStore is a Store in memory, for tests and for `apply --once`.
type MemStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{m: map[string][]byte{}} }

func (s *MemStore) Load(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key], nil
}

func (s *MemStore) Save(key string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = append([]byte(nil), data...)
	return nil
}

func (s *MemStore) Delete(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// DirStore keeps each record as a file in one directory (under the state
// root), written atomically: a temporary file, fsync, rename, and an fsync
// of the directory, so a crash leaves the old record or the new one.
type DirStore struct{ Dir string }

func (s DirStore) path(key string) string {
	// Kinds, namespaces and names are DNS names: escaping only guards
	// against a key that is not one.
	return filepath.Join(s.Dir, url.PathEscape(key)+".json")
}

func (s DirStore) Load(key string) ([]byte, error) {
	b, err := os.ReadFile(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("workload record %s: %w", key, err)
	}
	return b, nil
}

func (s DirStore) Save(key string, data []byte) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("workload records: %w", err)
	}
	f, err := os.CreateTemp(s.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("workload record %s: %w", key, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, s.path(key))
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("workload record %s: %w", key, werr)
	}
	if d, err := os.Open(s.Dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (s DirStore) Delete(key string) error {
	if err := os.Remove(s.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("workload record %s: %w", key, err)
	}
	return nil
}
