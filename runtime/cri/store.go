package cri

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// The store keeps what the CRI has and the runtime has not: CRI metadata
// (attempt, log directory, the config as kubelet sent it), containers
// created but not started, and the last state of containers whose sandbox
// was stopped (the runtime removed them with it). One JSON file per
// object, written atomically, under a directory of the run root: it lives
// as long as the runtime's own records and survives the CRI server.
//
//	<dir>/sandboxes/<id>.json
//	<dir>/containers/<id>.json
type store struct {
	dir string
}

// recordVersion is the format of the records; a newer one is not read.
const recordVersion = 1

// Sandbox states of a record.
const (
	sandboxCreating = "creating" // intent recorded; the runtime may hold a half-made sandbox
	sandboxReady    = "ready"    // the runtime holds it
	sandboxStopped  = "stopped"  // StopPodSandbox removed it from the runtime; the record stays until RemovePodSandbox
)

type sandboxRecord struct {
	Version   int             `json:"version"`
	ID        string          `json:"id"`
	State     string          `json:"state"`
	CreatedAt time.Time       `json:"createdAt"`
	Handler   string          `json:"runtimeHandler,omitempty"`
	Config    json.RawMessage `json:"config"` // protojson PodSandboxConfig
	// IP is the pod's address from the runtime's bridge.
	IP string `json:"ip,omitempty"`
	// Network is set when Options.Network makes the pod network: written
	// before the network is made, so a crash leaves what to tear down.
	Network *NetworkResult `json:"network,omitempty"`

	config *runtimeapi.PodSandboxConfig
}

type containerRecord struct {
	Version   int             `json:"version"`
	ID        string          `json:"id"`
	SandboxID string          `json:"sandboxID"`
	CreatedAt time.Time       `json:"createdAt"`
	Config    json.RawMessage `json:"config"` // protojson ContainerConfig
	// Image is the reference the runtime is given; ImageID the image's ID
	// when the container was created.
	Image   string `json:"image"`
	ImageID string `json:"imageID"`
	LogPath string `json:"logPath,omitempty"` // absolute
	// Spec is the runtime config StartContainer hands over, translated
	// (and so validated) at creation.
	Spec *runtime.ContainerConfig `json:"spec"`
	// Started is set once the runtime started the container: from then on
	// the runtime's record is the truth, and a missing one means it is gone.
	Started bool `json:"started,omitempty"`
	// Resources are the limits as last set (create, then updates).
	Resources runtime.Resources `json:"resources"`
	// Final is the container's last observed state, kept when its sandbox
	// was stopped and the runtime forgot it.
	Final *runtime.Container `json:"final,omitempty"`

	config *runtimeapi.ContainerConfig
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (s *store) sandboxPath(id string) string {
	return filepath.Join(s.dir, "sandboxes", id+".json")
}

func (s *store) containerPath(id string) string {
	return filepath.Join(s.dir, "containers", id+".json")
}

func (s *store) init() error {
	for _, d := range []string{"sandboxes", "containers"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o700); err != nil {
			return fmt.Errorf("cri store: %w", err)
		}
	}
	return nil
}

func (s *store) putSandbox(r *sandboxRecord) error {
	b, err := protojson.Marshal(r.config)
	if err != nil {
		return fmt.Errorf("sandbox %s: encode config: %w", r.ID, err)
	}
	r.Version, r.Config = recordVersion, b
	return writeJSONAtomic(s.sandboxPath(r.ID), r)
}

func (s *store) putContainer(r *containerRecord) error {
	b, err := protojson.Marshal(r.config)
	if err != nil {
		return fmt.Errorf("container %s: encode config: %w", r.ID, err)
	}
	r.Version, r.Config = recordVersion, b
	return writeJSONAtomic(s.containerPath(r.ID), r)
}

// sandbox reads one sandbox record; a missing one is runtime.ErrNotFound.
func (s *store) sandbox(id string) (*sandboxRecord, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("pod sandbox %q: %w", id, runtime.ErrNotFound)
	}
	r := &sandboxRecord{}
	if err := readRecord(s.sandboxPath(id), r, &r.Version); err != nil {
		return nil, fmt.Errorf("pod sandbox %s: %w", id, err)
	}
	r.config = &runtimeapi.PodSandboxConfig{}
	if err := protojson.Unmarshal(r.Config, r.config); err != nil {
		return nil, fmt.Errorf("pod sandbox %s: decode config: %w", id, err)
	}
	return r, nil
}

