package spec

import (
	"k8s.io/apimachinery/pkg/api/resource"
)

// The types below are a subset of Kubernetes core/v1 with the same JSON field
// names, so that every manifest pelagos-agent accepts is also a valid
// Kubernetes Pod. Pointers mark fields whose absence differs from their zero
// value (Kubernetes does the same); SetDefaults fills them where Kubernetes
// would. `validate` tags hold the simple per-field rules; cross-field rules
// live in validate.go.

// Kinds and the one API version the loader accepts.
const (
	APIVersion    = "v1"
	KindPod       = "Pod"
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
	// KindPersistentVolumeClaim sizes a node-local named volume
	// (types_volumes.go).
	KindPersistentVolumeClaim = "PersistentVolumeClaim"
)

// TypeMeta names the kind of a document.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// ObjectMeta is the metadata pelagos-agent models. uid and the server-set
// fields that `kubectl get -o yaml` prints (resourceVersion, creationTimestamp,
// ...) are accepted and dropped: they mean nothing to a manifest.
type ObjectMeta struct {
	Name        string            `json:"name" validate:"required,dns1123subdomain"`
	Namespace   string            `json:"namespace,omitempty" validate:"omitempty,dns1123label"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Pod is a Kubernetes v1 Pod, restricted to what pelagos-agent supports.
type Pod struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     PodSpec    `json:"spec"`
}

// RestartPolicy is the pod's restart policy.
type RestartPolicy string

// Restart policies.
const (
	RestartPolicyAlways    RestartPolicy = "Always"
	RestartPolicyOnFailure RestartPolicy = "OnFailure"
	RestartPolicyNever     RestartPolicy = "Never"
)

// DNSPolicy says where the pod's resolv.conf comes from.
type DNSPolicy string

// DNS policies. ClusterFirst has no cluster here and behaves like Default;
// Kubernetes makes it the default, so it stays the default for compatibility.
const (
	DNSClusterFirst            DNSPolicy = "ClusterFirst"
	DNSClusterFirstWithHostNet DNSPolicy = "ClusterFirstWithHostNet"
	DNSDefault                 DNSPolicy = "Default"
	DNSNone                    DNSPolicy = "None"
)

// PodSpec is the supported subset of core/v1 PodSpec.
type PodSpec struct {
	InitContainers                []Container            `json:"initContainers,omitempty" validate:"dive"`
	Containers                    []Container            `json:"containers" validate:"required,min=1,dive"`
	RestartPolicy                 RestartPolicy          `json:"restartPolicy,omitempty" validate:"omitempty,oneof=Always OnFailure Never"`
	TerminationGracePeriodSeconds *int64                 `json:"terminationGracePeriodSeconds,omitempty" validate:"omitempty,range=0:31536000"`
	Hostname                      string                 `json:"hostname,omitempty" validate:"omitempty,dns1123label"`
	Subdomain                     string                 `json:"subdomain,omitempty" validate:"omitempty,dns1123label"`
	HostNetwork                   bool                   `json:"hostNetwork,omitempty"`
	HostPID                       bool                   `json:"hostPID,omitempty"`
	HostIPC                       bool                   `json:"hostIPC,omitempty"`
	ShareProcessNamespace         *bool                  `json:"shareProcessNamespace,omitempty"`
	DNSPolicy                     DNSPolicy              `json:"dnsPolicy,omitempty" validate:"omitempty,oneof=ClusterFirst ClusterFirstWithHostNet Default None"`
	DNSConfig                     *PodDNSConfig          `json:"dnsConfig,omitempty"`
	HostAliases                   []HostAlias            `json:"hostAliases,omitempty" validate:"dive"`
	Volumes                       []Volume               `json:"volumes,omitempty" validate:"dive"`
	SecurityContext               *PodSecurityContext    `json:"securityContext,omitempty"`
	NodeSelector                  map[string]string      `json:"nodeSelector,omitempty"`
	ImagePullSecrets              []LocalObjectReference `json:"imagePullSecrets,omitempty" validate:"dive"`

	// AutomountServiceAccountToken: false says what happens here anyway
	// (no API server issues tokens); true is refused. podman's kube
	// generate writes false.
	AutomountServiceAccountToken *bool `json:"automountServiceAccountToken,omitempty"`
	// EnableServiceLinks is accepted either way: there are no Services on
	// one node, so no service variables are set whatever it says.
	EnableServiceLinks *bool `json:"enableServiceLinks,omitempty"`

	// Scheduling (types_scheduling.go): evaluated against the node or
	// accepted with a warning, never acted on by a scheduler.
	NodeName                  string                     `json:"nodeName,omitempty" validate:"omitempty,dns1123subdomain"`
	Affinity                  *Affinity                  `json:"affinity,omitempty"`
	Tolerations               []Toleration               `json:"tolerations,omitempty"`
	SchedulerName             string                     `json:"schedulerName,omitempty"`
	Priority                  *int32                     `json:"priority,omitempty"`
	PriorityClassName         string                     `json:"priorityClassName,omitempty" validate:"omitempty,dns1123subdomain"`
	PreemptionPolicy          *string                    `json:"preemptionPolicy,omitempty" validate:"omitempty,oneof=PreemptLowerPriority Never"`
	TopologySpreadConstraints []TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// Resources are pod-level requests and limits (KEP-2837), cpu and
	// memory only: the pod cgroup gets the limits, so the containers
	// share them (podresources.go).
	Resources *ResourceRequirements `json:"resources,omitempty"`
}

// PullPolicy says when an image is pulled.
type PullPolicy string

// Pull policies.
const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// Container is the supported subset of core/v1 Container; init containers use
// the same type (probes and lifecycle are refused on them by validation,
// except on native sidecars: init containers with restartPolicy Always).
type Container struct {
	Name            string               `json:"name" validate:"required,dns1123label"`
	Image           string               `json:"image" validate:"required,imageref"`
	ImagePullPolicy PullPolicy           `json:"imagePullPolicy,omitempty" validate:"omitempty,oneof=Always IfNotPresent Never"`
	Command         []string             `json:"command,omitempty"`
	Args            []string             `json:"args,omitempty"`
	WorkingDir      string               `json:"workingDir,omitempty" validate:"omitempty,abspath"`
	Env             []EnvVar             `json:"env,omitempty" validate:"dive"`
	EnvFrom         []EnvFromSource      `json:"envFrom,omitempty" validate:"dive"`
	Ports           []ContainerPort      `json:"ports,omitempty" validate:"dive"`
	Resources       ResourceRequirements `json:"resources,omitempty"`
	VolumeMounts    []VolumeMount        `json:"volumeMounts,omitempty" validate:"dive"`
	LivenessProbe   *Probe               `json:"livenessProbe,omitempty"`
	ReadinessProbe  *Probe               `json:"readinessProbe,omitempty"`
	StartupProbe    *Probe               `json:"startupProbe,omitempty"`
	Lifecycle       *Lifecycle           `json:"lifecycle,omitempty"`
	SecurityContext *SecurityContext     `json:"securityContext,omitempty"`
	// Stdin keeps the container's stdin open for attach clients (else it
	// is /dev/null); StdinOnce closes it when the first client's input
	// ends; TTY gives the container a terminal.
	Stdin                  bool   `json:"stdin,omitempty"`
	StdinOnce              bool   `json:"stdinOnce,omitempty"`
	TTY                    bool   `json:"tty,omitempty"`
	TerminationMessagePath string `json:"terminationMessagePath,omitempty" validate:"omitempty,abspath"`
	// TerminationMessagePolicy is File (default) or FallbackToLogsOnError:
	// the tail of the log becomes the message when the file is empty and
	// the container failed.
	TerminationMessagePolicy string `json:"terminationMessagePolicy,omitempty" validate:"omitempty,oneof=File FallbackToLogsOnError"`
	// RestartPolicy on an init container (Always) makes it a native
	// sidecar: started in order with the init containers, kept running
	// beside the app and stopped after it.
	RestartPolicy *ContainerRestartPolicy `json:"restartPolicy,omitempty"`
	// ResizePolicy is accepted for compatibility: there is no in-place
	// resize here, a change of resources restarts the container whatever
	// it says (it is not part of the container hash).
	ResizePolicy []ContainerResizePolicy `json:"resizePolicy,omitempty" validate:"dive"`
}

// IsSidecar reports whether c, an init container, is a native sidecar.
func (c *Container) IsSidecar() bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == ContainerRestartPolicyAlways
}

// eachContainer calls fn for every init container, then every app
// container, with its list's field name and index.
func (s *PodSpec) eachContainer(fn func(field string, i int, c *Container)) {
	for i := range s.InitContainers {
		fn("initContainers", i, &s.InitContainers[i])
	}
	for i := range s.Containers {
		fn("containers", i, &s.Containers[i])
	}
}

// Serving returns the containers that run for the pod's life, in the
// order they start: native sidecars, then the app containers. Their ports
// are the pod's; plain init containers end before the app starts.
func (s *PodSpec) Serving() []Container {
	var out []Container
	for _, c := range s.InitContainers {
		if c.IsSidecar() {
			out = append(out, c)
		}
	}
	return append(out, s.Containers...)
}

// Container returns the init or app container of that name, or nil.
func (s *PodSpec) Container(name string) *Container {
	for _, list := range [][]Container{s.Containers, s.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// ContainerResizePolicy says whether a resource change needs a restart
// (Kubernetes' in-place resize); see Container.ResizePolicy.
type ContainerResizePolicy struct {
	ResourceName  ResourceName `json:"resourceName" validate:"required,oneof=cpu memory"`
	RestartPolicy string       `json:"restartPolicy" validate:"required,oneof=NotRequired RestartContainer"`
}

// ContainerRestartPolicy is a container's own restart policy; Kubernetes
// allows only Always, and only on init containers (native sidecars).
type ContainerRestartPolicy string

// ContainerRestartPolicyAlways marks an init container as a sidecar.
const ContainerRestartPolicyAlways ContainerRestartPolicy = "Always"

// EnvVar is one environment variable: a literal value or a reference.
type EnvVar struct {
	Name      string        `json:"name" validate:"required,envvarname"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// EnvVarSource names where an environment variable's value comes from;
// exactly one member is set.
type EnvVarSource struct {
	FieldRef         *ObjectFieldSelector   `json:"fieldRef,omitempty"`
	ResourceFieldRef *ResourceFieldSelector `json:"resourceFieldRef,omitempty"`
	ConfigMapKeyRef  *ConfigMapKeySelector  `json:"configMapKeyRef,omitempty"`
	SecretKeyRef     *SecretKeySelector     `json:"secretKeyRef,omitempty"`
}

// ObjectFieldSelector selects a field of the pod (the downward API).
type ObjectFieldSelector struct {
	APIVersion string `json:"apiVersion,omitempty"`
	FieldPath  string `json:"fieldPath" validate:"required"`
}

// ConfigMapKeySelector selects one key of a ConfigMap.
type ConfigMapKeySelector struct {
	Name     string `json:"name" validate:"required,dns1123subdomain"`
	Key      string `json:"key" validate:"required,configkey"`
	Optional *bool  `json:"optional,omitempty"`
}

// SecretKeySelector selects one key of a Secret.
type SecretKeySelector struct {
	Name     string `json:"name" validate:"required,dns1123subdomain"`
	Key      string `json:"key" validate:"required,configkey"`
	Optional *bool  `json:"optional,omitempty"`
}

// EnvFromSource imports every key of a ConfigMap or Secret.
type EnvFromSource struct {
	Prefix       string              `json:"prefix,omitempty" validate:"omitempty,envvarname"`
	ConfigMapRef *ConfigMapEnvSource `json:"configMapRef,omitempty"`
	SecretRef    *SecretEnvSource    `json:"secretRef,omitempty"`
}

// ConfigMapEnvSource names a ConfigMap for envFrom.
type ConfigMapEnvSource struct {
	Name     string `json:"name" validate:"required,dns1123subdomain"`
	Optional *bool  `json:"optional,omitempty"`
}

// SecretEnvSource names a Secret for envFrom.
type SecretEnvSource struct {
	Name     string `json:"name" validate:"required,dns1123subdomain"`
	Optional *bool  `json:"optional,omitempty"`
}

// Protocol is a port's transport protocol.
type Protocol string

// Protocols.
const (
	ProtocolTCP  Protocol = "TCP"
	ProtocolUDP  Protocol = "UDP"
	ProtocolSCTP Protocol = "SCTP"
)

// ContainerPort is a port the container listens on, optionally published
// on the node (hostPort).
type ContainerPort struct {
	Name          string   `json:"name,omitempty" validate:"omitempty,portname"`
	HostPort      int32    `json:"hostPort,omitempty" validate:"range=0:65535"`
	ContainerPort int32    `json:"containerPort" validate:"range=1:65535"`
	Protocol      Protocol `json:"protocol,omitempty" validate:"omitempty,oneof=TCP UDP SCTP"`
	HostIP        string   `json:"hostIP,omitempty" validate:"omitempty,ip"`
}

// ResourceName names a compute resource.
type ResourceName string

// The resources pelagos-agent accounts for.
const (
	ResourceCPU              ResourceName = "cpu"
	ResourceMemory           ResourceName = "memory"
	ResourceEphemeralStorage ResourceName = "ephemeral-storage"
)

// ResourceList maps resource names to quantities.
type ResourceList map[ResourceName]resource.Quantity

// ResourceRequirements are a container's requests and limits.
type ResourceRequirements struct {
	Limits   ResourceList `json:"limits,omitempty"`
	Requests ResourceList `json:"requests,omitempty"`
}

// VolumeMount mounts a pod volume into a container.
type VolumeMount struct {
	Name      string `json:"name" validate:"required"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	MountPath string `json:"mountPath" validate:"required,dirpath"`
	SubPath   string `json:"subPath,omitempty"`
}

// Probe checks a container's health. Exactly one handler is set.
type Probe struct {
	ProbeHandler        `json:",inline"`
	InitialDelaySeconds int32 `json:"initialDelaySeconds,omitempty" validate:"range=0:2147483647"`
	TimeoutSeconds      int32 `json:"timeoutSeconds,omitempty" validate:"range=0:2147483647"`
	PeriodSeconds       int32 `json:"periodSeconds,omitempty" validate:"range=0:2147483647"`
	SuccessThreshold    int32 `json:"successThreshold,omitempty" validate:"range=0:2147483647"`
	FailureThreshold    int32 `json:"failureThreshold,omitempty" validate:"range=0:2147483647"`
	// TerminationGracePeriodSeconds replaces the pod's grace period when this
	// probe's failure kills the container (liveness and startup only).
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty" validate:"omitempty,range=1:31536000"`
}

// ProbeHandler is the check a probe runs.
type ProbeHandler struct {
	Exec      *ExecAction      `json:"exec,omitempty"`
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC      *GRPCAction      `json:"grpc,omitempty"`
}

// ExecAction runs a command in the container; exit 0 is success.
type ExecAction struct {
	Command []string `json:"command,omitempty"`
}

// URIScheme is http or https.
type URIScheme string

// URI schemes.
const (
	URISchemeHTTP  URIScheme = "HTTP"
	URISchemeHTTPS URIScheme = "HTTPS"
)

// HTTPGetAction is an HTTP GET against the pod; 200-399 is success.
type HTTPGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        IntOrString  `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      URIScheme    `json:"scheme,omitempty" validate:"omitempty,oneof=HTTP HTTPS"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty" validate:"dive"`
}

