// Package runtime is the contract between the reconciler and a container
// runtime: the Runtime and ImageService interfaces, the configurations they
// take, the observed types they report and the error kinds they return.
//
// It makes no system calls and does not import spec: the reconciler
// translates Pod manifests into these types. runtime/linux implements the
// contract on a real kernel, runtime/fake in memory; both must pass the
// conformance suite in runtime/runtimetest.
//
// Every method is idempotent: creating what exists (same ID) returns it,
// removing or stopping what is gone succeeds. That is what makes crash
// recovery boring.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
)

// Error kinds. Implementations wrap them with %w and context (object, operation);
// callers test with errors.Is.
var (
	// ErrNotFound: the sandbox, container or image does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a different object already holds the name or ID.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidConfig: the configuration can never work; retrying will not help.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrConflict: a host resource (a hostPort, say) is held by another sandbox;
	// retrying after that sandbox goes may succeed.
	ErrConflict = errors.New("conflict")
)

// Annotation keys the reconciler stores on sandboxes and containers. Runtimes
// store annotations verbatim and report them back.
const (
	AnnotationSandboxHash   = "pelagos.io/sandbox-hash"
	AnnotationContainerHash = "pelagos.io/container-hash"
	AnnotationSourceFile    = "pelagos.io/source-file"
)

// PodKey names a pod on the node.
type PodKey struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (k PodKey) String() string { return k.Namespace + "/" + k.Name }

// NamespaceMode says who shares a namespace.
type NamespaceMode string

const (
	// NamespacePod: one namespace for the pod, held by the pause process.
	NamespacePod NamespaceMode = "Pod"
	// NamespaceContainer: each container gets its own (PID only).
	NamespaceContainer NamespaceMode = "Container"
	// NamespaceNode: the host's namespace (hostNetwork, hostIPC, hostPID).
	NamespaceNode NamespaceMode = "Node"
)

// NamespaceOptions picks the namespace mode per kind. Zero values mean the
// defaults: Network Pod, IPC Pod, PID Container.
type NamespaceOptions struct {
	Network NamespaceMode `json:"network,omitempty"`
	IPC     NamespaceMode `json:"ipc,omitempty"`
	PID     NamespaceMode `json:"pid,omitempty"`
}

// DNSConfig is what goes into the pod's resolv.conf. When UseHost is set the
// runtime starts from the host's resolver configuration (replacing loopback
// resolvers such as systemd-resolved's stub by their upstreams) and merges
// Servers, Searches and Options into it; otherwise only these are used.
type DNSConfig struct {
	UseHost  bool     `json:"useHost,omitempty"`
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// HostAlias is one extra /etc/hosts line.
type HostAlias struct {
	IP        string   `json:"ip"`
	Hostnames []string `json:"hostnames"`
}

// Protocol of a port mapping.
type Protocol string

const (
	ProtocolTCP  Protocol = "TCP"
	ProtocolUDP  Protocol = "UDP"
	ProtocolSCTP Protocol = "SCTP"
)

// PortMapping publishes a container port on the host.
type PortMapping struct {
	Protocol      Protocol `json:"protocol"`
	ContainerPort int32    `json:"containerPort"`
	HostPort      int32    `json:"hostPort"`
	HostIP        string   `json:"hostIP,omitempty"`
}

// VolumeConfig is a pod volume the runtime materialises on the host when the
// sandbox is created and removes with it (a Persistent volume excepted).
// Exactly one source is set.
type VolumeConfig struct {
	Name       string            `json:"name"`
	EmptyDir   *EmptyDirVolume   `json:"emptyDir,omitempty"`
	HostPath   *HostPathVolume   `json:"hostPath,omitempty"`
	Files      *ProjectedVolume  `json:"files,omitempty"`
	Persistent *PersistentVolume `json:"persistent,omitempty"`
}

// PersistentVolume is a node-local named volume (a persistentVolumeClaim):
// a directory of the runtime's own, named by Namespace and Name, made on
// first use and kept when the sandbox goes, so the next sandbox that names
// it finds the same files. Only an explicit removal deletes it, and never
// while a sandbox uses it.
type PersistentVolume struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Size is the capacity in bytes (0: none). A runtime enforces it as a
	// quota where the filesystem allows and reports it as advisory where
	// it does not; a later sandbox with another size changes the quota.
	Size int64 `json:"size,omitempty"`
}

