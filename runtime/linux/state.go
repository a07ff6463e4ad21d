package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
)

// Sandbox record phases. A record is written in phaseCreating before any
// kernel object exists (the intent), updated as objects are made, and
// switched to phaseReady at the end: a crash leaves a creating record that
// names everything GC has to undo.
const (
	phaseCreating = "creating"
	phaseReady    = "ready"
	// phaseSetAside is never written: it marks a record rebuilt in memory
	// from the names of one that was set aside (quarantine.go).
	phaseSetAside = "set-aside"
)

// sandboxRecord is the on-disk truth about one sandbox, at
// RunRoot/sandboxes/<id>/sandbox.json. The container half reads it through
// Runtime.sandboxRecord and may keep its own files in Dir.
type sandboxRecord struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	Phase   string `json:"phase"`
	// Creator identifies the process that is creating the sandbox, so GC
	// leaves a creation in flight in another process alone.
	Creator procid.ID `json:"creator"`

	Pod         runtime.PodKey           `json:"pod"`
	UID         string                   `json:"uid,omitempty"`
	Hostname    string                   `json:"hostname"`
	Labels      map[string]string        `json:"labels,omitempty"`
	Annotations map[string]string        `json:"annotations,omitempty"`
	Namespaces  runtime.NamespaceOptions `json:"namespaces"` // defaults resolved
	Config      runtime.SandboxConfig    `json:"config"`     // as requested

	Pause procid.ID `json:"pause"`

	// Network; empty for host-network sandboxes.
	NetNSName string `json:"netnsName,omitempty"`
	NetNSPath string `json:"netnsPath,omitempty"`
	VethHost  string `json:"vethHost,omitempty"`
	IP        string `json:"ip,omitempty"`
	PrefixLen int    `json:"prefixLen,omitempty"`
	Gateway   string `json:"gateway,omitempty"`

	// Cgroups: the parent pod cgroups go under, and this pod's cgroup path
	// below it (relative to the cgroup mount). The container half creates
	// and removes the cgroup itself.
	CgroupParent string `json:"cgroupParent,omitempty"`
	CgroupPath   string `json:"cgroupPath,omitempty"`

	// Dir is RunRoot/sandboxes/<id>: the record and per-sandbox files
	// (hosts, resolv.conf) live there and go with the sandbox.
	Dir       string    `json:"dir"`
	CreatedAt time.Time `json:"createdAt"`
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// validID refuses IDs that could escape a directory or a name length
// limit, before any path is built from them.
func validID(id string) error {
	if !idPattern.MatchString(id) || id == "." || id == ".." {
		return fmt.Errorf("sandbox ID %q: want 1-64 of [A-Za-z0-9_.-], starting alphanumeric: %w", id, runtime.ErrInvalidConfig)
	}
	return nil
}

func (r *Runtime) sandboxesDir() string { return filepath.Join(r.cfg.RunRoot, "sandboxes") }

func (r *Runtime) sandboxDir(id string) string { return filepath.Join(r.sandboxesDir(), id) }

func recordPath(dir string) string { return filepath.Join(dir, "sandbox.json") }

// sandboxRecord reads the record of sandbox id: ErrNotFound when there is
// none. A record that cannot be used (empty, torn, not JSON, of another
// version, naming another sandbox) is set aside (quarantine.go) and reads
// as not found too, so that one bad file never stops a listing: what it
// named is cleaned up from the kernel's objects and the reconciler makes
// the pod again.
func (r *Runtime) sandboxRecord(id string) (*sandboxRecord, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	rec, err := readSandboxRecord(r.sandboxDir(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("sandbox %s: %w", id, runtime.ErrNotFound)
	}
	if record.IsCorrupt(err) {
		r.setAside(kindSandbox, id, err)
		return nil, fmt.Errorf("sandbox %s: record set aside (%v): %w", id, err, runtime.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read sandbox %s record: %w", id, err)
	}
	return rec, nil
}

// readSandboxRecord reads and checks the record in dir: a missing record
// matches os.ErrNotExist, an unusable one is a *record.CorruptError.
func readSandboxRecord(dir string) (*sandboxRecord, error) {
	path := recordPath(dir)
	rec := &sandboxRecord{}
	if err := record.ReadJSON(path, rec); err != nil {
		return nil, err
	}
	if err := record.CheckVersion(path, rec.Version, false); err != nil {
		return nil, err
	}
	id := filepath.Base(dir)
	if rec.ID != id || rec.Pod.Name == "" {
		return nil, &record.CorruptError{Path: path, Reason: fmt.Sprintf("names sandbox %q of pod %q", rec.ID, rec.Pod)}
	}
	// Where the record was found is where the sandbox lives, whatever the
	// record says (a run root may be moved or bind-mounted elsewhere).
	rec.Dir = dir
	return rec, nil
}

// writeRecord replaces the record atomically. The run root is a tmpfs that
// a reboot wipes, so fsync would buy nothing: rename alone gives readers
// either the old or the new record.
func (r *Runtime) writeRecord(rec *sandboxRecord) error {
	return writeRecordIn(rec.Dir, rec)
}

func writeRecordIn(dir string, rec *sandboxRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("write sandbox %s record: %w", rec.ID, err)
	}
	path := recordPath(dir)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write sandbox %s record: %w", rec.ID, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write sandbox %s record: %w", rec.ID, err)
	}
	return nil
}