// HTTPHeader is one request header of an httpGet probe.
type HTTPHeader struct {
	Name  string `json:"name" validate:"required,httpheader"`
	Value string `json:"value"`
}

// TCPSocketAction succeeds when a TCP connection opens.
type TCPSocketAction struct {
	Port IntOrString `json:"port"`
	Host string      `json:"host,omitempty"`
}

// GRPCAction calls the gRPC health-checking protocol.
type GRPCAction struct {
	Port    int32   `json:"port" validate:"range=1:65535"`
	Service *string `json:"service,omitempty"`
}

// Lifecycle holds hooks run after start and before stop.
type Lifecycle struct {
	PostStart *LifecycleHandler `json:"postStart,omitempty"`
	PreStop   *LifecycleHandler `json:"preStop,omitempty"`
}

// LifecycleHandler is the action of a hook; exactly one member is set.
type LifecycleHandler struct {
	Exec    *ExecAction    `json:"exec,omitempty"`
	HTTPGet *HTTPGetAction `json:"httpGet,omitempty"`
	Sleep   *SleepAction   `json:"sleep,omitempty"`
}

// SleepAction pauses for a number of seconds.
type SleepAction struct {
	Seconds int64 `json:"seconds" validate:"range=0:31536000"`
}

// Capability is a Linux capability name, with or without the CAP_ prefix
// (Kubernetes writes NET_ADMIN).
type Capability string

