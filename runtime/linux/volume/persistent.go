//go:build linux

package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Persistent volumes (a pod's persistentVolumeClaim) are node-local named
// volumes, as podman's: <StateRoot>/persistent-volumes/<namespace>/<name>
// holds the files containers see (data/) and the volume's record
// (volume.json: when it was made, its size and how the size is held). A
// sandbox's teardown never touches them; only RemovePersistent does, and
// never while a sandbox names the volume. Creation and removal hold an
// flock on the root's lock file, so a removal and a first use never
// interleave, in this process or another (the CLI beside the agent).

const (
	persistentDataDir = "data"
	persistentRecord  = "volume.json"
	persistentLock    = ".lock"
)

// PersistentVolume is what the runtime knows of a persistent volume.
type PersistentVolume struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Path      string    `json:"path"` // the directory containers mount
	Created   time.Time `json:"created"`
	Quota     Quota     `json:"quota"`
	// Used is the bytes its files take, read when it is listed.
	Used int64 `json:"used"`
	// UsedBy lists the sandboxes whose records name the volume (filled in
	// by the runtime, which owns the records).
	UsedBy []string `json:"usedBy,omitempty"`
}

func (m *Manager) persistentRoot() string {
	return filepath.Join(filepath.Dir(m.root), "persistent-volumes")
}

func (m *Manager) persistentDir(ns, name string) string {
	return filepath.Join(m.persistentRoot(), ns, name)
}

func checkClaim(ns, name string) error {
	if err := checkID("namespace", ns); err != nil {
		return err
	}
	return checkID("persistent volume", name)
}

// lockPersistent takes the flock that orders creations and removals of
// persistent volumes and returns its release.
func (m *Manager) lockPersistent() (func(), error) {
	if err := os.MkdirAll(m.persistentRoot(), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(m.persistentRoot(), persistentLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: f.Name(), Err: err}
	}
	return func() { f.Close() }, nil
}

// setupPersistent makes the volume on first use and applies its size
// (every use, so a claim's new size reaches it).
func (m *Manager) setupPersistent(v *runtime.PersistentVolume) (Quota, error) {
	if err := checkClaim(v.Namespace, v.Name); err != nil {
		return Quota{}, err
	}
	unlock, err := m.lockPersistent()
	if err != nil {
		return Quota{}, err
	}
	defer unlock()
	dir := m.persistentDir(v.Namespace, v.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Quota{}, err
	}
	rec, err := readPersistent(dir)
	fresh := errors.Is(err, fs.ErrNotExist)
	if fresh {
		rec, err = &PersistentVolume{Namespace: v.Namespace, Name: v.Name, Created: time.Now().UTC()}, nil
	}
	if err != nil {
		return Quota{}, err
	}
	data := filepath.Join(dir, persistentDataDir)
	// World-writable like an emptyDir, so containers running as any user
	// can use it; the directories above stay 0700.
	if err := makeLimitable(data, 0o777); err != nil {
		return Quota{}, err
	}
	before := *rec
	if v.Size != 0 || rec.Quota.Size != 0 {
		// Every use: a claim's new size (or none) reaches the volume.
		if rec.Quota, err = limitDir(data, v.Size, "persistent/"+v.Namespace+"/"+v.Name); err != nil {
			return Quota{}, err
		}
	}
	if fresh || rec.Quota != before.Quota {
		err = writePersistent(dir, rec)
	}
	return rec.Quota, err
}

func readPersistent(dir string) (*PersistentVolume, error) {
	b, err := os.ReadFile(filepath.Join(dir, persistentRecord))
	if err != nil {
		return nil, err
	}
	rec := &PersistentVolume{}
	if err := json.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, persistentRecord), err)
	}
	return rec, nil
}

// writePersistent replaces the record durably: the state root outlives
// reboots, so the rename is preceded by an fsync.
func writePersistent(dir string, rec *PersistentVolume) error {
	out := *rec
	out.Path, out.Used, out.UsedBy = "", 0, nil
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, persistentRecord)
	f, err := os.CreateTemp(dir, "."+persistentRecord)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// PersistentPath is the directory containers mount for the volume.
func (m *Manager) PersistentPath(ns, name string) string {
	return filepath.Join(m.persistentDir(ns, name), persistentDataDir)
}

// ListPersistent lists every persistent volume, by namespace and name,
// with the bytes each holds.
func (m *Manager) ListPersistent() ([]*PersistentVolume, error) {
	nss, err := os.ReadDir(m.persistentRoot())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*PersistentVolume
	for _, ns := range nss {
		if !ns.IsDir() {
			continue
		}
		names, err := os.ReadDir(filepath.Join(m.persistentRoot(), ns.Name()))
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !n.IsDir() {
				continue
			}
			v, err := m.GetPersistent(ns.Name(), n.Name())
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// GetPersistent describes one persistent volume: ErrNotFound when there
// is none.
func (m *Manager) GetPersistent(ns, name string) (*PersistentVolume, error) {
	if err := checkClaim(ns, name); err != nil {
		return nil, err
	}
	dir := m.persistentDir(ns, name)
	rec, err := readPersistent(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return nil, fmt.Errorf("persistent volume %s/%s: %w", ns, name, runtime.ErrNotFound)
		}
		// Made by a creation that stopped before its record.
		rec, err = &PersistentVolume{Namespace: ns, Name: name}, nil
	}
	if err != nil {
		return nil, err
	}
	rec.Path = m.PersistentPath(ns, name)
	rec.Used = diskUsage(rec.Path)
	return rec, nil
}

// diskUsage adds up the blocks of the files under dir, as du does
// (hard links counted once); what cannot be read counts nothing.
func diskUsage(dir string) int64 {
	var n int64
	seen := map[[2]uint64]bool{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		id := [2]uint64{st.Dev, st.Ino}
		if st.Nlink > 1 && seen[id] {
			return nil
		}
		seen[id] = true
		n += st.Blocks * 512
		return nil
	})
	return n
}

// RemovePersistent deletes a persistent volume and its files. usedBy,
// asked under the lock, names the sandboxes that use the volume; any
// makes the removal fail with ErrConflict. Removing a missing volume
// succeeds.
func (m *Manager) RemovePersistent(ns, name string, usedBy func() ([]string, error)) error {
	if err := checkClaim(ns, name); err != nil {
		return err
	}
	unlock, err := m.lockPersistent()
	if err != nil {
		return err
	}
	defer unlock()
	dir := m.persistentDir(ns, name)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	users, err := usedBy()
	if err != nil {
		return fmt.Errorf("remove persistent volume %s/%s: %w", ns, name, err)
	}
	if len(users) > 0 {
		return fmt.Errorf("remove persistent volume %s/%s: in use by %v: %w", ns, name, users, runtime.ErrConflict)
	}
	if rec, err := readPersistent(dir); err == nil && rec.Quota.Project != 0 {
		// The project ID may be given to another directory later: lift
		// its limit.
		_, _ = limitDir(filepath.Join(dir, persistentDataDir), 0, "")
	}
	if err := unmountAndRemove(dir); err != nil {
		return fmt.Errorf("remove persistent volume %s/%s: %w", ns, name, err)
	}
	// The namespace directory goes with its last volume.
	_ = os.Remove(filepath.Join(m.persistentRoot(), ns))
	return nil
}
