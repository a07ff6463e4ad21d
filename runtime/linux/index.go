package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
)

// racyWindow is how long after a change of the containers directory its
// modification time is not trusted to show the next change: the kernel
// stamps directories with a clock that may tick only every few
// milliseconds, so two changes within one tick share a time.
const racyWindow = 50 * time.Millisecond

// ctrIndex is this process's view of the container records under the run
// root, by ID and by sandbox. A record does not change once its shim has
// read it, nor does a start or exit record once written, so each is read
// and decoded once; an observation then costs a look at the exit record
// and at /proc for the containers asked about, never a decode of every
// record of the node. Other processes (the CLI, another Runtime) change
// the directory too: a listing re-reads its names when its modification
// time moved, and decodes only the records it does not know.
type ctrIndex struct {
	dir string
	// setAside moves a container whose records cannot be used out of the
	// way (Runtime.setAside); it is called without mu held.
	setAside func(id string, err error)

	mu        sync.Mutex
	byID      map[string]*indexed
	bySandbox map[string]map[string]*indexed
	// pending are directories seen without a readable record (being
	// created, or a crash's leftover for GC): retried on each listing,
	// since writing a record in them does not touch the parent directory.
	pending  map[string]bool
	listed   bool
	mtime    time.Time // of dir when it was last listed
	listedAt time.Time
}

// recordDecodes counts container records read and decoded, for the test
// that keeps observation from growing with the node.
var recordDecodes atomic.Int64

// indexed is one container's records as far as they have been read.
type indexed struct {
	rec   *record.Container
	state atomic.Pointer[record.State]
	exit  atomic.Pointer[record.Exit]
}

func newCtrIndex(dir string) ctrIndex {
	return ctrIndex{dir: dir, byID: map[string]*indexed{}, bySandbox: map[string]map[string]*indexed{}, pending: map[string]bool{}}
}

// add indexes rec; x.mu is held.
func (x *ctrIndex) add(rec *record.Container) *indexed {
	e := &indexed{rec: rec}
	if old := x.byID[rec.ID]; old != nil {
		x.remove(rec.ID)
	}
	x.byID[rec.ID] = e
	if x.bySandbox[rec.SandboxID] == nil {
		x.bySandbox[rec.SandboxID] = map[string]*indexed{}
	}
	x.bySandbox[rec.SandboxID][rec.ID] = e
	delete(x.pending, rec.ID)
	return e
}

// remove forgets id; x.mu is held.
func (x *ctrIndex) remove(id string) {
	e := x.byID[id]
	delete(x.pending, id)
	if e == nil {
		return
	}
	delete(x.byID, id)
	if m := x.bySandbox[e.rec.SandboxID]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(x.bySandbox, e.rec.SandboxID)
		}
	}
}

// put indexes a record this process wrote and the start its shim
// reported.
func (x *ctrIndex) put(rec *record.Container, st *record.State) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.add(rec)
	if st != nil {
		e.state.Store(st)
	}
}

// drop forgets a container this process removed.
func (x *ctrIndex) drop(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.remove(id)
}