// Capabilities to add to and drop from the default set.
type Capabilities struct {
	Add  []Capability `json:"add,omitempty"`
	Drop []Capability `json:"drop,omitempty"`
}

// SeccompProfileType picks the seccomp profile.
type SeccompProfileType string

// Seccomp profile types.
const (
	SeccompRuntimeDefault SeccompProfileType = "RuntimeDefault"
	SeccompUnconfined     SeccompProfileType = "Unconfined"
	SeccompLocalhost      SeccompProfileType = "Localhost"
)

// SeccompProfile selects a seccomp profile; localhostProfile is a path
// relative to the agent's seccomp profile directory, set only for Localhost.
type SeccompProfile struct {
	Type             SeccompProfileType `json:"type" validate:"required,oneof=RuntimeDefault Unconfined Localhost"`
	LocalhostProfile *string            `json:"localhostProfile,omitempty"`
}

// SecurityContext is a container's security settings. Unset fields take the
// pod's PodSecurityContext value, then the runtime's default.
type SecurityContext struct {
	Capabilities             *Capabilities   `json:"capabilities,omitempty"`
	Privileged               *bool           `json:"privileged,omitempty"`
	RunAsUser                *int64          `json:"runAsUser,omitempty"`
	RunAsGroup               *int64          `json:"runAsGroup,omitempty"`
	RunAsNonRoot             *bool           `json:"runAsNonRoot,omitempty"`
	ReadOnlyRootFilesystem   *bool           `json:"readOnlyRootFilesystem,omitempty"`
	AllowPrivilegeEscalation *bool           `json:"allowPrivilegeEscalation,omitempty"`
	SeccompProfile           *SeccompProfile `json:"seccompProfile,omitempty"`
	// AppArmorProfile is accepted as RuntimeDefault or Unconfined, which
	// mean the same here: pelagos-agent loads no AppArmor profile.
	AppArmorProfile *AppArmorProfile `json:"appArmorProfile,omitempty"`
}