func (s *store) container(id string) (*containerRecord, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("container %q: %w", id, runtime.ErrNotFound)
	}
	r := &containerRecord{}
	if err := readRecord(s.containerPath(id), r, &r.Version); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	r.config = &runtimeapi.ContainerConfig{}
	if err := protojson.Unmarshal(r.Config, r.config); err != nil {
		return nil, fmt.Errorf("container %s: decode config: %w", id, err)
	}
	return r, nil
}

func readRecord(path string, v any, version *int) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return runtime.ErrNotFound
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	if *version != recordVersion {
		return fmt.Errorf("%s: record version %d, this server reads %d", path, *version, recordVersion)
	}
	return nil
}

// ids lists the IDs of one kind ("sandboxes" or "containers").
func (s *store) ids(kind string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, kind))
	if err != nil {
		return nil, fmt.Errorf("cri store: %w", err)
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && idPattern.MatchString(id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// sandboxes reads every sandbox record; unreadable ones are skipped and
// returned as errors for the caller to log.
func (s *store) sandboxes() ([]*sandboxRecord, []error) { return readAll(s, "sandboxes", s.sandbox) }

func (s *store) containers() ([]*containerRecord, []error) {
	return readAll(s, "containers", s.container)
}

func readAll[T any](s *store, kind string, read func(string) (*T, error)) ([]*T, []error) {
	ids, err := s.ids(kind)
	if err != nil {
		return nil, []error{err}
	}
	var out []*T
	var errs []error
	for _, id := range ids {
		r, err := read(id)
		if errors.Is(err, runtime.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	return out, errs
}

func (s *store) deleteSandbox(id string) error {
	if err := os.Remove(s.sandboxPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pod sandbox %s: %w", id, err)
	}
	return nil
}

func (s *store) deleteContainer(id string) error {
	if err := os.Remove(s.containerPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}

// resolve turns a unique prefix of an ID (crictl shows 13 characters) into
// the ID, among the IDs of kind.
func (s *store) resolve(kind, idOrPrefix string) (string, error) {
	if idPattern.MatchString(idOrPrefix) {
		return idOrPrefix, nil
	}
	what := map[string]string{"sandboxes": "pod sandbox", "containers": "container"}[kind]
	if idOrPrefix == "" {
		return "", fmt.Errorf("%s ID is empty: %w", what, runtime.ErrInvalidConfig)
	}
	ids, err := s.ids(kind)
	if err != nil {
		return "", err
	}
	found := ""
	for _, id := range ids {
		if strings.HasPrefix(id, idOrPrefix) {
			if found != "" {
				return "", fmt.Errorf("%s ID prefix %q is ambiguous: %w", what, idOrPrefix, runtime.ErrInvalidConfig)
			}
			found = id
		}
	}
	if found == "" {
		return "", fmt.Errorf("%s %q: %w", what, idOrPrefix, runtime.ErrNotFound)
	}
	return found, nil
}

// writeJSONAtomic writes v to path through a temporary file and a rename,
// so a reader sees the old record or the new one, never a torn one. There
// is no fsync: the records live under the run root, which a reboot wipes
// with the sandboxes they describe, and a crashed process cannot lose a
// completed write.
func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := writeFileAtomic(path, b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// locks serialise the CRI's operations on one object ID; different IDs
// proceed in parallel.
type locks struct {
	mu sync.Mutex
	m  map[string]*lockEntry
}

type lockEntry struct {
	mu   sync.Mutex
	refs int
}

func (l *locks) lock(id string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*lockEntry{}
	}
	e := l.m[id]
	if e == nil {
		e = &lockEntry{}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		l.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// cloneProto copies a CRI message (records keep their own copies).
func cloneProto[T proto.Message](m T) T { return proto.Clone(m).(T) }

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// readLimited reads at most n bytes of path and fails when it holds more.
func readLimited(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > n {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, n)
	}
	return b, nil
}

func digestHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