// EmptyDirVolume lives under the state root, or on a tmpfs for Medium "Memory".
type EmptyDirVolume struct {
	Medium string `json:"medium,omitempty"`
	// SizeLimit in bytes, 0 = none: the tmpfs size for Memory; on disk a
	// quota where the filesystem allows, else advisory.
	SizeLimit int64 `json:"sizeLimit,omitempty"`
}

// HostPathVolume is a path on the host with a Kubernetes hostPath type check.
type HostPathVolume struct {
	Path string `json:"path"`
	Type string `json:"type,omitempty"`
}

// ProjectedVolume holds files resolved by the caller (from ConfigMaps and
// Secrets). The runtime writes them atomically (the ..data symlink swap) and
// on a tmpfs when Sensitive is set. Data of sensitive volumes must never be
// logged or reported.
type ProjectedVolume struct {
	Files     []ProjectedFile `json:"-"`
	Sensitive bool            `json:"sensitive,omitempty"`
	// FSGroup, when set (the pod's securityContext.fsGroup), owns the files
	// and may read them, as the kubelet does, so a non-root container can
	// read a 0600 Secret.
	FSGroup *int64 `json:"fsGroup,omitempty"`
}

// ProjectedFile is one file of a projected volume.
type ProjectedFile struct {
	Path string // relative, clean, no ".."
	Data []byte
	Mode uint32 // permission bits
}

// SandboxConfig describes a pod sandbox.
type SandboxConfig struct {
	// ID is optional: when empty the runtime generates one. Creating a
	// sandbox with an existing ID returns the existing sandbox.
	ID          string            `json:"id,omitempty"`
	Pod         PodKey            `json:"pod"`
	UID         string            `json:"uid,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	Subdomain   string            `json:"subdomain,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Namespaces  NamespaceOptions  `json:"namespaces"`
	DNS         DNSConfig         `json:"dns"`
	HostAliases []HostAlias       `json:"hostAliases,omitempty"`
	Ports       []PortMapping     `json:"ports,omitempty"`
	Sysctls     map[string]string `json:"sysctls,omitempty"`
	Volumes     []VolumeConfig    `json:"volumes,omitempty"`
	// CgroupParent overrides the runtime's configured parent when set.
	CgroupParent string `json:"cgroupParent,omitempty"`
	// Owner names the front end that made the sandbox: "" the reconciler
	// (manifests), OwnerCRI the CRI server. Each sees only its own; no
	// manifest can set it.
	Owner string `json:"owner,omitempty"`
	// ExternalNetwork hands the pod network to the caller (the CRI with a
	// CNI plugin chain): the runtime makes and pins the pod's network
	// namespace with its loopback up, and adds no interface, address or
	// published port (Ports must be empty). Network mode Pod only.
	ExternalNetwork bool `json:"externalNetwork,omitempty"`
	// Resources are the pod's own limits (Kubernetes' pod-level
	// spec.resources, or the CRI's pod resources): written to the pod
	// cgroup before any container starts, so the containers share them.
	// PidsLimit is not taken here (the runtime's per-pod pids limit
	// applies). A limit that cannot be written fails the creation.
	Resources Resources `json:"resources,omitzero"`
}

// SandboxState is the observed state of a sandbox.
type SandboxState string

const (
	SandboxReady    SandboxState = "ready"
	SandboxNotReady SandboxState = "notready"
)