// AppArmorProfileType picks an AppArmor profile.
type AppArmorProfileType string

// AppArmor profile types. Localhost is refused: no profile can be loaded.
const (
	AppArmorRuntimeDefault AppArmorProfileType = "RuntimeDefault"
	AppArmorUnconfined     AppArmorProfileType = "Unconfined"
	AppArmorLocalhost      AppArmorProfileType = "Localhost"
)

// AppArmorProfile is Kubernetes' AppArmor setting; see AppArmorProfileType.
type AppArmorProfile struct {
	Type             AppArmorProfileType `json:"type" validate:"required,oneof=RuntimeDefault Unconfined Localhost"`
	LocalhostProfile *string             `json:"localhostProfile,omitempty"`
}

// Sysctl is one namespaced kernel parameter set in the pod's sandbox.
type Sysctl struct {
	Name  string `json:"name" validate:"required"`
	Value string `json:"value"`
}

// PodSecurityContext holds pod-wide security settings.
type PodSecurityContext struct {
	RunAsUser          *int64  `json:"runAsUser,omitempty"`
	RunAsGroup         *int64  `json:"runAsGroup,omitempty"`
	RunAsNonRoot       *bool   `json:"runAsNonRoot,omitempty"`
	SupplementalGroups []int64 `json:"supplementalGroups,omitempty" validate:"dive,range=0:2147483647"`
	// SupplementalGroupsPolicy is Merge (the default: the groups the
	// image's /etc/group gives the container's user are added) or Strict
	// (only the primary group, fsGroup and supplementalGroups).
	SupplementalGroupsPolicy *SupplementalGroupsPolicy `json:"supplementalGroupsPolicy,omitempty" validate:"omitempty,oneof=Merge Strict"`
	FSGroup                  *int64                    `json:"fsGroup,omitempty"`
	Sysctls                  []Sysctl                  `json:"sysctls,omitempty" validate:"dive"`
	SeccompProfile           *SeccompProfile           `json:"seccompProfile,omitempty"`
	// AppArmorProfile: as in SecurityContext.
	AppArmorProfile *AppArmorProfile `json:"appArmorProfile,omitempty"`
}