// Hidden entries of the sandboxes directory. Their names never pass
// validID, so listings skip them.
const (
	newDirPrefix  = ".new-" // .new-<id>-<pid>-<start>: a directory being published
	deadDirPrefix = ".del-" // .del-<id>-<random>: a removed directory being deleted
)

// publishRecord makes the sandbox directory appear with its intent record
// (and its owner file, quarantine.go) already inside: both are written into
// a hidden directory that is then renamed into place. A visible sandbox
// directory therefore always has a record, and the rename fails if the ID
// is taken, which keeps two processes creating the same ID apart.
func (r *Runtime) publishRecord(rec *sandboxRecord) error {
	tmp := filepath.Join(r.sandboxesDir(), fmt.Sprintf("%s%s-%d-%d", newDirPrefix, rec.ID, r.self.PID, r.self.Start))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("create sandbox %s: %w", rec.ID, err)
	}
	var err error
	if rec.VethHost != "" {
		// Our bridge's address; a caller-managed network has its own.
		err = r.lease(rec)
	}
	if err == nil {
		err = writeRecordIn(tmp, rec)
	}
	if err == nil {
		err = r.writeOwner(tmp, r.sandboxOwner(rec))
	}
	if errors.Is(err, errSimulatedCrash) {
		return err
	}
	if err == nil {
		err = r.claimOwner(rec)
	}
	if err == nil {
		if err = os.Rename(tmp, rec.Dir); errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			err = fmt.Errorf("create sandbox %s: being created or removed by another process: %w", rec.ID, runtime.ErrAlreadyExists)
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		r.releaseOwner(rec)
		if rec.IP != "" {
			if rerr := r.pool.Release(rec.ID); rerr != nil {
				err = fmt.Errorf("%w (release lease: %v)", err, rerr)
			}
		}
		return err
	}
	return nil
}

// publishing reports whether a directory of sandbox id is being published
// by a live process (this one included): its lease is in use.
func (r *Runtime) publishing(id string) bool {
	if _, ok := inflight.Load(r.sandboxDir(id)); ok {
		return true
	}
	ents, _ := filepath.Glob(filepath.Join(r.sandboxesDir(), newDirPrefix+id+"-*"))
	for _, e := range ents {
		if c, ok := creatorOf(filepath.Base(e)); ok && c.Alive() {
			return true
		}
	}
	return false
}

// creatorOf reads the creator from a .new-<id>-<pid>-<start> name.
func creatorOf(name string) (procid.ID, bool) {
	parts := strings.Split(strings.TrimPrefix(name, newDirPrefix), "-")
	if len(parts) < 3 {
		return procid.ID{}, false
	}
	var c procid.ID
	var err1, err2 error
	c.PID, err1 = strconv.Atoi(parts[len(parts)-2])
	c.Start, err2 = strconv.ParseUint(parts[len(parts)-1], 10, 64)
	return c, err1 == nil && err2 == nil
}

// retireDir removes a sandbox directory, record included. It is renamed
// out of sight first, so a crash midway never leaves a visible directory
// without its record; GC deletes what a crash leaves hidden.
func (r *Runtime) retireDir(rec *sandboxRecord) error {
	dead := filepath.Join(r.sandboxesDir(), deadDirPrefix+rec.ID+"-"+newSandboxID())
	if err := os.Rename(rec.Dir, dead); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove sandbox %s directory: %w", rec.ID, err)
	}
	return removeDir(dead)
}