// Sandbox is an observed pod sandbox.
type Sandbox struct {
	ID          string            `json:"id"`
	Pod         PodKey            `json:"pod"`
	UID         string            `json:"uid,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	State       SandboxState      `json:"state"`
	Reason      string            `json:"reason,omitempty"` // why not ready
	PausePID    int               `json:"pausePID"`
	NetNSName   string            `json:"netnsName,omitempty"`
	NetNSPath   string            `json:"netnsPath,omitempty"`
	VethHost    string            `json:"vethHost,omitempty"`
	IP          string            `json:"ip,omitempty"`
	CgroupPath  string            `json:"cgroupPath,omitempty"`
	Namespaces  NamespaceOptions  `json:"namespaces"`
	Ports       []PortMapping     `json:"ports,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner,omitempty"` // as created (SandboxConfig.Owner)
	CreatedAt   time.Time         `json:"createdAt"`
}

// OwnerCRI is SandboxConfig.Owner of the CRI server's sandboxes.
const OwnerCRI = "cri"

// Hash returns the sandbox config hash the reconciler stored, or "".
func (s *Sandbox) Hash() string { return s.Annotations[AnnotationSandboxHash] }

// EnvVar is one environment variable.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Mount mounts a pod volume (by name) into a container, or, with
// HostPath, a host path the caller prepared (the CRI: kubelet hands every
// volume over as a host path), or, with Image, the content of an image
// (an image volume, KEP-4639). Exactly one of Volume, HostPath and Image
// is set; SubPath goes with Volume and Image.
type Mount struct {
	Volume        string `json:"volume"`
	HostPath      string `json:"hostPath,omitempty"`
	ContainerPath string `json:"containerPath"`
	SubPath       string `json:"subPath,omitempty"`
	ReadOnly      bool   `json:"readOnly,omitempty"`
	// Image is an image of the store (a reference or an ID) the caller
	// made sure of first, as for ContainerConfig.Image (ErrNotFound when
	// it is absent). Its unpacked layers are mounted read-only, nosuid
	// and nodev whatever ReadOnly says, and SubPath is resolved inside
	// its tree, never out of it. The image is in use (not removable)
	// while the container exists: Container.MountImageIDs.
	Image string `json:"image,omitempty"`
}

// Validate refuses a mount with no source or several, a container path
// that is not absolute, and a SubPath on a host path or that is absolute
// or climbs with "..".
func (m Mount) Validate() error {
	n := 0
	for _, s := range []string{m.Volume, m.HostPath, m.Image} {
		if s != "" {
			n++
		}
	}
	switch {
	case n != 1:
		return fmt.Errorf("mount at %q: exactly one of volume, hostPath and image must be set, found %d: %w", m.ContainerPath, n, ErrInvalidConfig)
	case !path.IsAbs(m.ContainerPath):
		return fmt.Errorf("mount at %q: containerPath not absolute: %w", m.ContainerPath, ErrInvalidConfig)
	case m.SubPath == "":
		return nil
	case m.HostPath != "":
		return fmt.Errorf("mount at %q: subPath %q on a host path: %w", m.ContainerPath, m.SubPath, ErrInvalidConfig)
	case path.IsAbs(m.SubPath) || slices.Contains(strings.Split(m.SubPath, "/"), ".."):
		return fmt.Errorf("mount at %q: subPath %q must be relative, without \"..\": %w", m.ContainerPath, m.SubPath, ErrInvalidConfig)
	}
	return nil
}

// SeccompProfile selects the seccomp filter. The zero value is RuntimeDefault.
type SeccompProfile struct {
	Type             string `json:"type,omitempty"` // "" | RuntimeDefault | Unconfined | Localhost
	LocalhostProfile string `json:"localhostProfile,omitempty"`
}

// SecurityConfig is the container's security context. Zero values are the
// secure defaults: default capability set, no_new_privs, RuntimeDefault seccomp.
type SecurityConfig struct {
	Privileged               bool     `json:"privileged,omitempty"`
	CapAdd                   []string `json:"capAdd,omitempty"`
	CapDrop                  []string `json:"capDrop,omitempty"`
	AllowPrivilegeEscalation bool     `json:"allowPrivilegeEscalation,omitempty"`
	ReadOnlyRootfs           bool     `json:"readOnlyRootfs,omitempty"`
	RunAsUser                *int64   `json:"runAsUser,omitempty"`
	RunAsGroup               *int64   `json:"runAsGroup,omitempty"`
	RunAsNonRoot             bool     `json:"runAsNonRoot,omitempty"`
	// RunAsUserName is a user of the image's /etc/passwd to run as in
	// place of the image's USER (the CRI's run_as_username); RunAsUser
	// wins over it.
	RunAsUserName      string         `json:"runAsUserName,omitempty"`
	SupplementalGroups []int64        `json:"supplementalGroups,omitempty"`
	Seccomp            SeccompProfile `json:"seccomp"`

	// SupplementalGroupsPolicy "Strict" gives the process only its primary
	// group and SupplementalGroups; "" (Merge) adds the groups the image's
	// /etc/group gives its user, as containerd does.
	SupplementalGroupsPolicy string `json:"supplementalGroupsPolicy,omitempty"`
}

// Resources are the container's cgroup limits. Zero means unset.
type Resources struct {
	CPURequestMilli int64 `json:"cpuRequestMilli,omitempty"`
	CPULimitMilli   int64 `json:"cpuLimitMilli,omitempty"`
	MemoryRequest   int64 `json:"memoryRequest,omitempty"`
	MemoryLimit     int64 `json:"memoryLimit,omitempty"`
	PidsLimit       int64 `json:"pidsLimit,omitempty"` // 0: the runtime's default
}

// Validate refuses negative values: a limit that wrapped on its way here
// must fail the sandbox or container, never run it without a limit.
func (r Resources) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"CPU request", r.CPURequestMilli}, {"CPU limit", r.CPULimitMilli}, {"memory request", r.MemoryRequest},
		{"memory limit", r.MemoryLimit}, {"pids limit", r.PidsLimit}} {
		if f.v < 0 {
			return fmt.Errorf("%s %d is negative: %w", f.name, f.v, ErrInvalidConfig)
		}
	}
	return nil
}

// ContainerConfig describes a container to run in a sandbox.
type ContainerConfig struct {
	// ID is optional: when empty the runtime generates one. Starting a
	// container with an existing ID returns the existing container.
	ID        string `json:"id,omitempty"`
	SandboxID string `json:"sandboxID"`
	Name      string `json:"name"`
	Attempt   int    `json:"attempt"`
	Image     string `json:"image"`
	// Command and Args follow Kubernetes: Command replaces the image's
	// Entrypoint, Args its Cmd. $(VAR) references are expanded by the caller.
	Command    []string `json:"command,omitempty"`
	Args       []string `json:"args,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	// Env is appended after the image's environment (later entries win).
	Env         []EnvVar          `json:"env,omitempty"`
	Mounts      []Mount           `json:"mounts,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Security    SecurityConfig    `json:"security"`
	Resources   Resources         `json:"resources"`
	TTY         bool              `json:"tty,omitempty"`
	Stdin       bool              `json:"stdin,omitempty"`
	// StdinOnce closes the container's stdin after the first attach ends
	// (Kubernetes stdinOnce).
	StdinOnce bool `json:"stdinOnce,omitempty"`
	// OOMScoreAdj is the workload's oom_score_adj (the reconciler derives it
	// from the pod's QoS class as kubelet does); nil leaves the runtime's
	// default. A value the kernel refuses to lower to is clamped to the
	// lowest allowed, never an error.
	OOMScoreAdj            *int   `json:"oomScoreAdj,omitempty"`
	TerminationMessagePath string `json:"terminationMessagePath,omitempty"`
	// TerminationMessageFromLogs is Kubernetes' FallbackToLogsOnError: when
	// the container fails and its message file is empty, the tail of its
	// log (80 lines, 2 KiB at most) becomes the message.
	TerminationMessageFromLogs bool `json:"terminationMessageFromLogs,omitempty"`
	// LogPath, when set (an absolute path: the CRI's log_directory joined
	// with log_path), is where the runtime writes the container's CRI-format
	// log instead of its own place; the caller owns the file and removes
	// it. The writer follows the path: when the file there is renamed away
	// and a new one is put in its place (kubelet's rotation, then
	// ReopenContainerLog), the output goes on in the new file, and the
	// runtime never rotates such a log itself.
	LogPath string `json:"logPath,omitempty"`
}

// ContainerState is the observed state of a container.
type ContainerState string

const (
	ContainerCreated ContainerState = "created"
	ContainerRunning ContainerState = "running"
	ContainerExited  ContainerState = "exited"
	ContainerUnknown ContainerState = "unknown"
)

// Exit reasons, as Kubernetes reports them.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
)

// Container is an observed container.
type Container struct {
	ID          string            `json:"id"`
	SandboxID   string            `json:"sandboxID"`
	Pod         PodKey            `json:"pod"`
	Name        string            `json:"name"`
	Attempt     int               `json:"attempt"`
	Image       string            `json:"image"`
	ImageID     string            `json:"imageID,omitempty"`
	State       ContainerState    `json:"state"`
	PID         int               `json:"pid,omitempty"`
	ExitCode    int               `json:"exitCode"`
	Signal      string            `json:"signal,omitempty"` // set when killed by a signal
	Reason      string            `json:"reason,omitempty"`
	Message     string            `json:"message,omitempty"` // termination message
	CreatedAt   time.Time         `json:"createdAt"`
	StartedAt   time.Time         `json:"startedAt,omitzero"`
	FinishedAt  time.Time         `json:"finishedAt,omitzero"`
	LogPath     string            `json:"logPath,omitempty"`
	CgroupPath  string            `json:"cgroupPath,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// MountImageIDs are the IDs of the images mounted by Mount.Image, in
	// mount order: they are in use as ImageID is.
	MountImageIDs []string `json:"mountImageIDs,omitempty"`
}