// PodDNSConfig adds to (or with dnsPolicy None, replaces) the pod's resolver
// configuration.
type PodDNSConfig struct {
	Nameservers []string             `json:"nameservers,omitempty" validate:"max=3,dive,ip"`
	Searches    []string             `json:"searches,omitempty" validate:"max=32,dive,dnssearch"`
	Options     []PodDNSConfigOption `json:"options,omitempty" validate:"dive"`
}

// PodDNSConfigOption is one resolv.conf option (ndots:2, edns0).
type PodDNSConfigOption struct {
	Name  string  `json:"name" validate:"required"`
	Value *string `json:"value,omitempty"`
}

// HostAlias adds lines to the pod's /etc/hosts.
type HostAlias struct {
	IP        string   `json:"ip" validate:"required,ip"`
	Hostnames []string `json:"hostnames,omitempty" validate:"dive,dns1123subdomain"`
}

// LocalObjectReference names an object in the pod's namespace.
type LocalObjectReference struct {
	Name string `json:"name" validate:"required,dns1123subdomain"`
}

// Volume is a named volume of the pod; exactly one source is set.
type Volume struct {
	Name         string `json:"name" validate:"required,dns1123label"`
	VolumeSource `json:",inline"`
}

// VolumeSource lists the supported volume types.
type VolumeSource struct {
	HostPath              *HostPathVolumeSource              `json:"hostPath,omitempty"`
	EmptyDir              *EmptyDirVolumeSource              `json:"emptyDir,omitempty"`
	Secret                *SecretVolumeSource                `json:"secret,omitempty"`
	PersistentVolumeClaim *PersistentVolumeClaimVolumeSource `json:"persistentVolumeClaim,omitempty"`
	DownwardAPI           *DownwardAPIVolumeSource           `json:"downwardAPI,omitempty"`
	ConfigMap             *ConfigMapVolumeSource             `json:"configMap,omitempty"`
	Projected             *ProjectedVolumeSource             `json:"projected,omitempty"`
	Image                 *ImageVolumeSource                 `json:"image,omitempty"`
}

