// Package record reads and writes the on-disk records the agent and its
// helpers share under the run root: a container's intent (written by the
// agent before anything is made, read by its shim), its start and its exit
// (written by the shim). Records are written once through a temporary file
// and a rename, so a reader sees a whole record or none.
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/rootfs"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/seccomp/filter"
)

// Files of a container's run directory, <run root>/containers/<id>/.
const (
	ContainerFile = "container.json" // the intent, by the agent
	StateFile     = "state.json"     // the start, by the shim
	SeccompFile   = "seccomp.json"   // the compiled filter, by the agent
	StopFile      = "stop.json"      // a stop the shim enforces, by the agent
)

// ContainersDir is where container run directories live.
func ContainersDir(runRoot string) string { return filepath.Join(runRoot, "containers") }

// ExitsDir is where shims write exit records, one file per container, so
// that the agent watches one directory for every exit.
func ExitsDir(runRoot string) string { return filepath.Join(runRoot, "container-exits") }

// ExitPath is the exit record of container id.
func ExitPath(runRoot, id string) string { return filepath.Join(ExitsDir(runRoot), id+".json") }

// Version is the version of every record this code writes. A reader takes
// only this version: a newer one is not guessed at, and an older one does
// not exist (records carry version 1 since the first release; start and
// exit records written by shims of that release carry none, which reads as
// 1).
const Version = 1

// CorruptError is a record that exists but cannot be used: empty, torn,
// not JSON, of another version, or naming another object. Callers set it
// aside rather than fail every listing over it.
type CorruptError struct {
	Path   string
	Reason string
}

func (e *CorruptError) Error() string { return e.Path + ": " + e.Reason }

// IsCorrupt reports whether err is (or wraps) a *CorruptError.
func IsCorrupt(err error) bool {
	var ce *CorruptError
	return errors.As(err, &ce)
}

// CheckVersion returns a *CorruptError for a record at path whose version
// is not Version; missing says a record without the field is of Version
// (start and exit records of the first shims).
func CheckVersion(path string, v int, missingOK bool) error {
	switch {
	case v == Version, v == 0 && missingOK:
		return nil
	case v == 0:
		return &CorruptError{Path: path, Reason: "no version"}
	case v > Version:
		return &CorruptError{Path: path, Reason: fmt.Sprintf("version %d is newer than this agent's (%d)", v, Version)}
	default:
		return &CorruptError{Path: path, Reason: fmt.Sprintf("unknown version %d", v)}
	}
}

// User is the identity a container process runs as.
type User struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
	Home   string   `json:"home,omitempty"`
}

// Process is what the container init applies before execve.
type Process struct {
	Args       []string `json:"args"`
	Env        []string `json:"env"`
	Cwd        string   `json:"cwd"`
	User       User     `json:"user"`
	Caps       []string `json:"caps"`
	NoNewPrivs bool     `json:"noNewPrivs"`
	// Seccomp is the compiled filter, carried inline only by records of
	// older agents: it is large, and this record is decoded on every
	// observation. Newer records say SeccompFile instead.
	Seccomp *filter.Program `json:"seccomp,omitempty"`
	// SeccompFile says the filter is in the run directory's SeccompFile:
	// the start fails when it cannot be read.
	SeccompFile bool `json:"seccompFile,omitempty"`
	// OOMScoreAdj is the workload's oom_score_adj; nil keeps the one
	// inherited from the shim.
	OOMScoreAdj *int `json:"oomScoreAdj,omitempty"`
}

// Container is the agent's record of one container: everything the shim
// needs to start it and everything a new agent needs to report it. It is
// written before anything is made and, once the shim has read it, never
// changes.
type Container struct {
	Version     int                     `json:"version"`
	ID          string                  `json:"id"`
	SandboxID   string                  `json:"sandboxID"`
	Pod         runtime.PodKey          `json:"pod"`
	Config      runtime.ContainerConfig `json:"config"`
	ImageID     string                  `json:"imageID,omitempty"`
	CreatedAt   time.Time               `json:"createdAt"`
	RunRoot     string                  `json:"runRoot"`
	Dir         string                  `json:"dir"`
	StateDir    string                  `json:"stateDir"`
	LogPath     string                  `json:"logPath"`
	LogMaxSize  int64                   `json:"logMaxSize,omitempty"`
	LogMaxFiles int                     `json:"logMaxFiles,omitempty"`
	// LogFollow: the log is the caller's (ContainerConfig.LogPath), who
	// rotates it; the shim follows the path and never rotates.
	LogFollow bool `json:"logFollow,omitempty"`

	CgroupParent string `json:"cgroupParent"`
	CgroupRel    string `json:"cgroupRel"`
	CgroupPath   string `json:"cgroupPath"`

	Pause      procid.ID                `json:"pause"`
	Namespaces runtime.NamespaceOptions `json:"namespaces"`
	Rootfs     rootfs.Spec              `json:"rootfs"`
	Process    Process                  `json:"process"`
	StopSignal string                   `json:"stopSignal,omitempty"`
	// TerminationLog is the host file bound at terminationMessagePath.
	TerminationLog string `json:"terminationLog,omitempty"`
	// MessageFromLogs: FallbackToLogsOnError (see runtime.ContainerConfig).
	MessageFromLogs bool `json:"messageFromLogs,omitempty"`
	// MountImages are the images of the image mounts (Mount.Image).
	MountImages []MountImage `json:"mountImages,omitempty"`
}

// MountImage is the image of Config.Mounts[Mount], resolved when the
// container was made: its ID holds it in use, its layers are mounted.
type MountImage struct {
	Mount  int      `json:"mount"`
	ID     string   `json:"id"`
	Layers []string `json:"layers"`
}

