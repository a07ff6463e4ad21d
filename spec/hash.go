package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
)

// Change detection. The reconciler stores two kinds of hash on what it runs
// and compares them with the manifest's:
//
//   - SandboxHash covers what is fixed when the sandbox (pause process,
//     namespaces, network) is made. A different value means: recreate the
//     sandbox and with it every container.
//   - ContainerHash covers one container. A different value (with the same
//     sandbox hash) means: restart only that container.
//
// Both hash an allow-list of fields, after SetDefaults, as canonical JSON:
// fields not listed (labels, annotations, restartPolicy,
// terminationGracePeriodSeconds, imagePullPolicy, nodeSelector,
// imagePullSecrets) never restart anything; the reconciler reads them on
// every pass. Writing a default out explicitly, reordering volumes or
// hostPorts, or rewriting identical bytes gives the same hash.
//
// The version prefix changes whenever the field set or its encoding does, so
// an upgraded agent can tell "the manifest changed" from "the hash changed".
// Bump it with care: a new version restarts every pod once.
const (
	SandboxHashVersion   = "s1"
	ContainerHashVersion = "c1"
)

// sandboxFields is the allow-list for SandboxHash. Init containers are part
// of it: they run once per sandbox, so changing one means a new sandbox.
// Native sidecars are part of it by name and position only: a change of a
// sidecar restarts that sidecar, as a change of an app container does.
type sandboxFields struct {
	Hostname              string         `json:"hostname"`
	Subdomain             string         `json:"subdomain"`
	HostNetwork           bool           `json:"hostNetwork"`
	HostPID               bool           `json:"hostPID"`
	HostIPC               bool           `json:"hostIPC"`
	ShareProcessNamespace bool           `json:"shareProcessNamespace"`
	DNSPolicy             DNSPolicy      `json:"dnsPolicy"`
	DNSConfig             *PodDNSConfig  `json:"dnsConfig"`
	HostAliases           []HostAlias    `json:"hostAliases"`
	Volumes               []Volume       `json:"volumes"` // sorted by name
	Sysctls               []Sysctl       `json:"sysctls"` // sorted by name
	FSGroup               *int64         `json:"fsGroup"`
	SupplementalGroups    []int64        `json:"supplementalGroups"`
	HostPorts             []hostPortHash `json:"hostPorts"` // sorted
	InitContainers        []string       `json:"initContainers"`
	// Fields added later are omitted when unset, so adding them kept
	// every earlier hash.
	Sidecars                 []string `json:"sidecars,omitempty"`
	SupplementalGroupsPolicy string   `json:"supplementalGroupsPolicy,omitempty"` // Strict only
	// The pod cgroup's limits are written when the sandbox is made, and
	// Kubernetes restarts the pod to change them (no in-place resize).
	Resources *ResourceRequirements `json:"resources,omitempty"`
}

type hostPortHash struct {
	HostIP        string   `json:"hostIP"`
	HostPort      int32    `json:"hostPort"`
	ContainerPort int32    `json:"containerPort"`
	Protocol      Protocol `json:"protocol"`
}

// containerFields is the allow-list for ContainerHash. The security
// settings are the effective ones: a pod-level runAsUser change restarts the
// containers that inherit it.
type containerFields struct {
	Name                   string               `json:"name"`
	Image                  string               `json:"image"`
	Command                []string             `json:"command"`
	Args                   []string             `json:"args"`
	WorkingDir             string               `json:"workingDir"`
	Env                    []EnvVar             `json:"env"`
	EnvFrom                []EnvFromSource      `json:"envFrom"`
	Resources              ResourceRequirements `json:"resources"`
	VolumeMounts           []VolumeMount        `json:"volumeMounts"`
	LivenessProbe          *Probe               `json:"livenessProbe"`
	ReadinessProbe         *Probe               `json:"readinessProbe"`
	StartupProbe           *Probe               `json:"startupProbe"`
	Lifecycle              *Lifecycle           `json:"lifecycle"`
	SecurityContext        SecurityContext      `json:"securityContext"`
	Stdin                  bool                 `json:"stdin"`
	TTY                    bool                 `json:"tty"`
	TerminationMessagePath string               `json:"terminationMessagePath"`
	// Empty for the default policy, so adding the field kept every hash.
	TerminationMessagePolicy string `json:"terminationMessagePolicy,omitempty"`
	// Set on native sidecars only.
	RestartPolicy *ContainerRestartPolicy `json:"restartPolicy,omitempty"`
	// Omitted when false, so adding the field kept every hash.
	StdinOnce bool `json:"stdinOnce,omitempty"`
}

