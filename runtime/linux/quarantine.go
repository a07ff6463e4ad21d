package linux

// Records the runtime cannot use — empty, torn, not JSON, of a version this
// agent does not know, naming another object — are set aside instead of
// failing every listing (issue 12): the record's directory is renamed into
// <run root>/quarantine/<kind>-<id>-<unix nanoseconds>/ with a
// set-aside.json saying why, the problem is reported through
// runtime.ProblemReporter, and what the record named is removed from the
// kernel by names derived from the ID (and from the owner file written
// beside every record at creation, which also keeps the pod's name), so the
// reconciler makes the pod again from scratch.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/netconf"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/shim"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

var _ runtime.ProblemReporter = (*Runtime)(nil)

// Kinds of records that can be set aside.
const (
	kindSandbox   = "sandbox"
	kindContainer = "container"
)

// Files of a record directory and of a quarantine entry.
const (
	ownerFile    = "owner.json"     // beside every record, written once at creation
	setAsideFile = "set-aside.json" // the runtime.RecordProblem, in a quarantine entry
	exitFile     = "exit.json"      // a quarantined container's exit record, moved in
	reportedFile = "reported"       // the problem was handed to the reconciler
	cleanedFile  = "cleaned"        // what the record named is gone
	keepCleaned  = 32               // cleaned entries kept for a person to look at
	ownerVersion = record.Version   // owner files follow the records' version
)

// owner is what a record directory says about itself besides its record:
// enough to report the pod and to find every kernel object by name when the
// record itself cannot be read.
type owner struct {
	Version      int            `json:"version"`
	Kind         string         `json:"kind"`
	ID           string         `json:"id"`
	SandboxID    string         `json:"sandboxID,omitempty"` // containers
	Pod          runtime.PodKey `json:"pod"`
	StateRoot    string         `json:"stateRoot"`
	RunRoot      string         `json:"runRoot"`
	NetNSName    string         `json:"netnsName,omitempty"`
	CgroupParent string         `json:"cgroupParent,omitempty"`
}

func (r *Runtime) sandboxOwner(rec *sandboxRecord) *owner {
	return &owner{Version: ownerVersion, Kind: kindSandbox, ID: rec.ID, Pod: rec.Pod, StateRoot: r.cfg.StateRoot,
		RunRoot: r.cfg.RunRoot, NetNSName: rec.NetNSName, CgroupParent: rec.CgroupParent}
}

func (r *Runtime) containerOwner(rec *record.Container) *owner {
	return &owner{Version: ownerVersion, Kind: kindContainer, ID: rec.ID, SandboxID: rec.SandboxID, Pod: rec.Pod,
		StateRoot: r.cfg.StateRoot, RunRoot: r.cfg.RunRoot, CgroupParent: rec.CgroupParent}
}

func (r *Runtime) writeOwner(dir string, o *owner) error {
	if err := record.WriteJSON(filepath.Join(dir, ownerFile), o); err != nil {
		return fmt.Errorf("%s %s: owner file: %w", o.Kind, o.ID, err)
	}
	return nil
}

// readOwner reads the owner file in dir, nil when it is missing or cannot
// be used either.
func readOwner(dir, kind, id string) *owner {
	o := &owner{}
	if err := record.ReadJSON(filepath.Join(dir, ownerFile), o); err != nil {
		return nil
	}
	if o.Version != ownerVersion || o.Kind != kind || o.ID != id {
		return nil
	}
	return o
}

func (r *Runtime) quarantineDir() string { return filepath.Join(r.cfg.RunRoot, "quarantine") }

// problems tracks what this Runtime handed to the reconciler.
type problems struct {
	mu sync.Mutex
	// seen is the quarantine directory's modification time at the last
	// scan, seenAt when that scan ran: an unchanged directory has nothing
	// new (see racyWindow).
	seen, seenAt time.Time

	// cleaning: a background cleanup runs; again: run it once more;
	// started: New has finished (a record met while it runs is cleaned up
	// once the runtime is whole).
	cleanMu                  sync.Mutex
	cleaning, again, started bool
	// pass serialises cleanup passes (background and GC).
	pass sync.Mutex
}

