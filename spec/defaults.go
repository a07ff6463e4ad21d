package spec

import (
	"strings"
)

// Defaults that Kubernetes applies and pelagos-agent mirrors, so a manifest
// means the same thing on a node and in a cluster.
const (
	DefaultNamespace                     = "default"
	DefaultTerminationGracePeriodSeconds = int64(30)
	DefaultTerminationMessagePath        = "/dev/termination-log"
	DefaultProbeTimeoutSeconds           = int32(1)
	DefaultProbePeriodSeconds            = int32(10)
	DefaultProbeSuccessThreshold         = int32(1)
	DefaultProbeFailureThreshold         = int32(3)
	DefaultVolumeMode                    = int32(0o644)
	// DefaultSecretVolumeMode is stricter than Kubernetes' 0644: a secret's
	// files are readable by their owner only unless defaultMode says otherwise.
	DefaultSecretVolumeMode = int32(0o600)
	// DefaultTerminationMessagePolicy is Kubernetes' default.
	DefaultTerminationMessagePolicy = "File"
)

// SetDefaults fills every defaulted field of p in place, as the Kubernetes
// API server would. It is idempotent, and it is what makes a manifest that
// spells out a default hash the same as one that leaves it out.
func SetDefaults(p *Pod) {
	if p.Metadata.Namespace == "" {
		p.Metadata.Namespace = DefaultNamespace
	}
	s := &p.Spec
	if s.RestartPolicy == "" {
		s.RestartPolicy = RestartPolicyAlways
	}
	if s.TerminationGracePeriodSeconds == nil {
		v := DefaultTerminationGracePeriodSeconds
		s.TerminationGracePeriodSeconds = &v
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = DNSClusterFirst
	}
	if s.ShareProcessNamespace == nil {
		f := false
		s.ShareProcessNamespace = &f
	}
	for i := range s.InitContainers {
		setContainerDefaults(&s.InitContainers[i], s.HostNetwork)
	}
	for i := range s.Containers {
		setContainerDefaults(&s.Containers[i], s.HostNetwork)
	}
	setPodResourceDefaults(s)
	if sc := s.SecurityContext; sc != nil {
		for i := range sc.Sysctls {
			sc.Sysctls[i].Name = normalizeSysctlName(sc.Sysctls[i].Name)
		}
	}
	for i := range s.Volumes {
		v := &s.Volumes[i]
		if v.Image != nil && v.Image.PullPolicy == "" {
			v.Image.PullPolicy = DefaultPullPolicy(v.Image.Reference)
		}
		if v.HostPath != nil && v.HostPath.Type == nil {
			t := HostPathUnset
			v.HostPath.Type = &t
		}
		if v.Secret != nil && v.Secret.DefaultMode == nil {
			m := DefaultSecretVolumeMode
			v.Secret.DefaultMode = &m
		}
		if v.ConfigMap != nil && v.ConfigMap.DefaultMode == nil {
			m := DefaultVolumeMode
			v.ConfigMap.DefaultMode = &m
		}
		if d := v.DownwardAPI; d != nil {
			if d.DefaultMode == nil {
				m := DefaultVolumeMode
				d.DefaultMode = &m
			}
			setDownwardFileDefaults(d.Items)
		}
		// A projected volume's defaultMode stays unset when absent: its
		// Secret files then get DefaultSecretVolumeMode, the others
		// DefaultVolumeMode (writing 0644 out makes Secret files 0644).
		if pr := v.Projected; pr != nil {
			for _, src := range pr.Sources {
				if src.DownwardAPI != nil {
					setDownwardFileDefaults(src.DownwardAPI.Items)
				}
			}
		}
	}
}

// setDownwardFileDefaults gives fieldRefs their API version, as in env.
func setDownwardFileDefaults(items []DownwardAPIVolumeFile) {
	for i := range items {
		if fr := items[i].FieldRef; fr != nil && fr.APIVersion == "" {
			fr.APIVersion = "v1"
		}
	}
}

func setContainerDefaults(c *Container, hostNetwork bool) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = DefaultPullPolicy(c.Image)
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = DefaultTerminationMessagePath
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = DefaultTerminationMessagePolicy
	}
	for i := range c.Env {
		if vf := c.Env[i].ValueFrom; vf != nil && vf.FieldRef != nil && vf.FieldRef.APIVersion == "" {
			vf.FieldRef.APIVersion = "v1"
		}
	}
	for i := range c.Ports {
		pt := &c.Ports[i]
		if pt.Protocol == "" {
			pt.Protocol = ProtocolTCP
		}
		// With the host's network the container port is the host port.
		if hostNetwork && pt.HostPort == 0 {
			pt.HostPort = pt.ContainerPort
		}
	}
	for _, pr := range []*Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		setProbeDefaults(pr)
	}
	if c.Lifecycle != nil {
		for _, h := range []*LifecycleHandler{c.Lifecycle.PostStart, c.Lifecycle.PreStop} {
			if h != nil && h.HTTPGet != nil {
				setHTTPGetDefaults(h.HTTPGet)
			}
		}
	}
	// Kubernetes copies limits to requests when a request is absent.
	for name, q := range c.Resources.Limits {
		if name != ResourceCPU && name != ResourceMemory && name != ResourceEphemeralStorage {
			continue // refused by validation; copying would report it twice
		}
		if _, ok := c.Resources.Requests[name]; !ok {
			if c.Resources.Requests == nil {
				c.Resources.Requests = ResourceList{}
			}
			c.Resources.Requests[name] = q.DeepCopy()
		}
	}
}

func setProbeDefaults(p *Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = DefaultProbeTimeoutSeconds
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = DefaultProbePeriodSeconds
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = DefaultProbeSuccessThreshold
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultProbeFailureThreshold
	}
	if p.HTTPGet != nil {
		setHTTPGetDefaults(p.HTTPGet)
	}
}

func setHTTPGetDefaults(h *HTTPGetAction) {
	if h.Path == "" {
		h.Path = "/"
	}
	if h.Scheme == "" {
		h.Scheme = URISchemeHTTP
	}
}

// DefaultPullPolicy is Kubernetes' rule: Always for :latest or an untagged
// image, IfNotPresent otherwise (a digest counts as pinned).
func DefaultPullPolicy(image string) PullPolicy {
	if strings.Contains(image, "@") {
		return PullIfNotPresent
	}
	name := image
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	tag := ""
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		tag = name[i+1:]
	}
	if tag == "" || tag == "latest" {
		return PullAlways
	}
	return PullIfNotPresent
}

// SetConfigMapDefaults fills the ConfigMap's defaulted fields.
func SetConfigMapDefaults(c *ConfigMap) {
	if c.Metadata.Namespace == "" {
		c.Metadata.Namespace = DefaultNamespace
	}
}

// SetSecretDefaults fills the Secret's defaulted fields and, as the API
// server does, merges stringData into data (stringData wins) and clears it.
func SetSecretDefaults(s *Secret) {
	if s.Metadata.Namespace == "" {
		s.Metadata.Namespace = DefaultNamespace
	}
	if s.Type == "" {
		s.Type = SecretTypeOpaque
	}
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	}
}

// SetPersistentVolumeClaimDefaults fills the claim's defaulted fields.
func SetPersistentVolumeClaimDefaults(c *PersistentVolumeClaim) {
	if c.Metadata.Namespace == "" {
		c.Metadata.Namespace = DefaultNamespace
	}
	if c.Spec.VolumeMode == nil {
		m := "Filesystem"
		c.Spec.VolumeMode = &m
	}
}