// SandboxHash returns the versioned hash of p's sandbox-level fields, such
// as "s1-3f7a...". p need not be defaulted: defaults are applied to a copy.
func SandboxHash(p *Pod) string {
	d := p.DeepCopy()
	SetDefaults(d)
	s := &d.Spec
	f := sandboxFields{
		Hostname: s.Hostname, Subdomain: s.Subdomain,
		HostNetwork: s.HostNetwork, HostPID: s.HostPID, HostIPC: s.HostIPC,
		ShareProcessNamespace: s.ShareProcessNamespace != nil && *s.ShareProcessNamespace,
		DNSPolicy:             s.DNSPolicy, DNSConfig: s.DNSConfig, HostAliases: s.HostAliases,
		Volumes:   append([]Volume(nil), s.Volumes...),
		Resources: s.Resources,
	}
	sort.Slice(f.Volumes, func(i, j int) bool { return f.Volumes[i].Name < f.Volumes[j].Name })
	if sc := s.SecurityContext; sc != nil {
		f.Sysctls = append([]Sysctl(nil), sc.Sysctls...)
		sort.Slice(f.Sysctls, func(i, j int) bool { return f.Sysctls[i].Name < f.Sysctls[j].Name })
		f.FSGroup = sc.FSGroup
		f.SupplementalGroups = sc.SupplementalGroups
		if p := sc.SupplementalGroupsPolicy; p != nil && *p == SupplementalGroupsStrict {
			f.SupplementalGroupsPolicy = string(*p)
		}
	}
	for _, c := range s.Serving() {
		for _, pt := range c.Ports {
			if pt.HostPort != 0 {
				f.HostPorts = append(f.HostPorts, hostPortHash{pt.HostIP, pt.HostPort, pt.ContainerPort, pt.Protocol})
			}
		}
	}
	sort.Slice(f.HostPorts, func(i, j int) bool {
		a, b := f.HostPorts[i], f.HostPorts[j]
		return fmt.Sprint(a.HostPort, a.Protocol, a.HostIP, a.ContainerPort) < fmt.Sprint(b.HostPort, b.Protocol, b.HostIP, b.ContainerPort)
	})
	for i := range s.InitContainers {
		if c := &s.InitContainers[i]; c.IsSidecar() {
			f.Sidecars = append(f.Sidecars, fmt.Sprintf("%d:%s", i, c.Name))
		} else {
			f.InitContainers = append(f.InitContainers, containerHash(d, c))
		}
	}
	return SandboxHashVersion + "-" + digest(f)
}

// ContainerHash returns the versioned hash of container c of pod p, such as
// "c1-9b2e...". c may be an init or an app container of p; it is looked up
// by name in a defaulted copy of p.
func ContainerHash(p *Pod, c *Container) string {
	d := p.DeepCopy()
	SetDefaults(d)
	for _, list := range [][]Container{d.Spec.Containers, d.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == c.Name {
				return containerHash(d, &list[i])
			}
		}
	}
	// Not part of p: hash it on its own, defaulted against p's spec.
	cc := deepCopyJSON(c)
	setContainerDefaults(cc, d.Spec.HostNetwork)
	return containerHash(d, cc)
}

// containerHash expects a defaulted pod and container.
func containerHash(p *Pod, c *Container) string {
	f := containerFields{
		Name: c.Name, Image: c.Image, Command: c.Command, Args: c.Args, WorkingDir: c.WorkingDir,
		Env: c.Env, EnvFrom: c.EnvFrom, Resources: c.Resources, VolumeMounts: c.VolumeMounts,
		LivenessProbe: c.LivenessProbe, ReadinessProbe: c.ReadinessProbe, StartupProbe: c.StartupProbe,
		Lifecycle: c.Lifecycle, SecurityContext: EffectiveSecurityContext(p, c),
		Stdin: c.Stdin, StdinOnce: c.StdinOnce, TTY: c.TTY, TerminationMessagePath: c.TerminationMessagePath, RestartPolicy: c.RestartPolicy,
	}
	if c.TerminationMessagePolicy != DefaultTerminationMessagePolicy {
		f.TerminationMessagePolicy = c.TerminationMessagePolicy
	}
	return ContainerHashVersion + "-" + digest(f)
}

// EffectiveSecurityContext merges the pod's securityContext under the
// container's: a field the container leaves unset takes the pod's value.
func EffectiveSecurityContext(p *Pod, c *Container) SecurityContext {
	var out SecurityContext
	if c.SecurityContext != nil {
		out = *deepCopyJSON(c.SecurityContext)
	}
	if ps := p.Spec.SecurityContext; ps != nil {
		if out.RunAsUser == nil && ps.RunAsUser != nil {
			v := *ps.RunAsUser
			out.RunAsUser = &v
		}
		if out.RunAsGroup == nil && ps.RunAsGroup != nil {
			v := *ps.RunAsGroup
			out.RunAsGroup = &v
		}
		if out.RunAsNonRoot == nil && ps.RunAsNonRoot != nil {
			v := *ps.RunAsNonRoot
			out.RunAsNonRoot = &v
		}
		if out.SeccompProfile == nil && ps.SeccompProfile != nil {
			out.SeccompProfile = deepCopyJSON(ps.SeccompProfile)
		}
	}
	return out
}

func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Every hashed type is plain data; this cannot happen.
		panic(fmt.Sprintf("spec: hashing %T: %v", v, err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// DeepCopy returns an independent copy of p.
func (p *Pod) DeepCopy() *Pod { return deepCopyJSON(p) }

func deepCopyJSON[T any](v *T) *T {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("spec: copying %T: %v", v, err))
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(fmt.Sprintf("spec: copying %T: %v", v, err))
	}
	return out
}