// HostPathType checks what a hostPath must be before it is mounted.
type HostPathType string

// HostPath types, as in Kubernetes; "" does no check.
const (
	HostPathUnset             HostPathType = ""
	HostPathDirectoryOrCreate HostPathType = "DirectoryOrCreate"
	HostPathDirectory         HostPathType = "Directory"
	HostPathFileOrCreate      HostPathType = "FileOrCreate"
	HostPathFile              HostPathType = "File"
	HostPathSocket            HostPathType = "Socket"
	HostPathCharDev           HostPathType = "CharDevice"
	HostPathBlockDev          HostPathType = "BlockDevice"
)

// HostPathVolumeSource mounts a path of the node.
type HostPathVolumeSource struct {
	Path string        `json:"path" validate:"required,dirpath"`
	Type *HostPathType `json:"type,omitempty"`
}

// StorageMedium is where an emptyDir lives.
type StorageMedium string

// Storage media: "" is the node's disk (under the state root), Memory a tmpfs.
const (
	StorageMediumDefault StorageMedium = ""
	StorageMediumMemory  StorageMedium = "Memory"
)

// EmptyDirVolumeSource is a scratch directory that lives as long as the pod.
type EmptyDirVolumeSource struct {
	Medium    StorageMedium      `json:"medium,omitempty" validate:"omitempty,oneof=Memory"`
	SizeLimit *resource.Quantity `json:"sizeLimit,omitempty"`
}