// refresh brings the index up to date with the directory; x.mu is held.
// It returns the records that cannot be used, for the caller to set aside
// once x.mu is released.
func (x *ctrIndex) refresh() (map[string]error, error) {
	st, err := os.Stat(x.dir)
	if errors.Is(err, os.ErrNotExist) {
		x.byID, x.bySandbox, x.pending = map[string]*indexed{}, map[string]map[string]*indexed{}, map[string]bool{}
		x.listed = false
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	bad := map[string]error{}
	if x.listed && st.ModTime().Equal(x.mtime) && x.listedAt.Sub(x.mtime) > racyWindow {
		for id := range x.pending {
			if err := x.load(id); err != nil {
				bad[id] = err
			}
		}
		return bad, nil
	}
	listedAt := time.Now()
	ents, err := os.ReadDir(x.dir)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	seen := make(map[string]bool, len(ents))
	for _, en := range ents {
		id := en.Name()
		if validID(id) != nil || strings.Contains(id, ".tmp.") {
			continue
		}
		seen[id] = true
		if x.byID[id] == nil {
			if err := x.load(id); err != nil {
				bad[id] = err
			}
		}
	}
	for id := range x.byID {
		if !seen[id] {
			x.remove(id)
		}
	}
	for id := range x.pending {
		if !seen[id] {
			delete(x.pending, id)
		}
	}
	x.listed, x.mtime, x.listedAt = true, st.ModTime(), listedAt
	return bad, nil
}

// load reads the record of id into the index, or marks it pending; x.mu
// is held. A record that cannot be used is returned, not indexed.
func (x *ctrIndex) load(id string) error {
	recordDecodes.Add(1)
	rec, err := readContainerRecord(filepath.Join(x.dir, id))
	if record.IsCorrupt(err) {
		delete(x.pending, id)
		return err
	}
	if err != nil {
		// Half-made (no record yet) or half-removed: GC's, unless a
		// record appears.
		x.pending[id] = true
		return nil
	}
	x.add(rec)
	return nil
}

// list returns the indexed containers of a sandbox ("": all).
func (x *ctrIndex) list(sandboxID string) ([]*indexed, error) {
	x.mu.Lock()
	bad, err := x.refresh()
	if err != nil {
		x.mu.Unlock()
		return nil, err
	}
	src := x.byID
	if sandboxID != "" {
		src = x.bySandbox[sandboxID]
	}
	out := make([]*indexed, 0, len(src))
	for _, e := range src {
		out = append(out, e)
	}
	x.mu.Unlock()
	for id, err := range bad {
		x.setAside(id, err)
	}
	return out, nil
}

// get returns container id: ErrNotFound when it has no record, or one
// that cannot be used (then it is set aside).
func (x *ctrIndex) get(id string) (*indexed, error) {
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, runtime.ErrNotFound)
	}
	x.mu.Lock()
	if e := x.byID[id]; e != nil {
		// Another process may have removed it since.
		if _, err := os.Stat(filepath.Join(e.rec.Dir, record.ContainerFile)); err == nil {
			x.mu.Unlock()
			return e, nil
		}
		x.remove(id)
	}
	recordDecodes.Add(1)
	rec, err := readContainerRecord(filepath.Join(x.dir, id))
	if err == nil {
		e := x.add(rec)
		x.mu.Unlock()
		return e, nil
	}
	x.mu.Unlock()
	if record.IsCorrupt(err) {
		x.setAside(id, err)
		return nil, fmt.Errorf("container %s: record set aside (%v): %w", id, err, runtime.ErrNotFound)
	}
	return nil, err
}

// observe reports the container as its records and the kernel show it,
// reading only what may have changed: the exit record until there is one,
// the start record until there is one, and /proc. A start or exit record
// that cannot be used is returned as an error (record.IsCorrupt).
func (e *indexed) observe() (*runtime.Container, error) {
	c := observeCreated(e.rec)
	ex := e.exit.Load()
	if ex == nil {
		got, err := e.rec.Exit()
		if record.IsCorrupt(err) {
			return nil, err
		}
		if err == nil {
			ex = got
			e.exit.Store(got)
		}
	}
	if ex != nil {
		c.State, c.ExitCode, c.Signal, c.Reason, c.Message = runtime.ContainerExited, ex.ExitCode, ex.Signal, ex.Reason, ex.Message
		c.StartedAt, c.FinishedAt = ex.StartedAt, ex.FinishedAt
		return c, nil
	}
	st := e.state.Load()
	if st == nil {
		got, err := e.rec.State()
		if record.IsCorrupt(err) {
			return nil, err
		}
		if err != nil {
			return c, nil // not started (yet): created
		}
		st = got
		e.state.Store(got)
	}
	c.StartedAt = st.StartedAt
	switch {
	case st.Init.Alive():
		c.State, c.PID = runtime.ContainerRunning, st.Init.PID
	case st.Shim.Alive():
		// Exited; the shim is writing the record right now.
		c.State, c.PID = runtime.ContainerRunning, st.Init.PID
	default:
		c.State, c.Reason = runtime.ContainerUnknown, "ShimLost"
	}
	return c, nil
}

// observe is the indexed container as observed; one whose start or exit
// record cannot be used is set aside and reads as not found.
func (x *ctrIndex) observe(e *indexed) (*runtime.Container, error) {
	c, err := e.observe()
	if err != nil {
		x.setAside(e.rec.ID, err)
		return nil, fmt.Errorf("container %s: record set aside (%v): %w", e.rec.ID, err, runtime.ErrNotFound)
	}
	return c, nil
}
