// Package record reads and writes the on-disk records the agent and its
// helpers share under the run root: a container's intent (written by the
// agent before anything is made, read by its shim), its start and its exit
// (written by the shim). Records are written once through a temporary file
// and a rename, so a reader sees a whole record or none.
package record

import (
	"encoding/json"
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
)

// ContainersDir is where container run directories live.
func ContainersDir(runRoot string) string { return filepath.Join(runRoot, "containers") }

// ExitsDir is where shims write exit records, one file per container, so
// that the agent watches one directory for every exit.
func ExitsDir(runRoot string) string { return filepath.Join(runRoot, "container-exits") }

// ExitPath is the exit record of container id.
func ExitPath(runRoot, id string) string { return filepath.Join(ExitsDir(runRoot), id+".json") }

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
}

// State is written by the shim once the workload runs.
type State struct {
	Shim      procid.ID `json:"shim"`
	Init      procid.ID `json:"init"`
	StartedAt time.Time `json:"startedAt"`
	// OOMScoreAdj is the workload's oom_score_adj as the kernel took it;
	// OOMScoreNote says why it differs from the one asked for.
	OOMScoreAdj  int    `json:"oomScoreAdj"`
	OOMScoreNote string `json:"oomScoreNote,omitempty"`
}

// Exit is written by the shim when the container exits (or by the agent
// when the shim was lost).
type Exit struct {
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
// matching os.ErrNotExist.
func ReadContainer(dir string) (*Container, error) {
	c := &Container{}
	if err := ReadJSON(filepath.Join(dir, ContainerFile), c); err != nil {
		return nil, err
	}
	return c, nil
}

// State reads the container's start record.
func (c *Container) State() (*State, error) {
	st := &State{}
	if err := ReadJSON(filepath.Join(c.Dir, StateFile), st); err != nil {
		return nil, err
	}
	return st, nil
}

// Exit reads the container's exit record.
func (c *Container) Exit() (*Exit, error) {
	ex := &Exit{}
	if err := ReadJSON(ExitPath(c.RunRoot, c.ID), ex); err != nil {
		return nil, err
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
// missing); a torn or foreign one says which file.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}