// KeyToPath projects one key of a ConfigMap or Secret to a relative path.
type KeyToPath struct {
	Key  string `json:"key" validate:"required,configkey"`
	Path string `json:"path" validate:"required,volfile"`
	Mode *int32 `json:"mode,omitempty" validate:"omitempty,range=0:511"`
}

// SecretVolumeSource projects a Secret's keys as files.
type SecretVolumeSource struct {
	SecretName  string      `json:"secretName,omitempty" validate:"required,dns1123subdomain"`
	Items       []KeyToPath `json:"items,omitempty" validate:"dive"`
	DefaultMode *int32      `json:"defaultMode,omitempty" validate:"omitempty,range=0:511"`
	Optional    *bool       `json:"optional,omitempty"`
}

// ConfigMapVolumeSource projects a ConfigMap's keys as files.
type ConfigMapVolumeSource struct {
	LocalObjectReference `json:",inline"`
	Items                []KeyToPath `json:"items,omitempty" validate:"dive"`
	DefaultMode          *int32      `json:"defaultMode,omitempty" validate:"omitempty,range=0:511"`
	Optional             *bool       `json:"optional,omitempty"`
}

// ConfigMap is a Kubernetes v1 ConfigMap. It is modelled and validated now;
// pods consume it in a later issue.
type ConfigMap struct {
	TypeMeta   `json:",inline"`
	Metadata   ObjectMeta        `json:"metadata"`
	Immutable  *bool             `json:"immutable,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
	BinaryData map[string][]byte `json:"binaryData,omitempty"`
}

// SecretType is the type of a Secret; Opaque when unset.
type SecretType string

// SecretTypeOpaque is the default Secret type.
const SecretTypeOpaque SecretType = "Opaque"

// Secret is a Kubernetes v1 Secret. data values are base64 in the manifest
// and raw bytes here; stringData is merged into data by SetSecretDefaults.
type Secret struct {
	TypeMeta   `json:",inline"`
	Metadata   ObjectMeta        `json:"metadata"`
	Immutable  *bool             `json:"immutable,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"`
	StringData map[string]string `json:"stringData,omitempty"`
	Type       SecretType        `json:"type,omitempty"`
}

// PodKey identifies a pod on the node: namespace/name.
type PodKey struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (k PodKey) String() string { return k.Namespace + "/" + k.Name }

// Key returns the pod's namespace/name. Call it after SetDefaults, which
// fills the namespace.
func (p *Pod) Key() PodKey { return PodKey{Namespace: p.Metadata.Namespace, Name: p.Metadata.Name} }