// MountImageIDs are the IDs of the images the container mounts.
func (c *Container) MountImageIDs() []string {
	var ids []string
	for _, m := range c.MountImages {
		ids = append(ids, m.ID)
	}
	return ids
}

// State is written by the shim once the workload runs.
type State struct {
	Version   int       `json:"version,omitempty"`
	Shim      procid.ID `json:"shim"`
	Init      procid.ID `json:"init"`
	StartedAt time.Time `json:"startedAt"`
	// OOMScoreAdj is the workload's oom_score_adj as the kernel took it;
	// OOMScoreNote says why it differs from the one asked for.
	OOMScoreAdj  int    `json:"oomScoreAdj"`
	OOMScoreNote string `json:"oomScoreNote,omitempty"`
	// Stops says the shim enforces stop requests (Stop): it takes one on
	// SIGUSR1 from the agent, which may then go away.
	Stops bool `json:"stops,omitempty"`
}

// Stop is a stop the agent asks the shim to carry out, in the container's
// StopFile, announced with SIGUSR1: Signal (none when 0) to the workload
// now, and every process of the container's cgroup killed at Deadline if
// it has not exited by then. The shim keeps the earliest deadline it was
// given, so a stop repeated by a restarted agent never extends the grace.
type Stop struct {
	Version  int       `json:"version"`
	Signal   int       `json:"signal,omitempty"`
	Deadline time.Time `json:"deadline"`
}

// ReadStop reads the container's stop request, nil when there is none.
func (c *Container) ReadStop() (*Stop, error) {
	st := &Stop{}
	path := filepath.Join(c.Dir, StopFile)
	if err := ReadJSON(path, st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	if err := CheckVersion(path, st.Version, false); err != nil {
		return nil, err
	}
	return st, nil
}

// Exit is written by the shim when the container exits (or by the agent
// when the shim was lost).
type Exit struct {
	Version     int            `json:"version,omitempty"`
	ContainerID string         `json:"containerID"`
	SandboxID   string         `json:"sandboxID"`
	Pod         runtime.PodKey `json:"pod"`
	ExitCode    int            `json:"exitCode"`
	Signal      string         `json:"signal,omitempty"`
	Reason      string         `json:"reason"`
	Message     string         `json:"message,omitempty"`
	StartedAt   time.Time      `json:"startedAt"`
	FinishedAt  time.Time      `json:"finishedAt"`
}

// ReadContainer reads the record in dir; a missing record is an error
// matching os.ErrNotExist, an unusable one a *CorruptError (it must be of
// this version and name the container of its directory).
func ReadContainer(dir string) (*Container, error) {
	c := &Container{}
	path := filepath.Join(dir, ContainerFile)
	if err := ReadJSON(path, c); err != nil {
		return nil, err
	}
	if err := CheckVersion(path, c.Version, false); err != nil {
		return nil, err
	}
	if c.ID != filepath.Base(dir) || c.SandboxID == "" {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("names container %q of sandbox %q", c.ID, c.SandboxID)}
	}
	return c, nil
}

// State reads the container's start record.
func (c *Container) State() (*State, error) {
	st := &State{}
	path := filepath.Join(c.Dir, StateFile)
	if err := ReadJSON(path, st); err != nil {
		return nil, err
	}
	if err := CheckVersion(path, st.Version, true); err != nil {
		return nil, err
	}
	return st, nil
}

// Exit reads the container's exit record.
func (c *Container) Exit() (*Exit, error) {
	ex := &Exit{}
	path := ExitPath(c.RunRoot, c.ID)
	if err := ReadJSON(path, ex); err != nil {
		return nil, err
	}
	if err := CheckVersion(path, ex.Version, true); err != nil {
		return nil, err
	}
	if ex.ContainerID != c.ID {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("names container %q", ex.ContainerID)}
	}
	return ex, nil
}

// Seccomp returns the container's compiled filter, nil for none. A record
// that names a filter file it cannot read is an error: the container must
// not start without its filter.
func (c *Container) Seccomp() (*filter.Program, error) {
	if !c.Process.SeccompFile {
		return c.Process.Seccomp, nil
	}
	p := &filter.Program{}
	if err := ReadJSON(filepath.Join(c.Dir, SeccompFile), p); err != nil {
		return nil, fmt.Errorf("seccomp filter of container %s: %w", c.ID, err)
	}
	if len(p.Instructions) == 0 {
		return nil, fmt.Errorf("seccomp filter of container %s: empty program", c.ID)
	}
	return p, nil
}

// PodPIDNamespace reports whether the container shares the pod's PID
// namespace (shareProcessNamespace), which makes it a child of the pause's.
func (c *Container) PodPIDNamespace() bool { return c.Namespaces.PID == runtime.NamespacePod }

// OwnPIDNamespace reports whether the container gets a PID namespace of
// its own (the default).
func (c *Container) OwnPIDNamespace() bool {
	return c.Namespaces.PID == runtime.NamespaceContainer || c.Namespaces.PID == ""
}

// WriteJSON writes v to path through a temporary file and a rename, so a
// reader sees the old record or the new one, never a torn one. There is no
// fsync: these records live under the run root, which a reboot wipes
// anyway, and a crashed process cannot lose a completed write.
func WriteJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := path + ".tmp." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadJSON decodes the record at path. A missing file is an
// os.ErrNotExist error without more context (callers say what was
// missing); an empty, torn or foreign one is a *CorruptError naming the
// file.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return &CorruptError{Path: path, Reason: "empty file"}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &CorruptError{Path: path, Reason: "not a JSON record: " + err.Error()}
	}
	return nil
}