// setAside moves the directory of a record that cannot be used into the
// quarantine, says why beside it, and starts the cleanup of what it named.
// Another caller that set it aside (or removed it) first wins: nothing is
// reported twice.
func (r *Runtime) setAside(kind, id string, cause error) {
	src := r.sandboxDir(id)
	if kind == kindContainer {
		src = r.containerDir(id)
	}
	now := time.Now().UTC()
	dst := filepath.Join(r.quarantineDir(), fmt.Sprintf("%s-%s-%d", kind, id, now.UnixNano()))
	if err := os.MkdirAll(r.quarantineDir(), 0o700); err != nil {
		r.log.Error().Err(err).Str(kind, id).Msg("cannot set aside an unusable record")
		return
	}
	if err := os.Rename(src, dst); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.log.Error().Err(err).Str(kind, id).Msg("cannot set aside an unusable record")
		}
		return
	}
	p := runtime.RecordProblem{Kind: kind, ID: id, Path: dst, Reason: cause.Error(), Time: now}
	if o := readOwner(dst, kind, id); o != nil {
		p.Pod = &o.Pod
	}
	if kind == kindContainer {
		// The exit record belongs to the container: it goes with it, so a
		// new container of this ID never reads it.
		os.Rename(record.ExitPath(r.cfg.RunRoot, id), filepath.Join(dst, exitFile))
		if p.Pod == nil {
			if rec, err := readSetAsideContainer(dst, id); err == nil {
				p.Pod = &rec.Pod
			}
		}
		r.ctr.index.drop(id)
	}
	if err := record.WriteJSON(filepath.Join(dst, setAsideFile), &p); err != nil {
		r.log.Error().Err(err).Str(kind, id).Msg("set aside an unusable record")
	}
	ev := r.log.Warn().Str("kind", kind).Str("id", id).Str("path", dst).Str("reason", p.Reason)
	if p.Pod != nil {
		ev = ev.Str("pod", p.Pod.String())
	}
	ev.Msg("record set aside")
	r.kickCleanup()
}

// setAsidePending reports whether a record of kind and ID was set aside
// and what it named is not cleaned up yet: that ID is not free.
func (r *Runtime) setAsidePending(kind, id string) bool {
	ents, _ := os.ReadDir(r.quarantineDir())
	for _, e := range ents {
		k, eid, _, ok := parseEntry(e.Name())
		if !ok || k != kind || eid != id {
			continue
		}
		if _, err := os.Stat(filepath.Join(r.quarantineDir(), e.Name(), cleanedFile)); err != nil {
			return true
		}
	}
	return false
}

// parseEntry splits a quarantine entry's name, <kind>-<id>-<unix ns>.
func parseEntry(name string) (kind, id string, at int64, ok bool) {
	kind, rest, ok := strings.Cut(name, "-")
	if !ok || (kind != kindSandbox && kind != kindContainer) {
		return "", "", 0, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return "", "", 0, false
	}
	at, err := strconv.ParseInt(rest[i+1:], 10, 64)
	id = rest[:i]
	if err != nil || validID(id) != nil {
		return "", "", 0, false
	}
	return kind, id, at, true
}

// TakeProblems implements runtime.ProblemReporter: the records set aside
// since the last call, by this process or any other on this run root. It
// costs one stat while nothing new was set aside.
func (r *Runtime) TakeProblems() []runtime.RecordProblem {
	p := &r.probs
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := os.Stat(r.quarantineDir())
	if err != nil {
		return nil
	}
	if st.ModTime().Equal(p.seen) && p.seenAt.Sub(p.seen) > racyWindow {
		return nil
	}
	scannedAt := time.Now()
	ents, err := os.ReadDir(r.quarantineDir())
	if err != nil {
		return nil
	}
	var out []runtime.RecordProblem
	for _, e := range ents {
		if _, _, _, ok := parseEntry(e.Name()); !ok {
			continue
		}
		dir := filepath.Join(r.quarantineDir(), e.Name())
		if _, err := os.Stat(filepath.Join(dir, reportedFile)); err == nil {
			continue
		}
		var prob runtime.RecordProblem
		if err := record.ReadJSON(filepath.Join(dir, setAsideFile), &prob); err != nil {
			continue // being set aside right now: the next call has it
		}
		if err := os.WriteFile(filepath.Join(dir, reportedFile), nil, 0o600); err != nil {
			continue
		}
		out = append(out, prob)
	}
	p.seen, p.seenAt = st.ModTime(), scannedAt
	slices.SortFunc(out, func(a, b runtime.RecordProblem) int { return a.Time.Compare(b.Time) })
	return out
}