// Hash returns the container config hash the reconciler stored, or "".
func (c *Container) Hash() string { return c.Annotations[AnnotationContainerHash] }

// UsesImage reports whether the container holds the image id: its own
// image or one it mounts.
func (c *Container) UsesImage(id string) bool {
	return c.ImageID == id || slices.Contains(c.MountImageIDs, id)
}

// ContainerFilter narrows ListContainers; zero fields match everything.
type ContainerFilter struct {
	SandboxID string
}

// TermSize is a terminal window size in character cells.
type TermSize struct {
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// ExecOptions runs a process inside a running container.
type ExecOptions struct {
	Cmd   []string
	Env   []EnvVar
	TTY   bool
	Stdin io.Reader
	// Stdout receives the process's output; with TTY it receives the
	// terminal's output and Stderr is unused. All of it is copied: a
	// caller that needs a bound (probes, hooks) passes a writer that keeps
	// what it wants and discards the rest without failing, since a failing
	// writer ends the copy and the process then meets a broken pipe.
	Stdout io.Writer
	Stderr io.Writer
	// Resize, with TTY, delivers window size changes; the first value is
	// the initial size. Nil keeps the default size.
	Resize  <-chan TermSize
	Timeout time.Duration // 0: until ctx ends
}

// AttachOptions connects a client to the stdio of a running container's
// main process (kubectl attach, CRI Attach, a tty: true container).
type AttachOptions struct {
	Stdin  io.Reader // nil: no input
	Stdout io.Writer
	Stderr io.Writer // unused with TTY
	TTY    bool
	Resize <-chan TermSize
}

// Attacher is an optional Runtime ability: attach to a running container.
// It returns when the client's streams end or the container exits.
type Attacher interface {
	Attach(ctx context.Context, id string, opts AttachOptions) error
}

// PortForwarder is an optional Runtime ability: connect stream to a TCP
// port inside the sandbox's network namespace (kubectl port-forward, CRI
// PortForward). It returns when either side closes, and closes stream
// before returning (also when the port cannot be reached).
type PortForwarder interface {
	PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error
}

// RecordProblem is a state record the runtime could not use (unparsable,
// an unknown future version, inconsistent) and set aside instead of
// failing every listing: it was renamed to Path, and what the record named
// is cleaned up from the live kernel objects by GC.
type RecordProblem struct {
	Kind   string    `json:"kind"` // "sandbox" or "container"
	ID     string    `json:"id"`
	Pod    *PodKey   `json:"pod,omitempty"` // when still known
	Path   string    `json:"path"`          // where the record was moved
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// ProblemReporter is an optional Runtime ability: the records set aside
// since the last call, so the reconciler can report them (events, status).
type ProblemReporter interface {
	TakeProblems() []RecordProblem
}

// GCReport lists what a GC pass removed, one human-readable line per object.
type GCReport struct {
	Removed []string `json:"removed"`
}

// Runtime manages pod sandboxes and their containers.
type Runtime interface {
	// CreateSandbox creates the sandbox and returns it once it is ready.
	CreateSandbox(ctx context.Context, cfg *SandboxConfig) (*Sandbox, error)
	// RemoveSandbox stops and removes the sandbox's containers, then the
	// sandbox and everything it made (netns, veth, lease, cgroups, rules,
	// volumes). Removing a missing sandbox succeeds.
	RemoveSandbox(ctx context.Context, id string) error
	GetSandbox(ctx context.Context, id string) (*Sandbox, error)
	ListSandboxes(ctx context.Context) ([]*Sandbox, error)

	// StartContainer creates and starts a container and returns it running
	// (or exited, if it exited at once).
	StartContainer(ctx context.Context, cfg *ContainerConfig) (*Container, error)
	// StopContainer sends the stop signal, waits up to grace, then kills every
	// process of the container. Stopping an exited container succeeds.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	// RemoveContainer removes a stopped container (killing it if needed) and
	// its rootfs; its log file is kept until its sandbox goes.
	RemoveContainer(ctx context.Context, id string) error
	GetContainer(ctx context.Context, id string) (*Container, error)
	ListContainers(ctx context.Context, filter ContainerFilter) ([]*Container, error)
	// Exec runs a process in a running container and returns its exit code.
	Exec(ctx context.Context, id string, opts ExecOptions) (int, error)

	// GC removes what a crash left behind: half-made sandboxes and
	// containers, orphaned kernel objects with this runtime's names, leases
	// without sandboxes. It never touches another runtime's objects.
	GC(ctx context.Context) (*GCReport, error)
}

// ExitEvent reports that a container exited.
type ExitEvent struct {
	ContainerID string
	SandboxID   string
	Pod         PodKey
}

// ExitWatcher is an optional Runtime ability: a stream of container exits, so
// the reconciler need not poll. The channel closes when ctx ends.
type ExitWatcher interface {
	WatchExits(ctx context.Context) (<-chan ExitEvent, error)
}

// MountChecker is an optional Runtime ability: check a mount before any
// container is made with it, so that a front end that creates before it
// starts (the CRI) refuses at creation what the start would refuse: an
// image mount's SubPath the image lacks (ErrInvalidConfig) or one leading
// out of its tree.
type MountChecker interface {
	CheckMount(ctx context.Context, m Mount) error
}

// VolumeUpdater is an optional Runtime ability: rewrite a projected volume of
// a running sandbox atomically (ConfigMap, Secret and downward-API updates),
// or apply a persistent volume's new size.
type VolumeUpdater interface {
	UpdateVolume(ctx context.Context, sandboxID string, vol *VolumeConfig) error
}

// ContainerStats is a point-in-time usage sample.
type ContainerStats struct {
	CPUUsageNanos uint64 `json:"cpuUsageNanos"`
	MemoryBytes   uint64 `json:"memoryBytes"`
	Pids          uint64 `json:"pids"`
}

// StatsProvider is an optional Runtime ability.
type StatsProvider interface {
	ContainerStats(ctx context.Context, id string) (*ContainerStats, error)
}

// ResourceUpdater is an optional Runtime ability: change the cgroup limits
// of a running container in place (the CRI's UpdateContainerResources,
// kubelet's in-place resize). A zero field leaves that limit as it is; a
// limit that cannot be applied fails the call and changes nothing the
// caller relies on (the record keeps the limits in force).
type ResourceUpdater interface {
	UpdateContainerResources(ctx context.Context, id string, res Resources) error
}

// PullPolicy is the Kubernetes imagePullPolicy.
type PullPolicy string

const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// RegistryAuth is a credential for one registry (from imagePullSecrets).
type RegistryAuth struct {
	Registry      string
	Username      string
	Password      string
	Auth          string // base64 user:password, as in config.json
	IdentityToken string
	RegistryToken string
}

// PullOptions tunes EnsureImage.
type PullOptions struct {
	Policy   PullPolicy
	Auth     []RegistryAuth
	Progress io.Writer // optional human progress output
}

// ImageConfig is the part of an image's config a container needs.
type ImageConfig struct {
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	WorkingDir   string            `json:"workingDir,omitempty"`
	User         string            `json:"user,omitempty"`
	ExposedPorts []string          `json:"exposedPorts,omitempty"`
	StopSignal   string            `json:"stopSignal,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// Image is a stored image.
type Image struct {
	ID         string      `json:"id"`     // config digest
	Digest     string      `json:"digest"` // manifest digest
	References []string    `json:"references"`
	Size       int64       `json:"size"`
	Config     ImageConfig `json:"config"`
	CreatedAt  time.Time   `json:"createdAt,omitzero"`
}

// ImageService manages images.
type ImageService interface {
	// EnsureImage applies the pull policy: pulls when needed and returns the
	// stored image. PullNever with a missing image is ErrNotFound.
	EnsureImage(ctx context.Context, ref string, opts PullOptions) (*Image, error)
	GetImage(ctx context.Context, ref string) (*Image, error)
	ListImages(ctx context.Context) ([]*Image, error)
	// RemoveImage refuses (ErrConflict) while a container uses it unless force.
	RemoveImage(ctx context.Context, ref string, force bool) error
}