// gcHiddenDirs deletes directories left by crashes: retired ones, and
// unpublished ones whose creator is gone (or, for this process, is no
// longer creating them).
func (r *Runtime) gcHiddenDirs() ([]string, error) {
	ents, err := os.ReadDir(r.sandboxesDir())
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, deadDirPrefix):
		case strings.HasPrefix(name, newDirPrefix):
			// In flight: publishing takes a lease, two writes and a
			// rename. This process's own are in flight while their
			// creation runs (a simulated crash ends it).
			creator, _ := creatorOf(name)
			id := strings.TrimPrefix(name, newDirPrefix)
			if i := strings.LastIndexByte(id, '-'); i > 0 {
				if i = strings.LastIndexByte(id[:i], '-'); i > 0 {
					id = id[:i]
				}
			}
			if creator == r.self {
				if _, ok := inflight.Load(r.sandboxDir(id)); ok {
					continue
				}
			} else if creator.Alive() {
				continue
			}
		default:
			continue
		}
		if err := removeDir(filepath.Join(r.sandboxesDir(), name)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "directory "+name)
	}
	return removed, errors.Join(errs...)
}

// recordIDs lists the IDs that have a sandbox directory.
func (r *Runtime) recordIDs() ([]string, error) {
	ents, err := os.ReadDir(r.sandboxesDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	ids := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.IsDir() && validID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// observe turns a record into the observed sandbox, judging the pause by
// PID and start time, and the network by its pin and its veth.
func (r *Runtime) observe(rec *sandboxRecord) *runtime.Sandbox {
	sb := &runtime.Sandbox{
		ID:          rec.ID,
		Pod:         rec.Pod,
		UID:         rec.UID,
		Hostname:    rec.Hostname,
		State:       runtime.SandboxReady,
		PausePID:    rec.Pause.PID,
		NetNSName:   rec.NetNSName,
		NetNSPath:   rec.NetNSPath,
		VethHost:    rec.VethHost,
		IP:          rec.IP,
		CgroupPath:  rec.CgroupPath,
		Namespaces:  rec.Namespaces,
		Ports:       rec.Config.Ports,
		Labels:      rec.Labels,
		Annotations: rec.Annotations,
		Owner:       rec.Config.Owner,
		CreatedAt:   rec.CreatedAt,
	}
	switch {
	case rec.Phase != phaseReady:
		sb.State, sb.Reason = runtime.SandboxNotReady, "creation did not finish"
	case !rec.Pause.Alive():
		sb.State, sb.Reason = runtime.SandboxNotReady, "pause process is gone"
	case rec.NetNSPath != "" && !pinned(rec.NetNSPath):
		sb.State, sb.Reason = runtime.SandboxNotReady, "network namespace is gone"
	case rec.VethHost != "":
		if why := r.vethProblem(rec.VethHost); why != "" {
			sb.State, sb.Reason = runtime.SandboxNotReady, why
		}
	}
	return sb
}

// sysClassNet is where sysfs lists the agent's network interfaces.
const sysClassNet = "/sys/class/net"

// vethProblem says why a sandbox's host veth cannot carry its traffic, ""
// when it can: the veth was deleted, or it is no longer a port of the
// bridge (a bridge deleted and made again has none of the old ports). The
// pod is then not ready and the reconciler makes it again. It costs one
// readlink in sysfs, no netlink request; an answer sysfs cannot give is no
// verdict.
func (r *Runtime) vethProblem(veth string) string {
	master, err := os.Readlink(filepath.Join(sysClassNet, veth, "master"))
	switch {
	case err == nil:
		if b := filepath.Base(master); b != r.cfg.Bridge {
			return fmt.Sprintf("veth %s is a port of %s, not of the bridge %s", veth, b, r.cfg.Bridge)
		}
		return ""
	case !errors.Is(err, os.ErrNotExist):
		return ""
	}
	if _, err := os.Lstat(filepath.Join(sysClassNet, veth)); errors.Is(err, os.ErrNotExist) {
		return fmt.Sprintf("veth %s is gone", veth)
	}
	return fmt.Sprintf("veth %s is not attached to the bridge %s", veth, r.cfg.Bridge)
}

// pinned reports whether a netns path is still a mounted namespace.
func pinned(path string) bool {
	var st, parent os.FileInfo
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	parent, err = os.Stat(filepath.Dir(path))
	if err != nil {
		return false
	}
	// A pin is an nsfs mount: its device differs from the directory's.
	return !os.SameFile(st, parent) && deviceOf(st) != deviceOf(parent)
}