// kickCleanup cleans up set-aside records in the background: the call
// that met the record may hold locks the cleanup takes.
func (r *Runtime) kickCleanup() {
	p := &r.probs
	p.cleanMu.Lock()
	defer p.cleanMu.Unlock()
	if p.cleaning || !p.started {
		p.again = true
		return
	}
	p.cleaning = true
	go func() {
		for {
			if _, err := r.cleanQuarantine(context.Background()); err != nil {
				r.log.Warn().Err(err).Msg("clean up after set-aside records")
			}
			p.cleanMu.Lock()
			if !p.again {
				p.cleaning = false
				p.cleanMu.Unlock()
				return
			}
			p.again = false
			p.cleanMu.Unlock()
		}
	}()
}

// startCleanup lets cleanups run, and runs one if a record was set aside
// while New was running.
func (r *Runtime) startCleanup() {
	p := &r.probs
	p.cleanMu.Lock()
	p.started = true
	again := p.again
	p.again = false
	p.cleanMu.Unlock()
	if again {
		r.kickCleanup()
	}
}

// cleanQuarantine removes what every set-aside record not yet cleaned up
// named, and keeps only the newest keepCleaned cleaned entries. It returns
// one line per record cleaned up.
func (r *Runtime) cleanQuarantine(ctx context.Context) ([]string, error) {
	r.probs.pass.Lock()
	defer r.probs.pass.Unlock()
	ents, err := os.ReadDir(r.quarantineDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("clean up set-aside records: %w", err)
	}
	var done []string
	var cleaned []string
	var errs []error
	for _, e := range ents {
		kind, id, _, ok := parseEntry(e.Name())
		if !ok {
			continue
		}
		dir := filepath.Join(r.quarantineDir(), e.Name())
		if _, err := os.Stat(filepath.Join(dir, cleanedFile)); err == nil {
			cleaned = append(cleaned, e.Name())
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, setAsideFile)); err != nil {
			continue // being set aside right now
		}
		if kind == kindSandbox {
			err = r.cleanSetAsideSandbox(ctx, dir, id)
		} else {
			err = r.cleanSetAsideContainer(ctx, dir, id)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("set-aside %s %s: %w", kind, id, err))
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, cleanedFile), nil, 0o600); err != nil {
			errs = append(errs, err)
			continue
		}
		cleaned = append(cleaned, e.Name())
		done = append(done, fmt.Sprintf("objects of set-aside %s record %s", kind, id))
	}
	// Oldest first by the time in the name; the newest stay.
	slices.SortFunc(cleaned, func(a, b string) int {
		_, _, ta, _ := parseEntry(a)
		_, _, tb, _ := parseEntry(b)
		return int(ta - tb)
	})
	for len(cleaned) > keepCleaned {
		if err := os.RemoveAll(filepath.Join(r.quarantineDir(), cleaned[0])); err != nil {
			errs = append(errs, err)
		}
		cleaned = cleaned[1:]
	}
	return done, errors.Join(errs...)
}

// cleanSetAsideSandbox tears down what a set-aside sandbox record named,
// by names: the record is gone, so its containers, pauses (found by their
// arguments), netns, veth, lease, ports, volumes and pod cgroup are looked
// up from the ID and the owner file.
func (r *Runtime) cleanSetAsideSandbox(ctx context.Context, dir, id string) error {
	unlock := r.lockID(id)
	defer unlock()
	if _, err := os.Stat(r.sandboxDir(id)); err == nil {
		// A new sandbox of this ID exists (a caller-chosen ID, or another
		// process): the names are its own now, and its creation replaced
		// what was stale. Pauses of the old one are GC's (no record owns
		// them).
		return nil
	}
	rec := &sandboxRecord{ID: id, Phase: phaseSetAside, Dir: r.sandboxDir(id),
		NetNSName: r.cfg.NetNSPrefix + id, CgroupParent: r.cfg.CgroupParent}
	if o := readOwner(dir, kindSandbox, id); o != nil {
		rec.Pod, rec.NetNSName, rec.CgroupParent = o.Pod, o.NetNSName, o.CgroupParent
	} else if old, err := readSetAsideSandbox(dir, id); err == nil {
		rec.Pod, rec.NetNSName, rec.CgroupParent = old.Pod, old.NetNSName, old.CgroupParent
	}
	if rec.NetNSName != "" {
		rec.VethHost = netconf.VethName(rec.NetNSName)
	}
	if err := r.teardown(ctx, rec); err != nil {
		return err
	}
	// As GC does: the veth goes now rather than with the kernel's
	// asynchronous netns cleanup.
	if rec.VethHost != "" {
		return netconf.Teardown(rec.VethHost)
	}
	return nil
}

// readSetAsideSandbox reads a set-aside sandbox record whose damage was
// elsewhere (a version check, say) for the names it holds.
func readSetAsideSandbox(dir, id string) (*sandboxRecord, error) {
	rec := &sandboxRecord{}
	if err := record.ReadJSON(recordPath(dir), rec); err != nil {
		return nil, err
	}
	if rec.ID != id {
		return nil, errors.New("another sandbox's record")
	}
	return rec, nil
}

// readSetAsideContainer reads a set-aside container record that is itself
// intact (its start or exit record was the bad one).
func readSetAsideContainer(dir, id string) (*record.Container, error) {
	rec := &record.Container{}
	if err := record.ReadJSON(filepath.Join(dir, record.ContainerFile), rec); err != nil {
		return nil, err
	}
	if rec.ID != id || rec.SandboxID == "" || rec.Version != record.Version {
		return nil, errors.New("not this container's record")
	}
	return rec, nil
}

// cleanSetAsideContainer kills and removes what a set-aside container
// record named: the processes of its cgroup (its shim then records the
// exit and ends), its shim if it lingers, the cgroup, its write layer,
// subPath mounts, termination log and exit record.
func (r *Runtime) cleanSetAsideContainer(ctx context.Context, dir, id string) error {
	unlock := r.lockID("container/" + id)
	defer unlock()
	rec := &record.Container{ID: id, RunRoot: r.cfg.RunRoot, StateDir: r.containerStateDir(id), CgroupParent: r.cfg.CgroupParent}
	if old, err := readSetAsideContainer(dir, id); err == nil {
		rec.SandboxID, rec.CgroupParent, rec.CgroupRel, rec.TerminationLog = old.SandboxID, old.CgroupParent, old.CgroupRel, old.TerminationLog
	} else if o := readOwner(dir, kindContainer, id); o != nil {
		rec.SandboxID, rec.CgroupParent = o.SandboxID, o.CgroupParent
	}
	cg, err := r.cgroupManager(rec.CgroupParent)
	if err != nil {
		return err
	}
	if rec.SandboxID == "" {
		// Neither record nor owner file: the cgroup says which pod it is in.
		kids, _ := cg.Children()
		for _, k := range kids {
			if sid, ok := strings.CutPrefix(k, "pod-"); ok && validID(sid) == nil && cg.Exists(ctrCgroup(sid, id)) {
				rec.SandboxID = sid
			}
		}
	}
	var errs []error
	if rec.SandboxID != "" {
		if rec.CgroupRel == "" {
			rec.CgroupRel = ctrCgroup(rec.SandboxID, id)
		}
		if err := shim.KillCgroup(cg, rec.CgroupRel); err != nil {
			errs = append(errs, err)
		}
	}
	// The shim records the exit and ends once its workload is gone; one
	// that does not (it was never handed its workload) is killed.
	for _, pid := range r.shimsOf(id) {
		p, err := procid.Of(pid)
		if err != nil {
			continue
		}
		if err := p.WaitGone(ctx, 5*time.Second); err != nil {
			if err := p.Stop(unix.SIGKILL, 5*time.Second); err != nil {
				errs = append(errs, fmt.Errorf("shim %d: %w", pid, err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if rec.SandboxID != "" {
		if err := cg.Remove(rec.CgroupRel); err != nil {
			errs = append(errs, err)
		}
		if err := volume.New(r.cfg.StateRoot, r.cfg.RunRoot).CleanupSubPaths(rec.SandboxID, id); err != nil {
			errs = append(errs, err)
		}
		if rec.TerminationLog == "" {
			rec.TerminationLog = r.podFile(rec.SandboxID, termLogFile+"-"+id)
		}
		if err := os.Remove(rec.TerminationLog); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(rec.StateDir); err != nil {
		errs = append(errs, err)
	}
	// The exit its shim wrote just now goes beside the record.
	if err := os.Rename(record.ExitPath(r.cfg.RunRoot, id), filepath.Join(dir, exitFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	r.ctr.index.drop(id)
	return errors.Join(errs...)
}

// shimsOf lists the shim daemons of this run root supervising container
// id, by their arguments.
func (r *Runtime) shimsOf(id string) []int {
	return shimDaemons(r.cfg.RunRoot)[id]
}
