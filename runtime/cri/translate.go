package cri

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Translation from the CRI's configs to the runtime's. What the runtime
// cannot do is refused with an error naming the field, never dropped: a
// limit, a mask or an isolation step the caller asked for either holds or
// the sandbox or container does not start.

func invalid(field, format string, a ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, a...), runtime.ErrInvalidConfig)
}

// sandboxConfig translates RunPodSandbox's config.
func sandboxConfig(id string, c *runtimeapi.PodSandboxConfig) (*runtime.SandboxConfig, error) {
	md := c.GetMetadata()
	if md.GetName() == "" || md.GetNamespace() == "" {
		return nil, invalid("metadata", "name and namespace are required")
	}
	cfg := &runtime.SandboxConfig{
		ID:          id,
		Pod:         runtime.PodKey{Namespace: md.GetNamespace(), Name: md.GetName()},
		UID:         md.GetUid(),
		Hostname:    c.GetHostname(),
		Labels:      c.GetLabels(),
		Annotations: c.GetAnnotations(),
		// The reconciler's view of the runtime leaves these out
		// (WithoutCRI).
		Owner: runtime.OwnerCRI,
	}
	if dns := c.GetDnsConfig(); dns != nil {
		cfg.DNS = runtime.DNSConfig{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	} else {
		// No DNS config: the host's resolver, as containerd does.
		cfg.DNS = runtime.DNSConfig{UseHost: true}
	}
	for i, pm := range c.GetPortMappings() {
		// kubelet lists every container port; only those with a host
		// port are published.
		if pm.GetHostPort() == 0 {
			continue
		}
		proto, ok := map[runtimeapi.Protocol]runtime.Protocol{
			runtimeapi.Protocol_TCP: runtime.ProtocolTCP, runtimeapi.Protocol_UDP: runtime.ProtocolUDP,
			runtimeapi.Protocol_SCTP: runtime.ProtocolSCTP,
		}[pm.GetProtocol()]
		if !ok {
			return nil, invalid(fmt.Sprintf("port_mappings[%d].protocol", i), "%v is not TCP, UDP or SCTP", pm.GetProtocol())
		}
		cfg.Ports = append(cfg.Ports, runtime.PortMapping{Protocol: proto, ContainerPort: pm.GetContainerPort(),
			HostPort: pm.GetHostPort(), HostIP: pm.GetHostIp()})
	}
	lx := c.GetLinux()
	cfg.Sysctls = lx.GetSysctls()
	if p := lx.GetCgroupParent(); p != "" {
		if strings.HasSuffix(p, ".slice") {
			return nil, invalid("linux.cgroup_parent", "%q is a systemd slice; this runtime's cgroup driver is cgroupfs", p)
		}
		if !path.IsAbs(p) || path.Clean(p) != p {
			return nil, invalid("linux.cgroup_parent", "%q is not an absolute, clean cgroup path", p)
		}
		cfg.CgroupParent = p
	}
	ns, err := sandboxNamespaces(lx.GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return nil, err
	}
	cfg.Namespaces = ns
	return cfg, nil
}

// podOrNode maps a namespace a pod may only own or share with the node.
func podOrNode(m runtimeapi.NamespaceMode, field, what string) (runtime.NamespaceMode, error) {
	switch m {
	case runtimeapi.NamespaceMode_POD:
		return runtime.NamespacePod, nil
	case runtimeapi.NamespaceMode_NODE:
		return runtime.NamespaceNode, nil
	}
	return "", invalid(field, "%v: a pod's %s is POD or NODE", m, what)
}

func sandboxNamespaces(o *runtimeapi.NamespaceOption) (runtime.NamespaceOptions, error) {
	const field = "linux.security_context.namespace_options"
	var ns runtime.NamespaceOptions
	var err error
	if ns.Network, err = podOrNode(o.GetNetwork(), field+".network", "network"); err != nil {
		return ns, err
	}
	if ns.IPC, err = podOrNode(o.GetIpc(), field+".ipc", "IPC"); err != nil {
		return ns, err
	}
	switch o.GetPid() {
	case runtimeapi.NamespaceMode_CONTAINER:
		ns.PID = runtime.NamespaceContainer
	case runtimeapi.NamespaceMode_POD:
		ns.PID = runtime.NamespacePod
	case runtimeapi.NamespaceMode_NODE:
		ns.PID = runtime.NamespaceNode
	default:
		return ns, invalid(field+".pid", "%v is not supported (POD, CONTAINER or NODE)", o.GetPid())
	}
	if u := o.GetUsernsOptions(); u != nil && u.GetMode() != runtimeapi.NamespaceMode_NODE {
		return ns, invalid(field+".userns_options", "user namespaces (mode %v) are not supported", u.GetMode())
	}
	return ns, nil
}

// containerInput is what containerConfig needs besides the CRI config.
type containerInput struct {
	ID      string
	Sandbox *sandboxRecord
	Image   string // the reference the runtime starts: the image's ID
	LogPath string // absolute, or "" for the runtime's own place
	// SeccompName maps a Localhost profile's host path to its name in
	// the runtime's profile directory.
	SeccompName func(hostPath string) (string, error)
}

// containerConfig translates CreateContainer's config.
func containerConfig(in containerInput, c *runtimeapi.ContainerConfig) (*runtime.ContainerConfig, error) {
	md := c.GetMetadata()
	if md.GetName() == "" {
		return nil, invalid("metadata.name", "required")
	}
	sb := in.Sandbox.config
	cfg := &runtime.ContainerConfig{
		ID:          in.ID,
		SandboxID:   in.Sandbox.ID,
		Name:        md.GetName(),
		Attempt:     int(md.GetAttempt()),
		Image:       in.Image,
		Command:     c.GetCommand(),
		Args:        c.GetArgs(),
		WorkingDir:  c.GetWorkingDir(),
		Labels:      c.GetLabels(),
		Annotations: c.GetAnnotations(),
		TTY:         c.GetTty(),
		Stdin:       c.GetStdin(),
		StdinOnce:   c.GetStdinOnce(),
		LogPath:     in.LogPath,
	}
	for i, kv := range c.GetEnvs() {
		if kv.GetKey() == "" {
			return nil, invalid(fmt.Sprintf("envs[%d].key", i), "empty")
		}
		cfg.Env = append(cfg.Env, runtime.EnvVar{Name: kv.GetKey(), Value: string(kv.GetValue())})
	}
	if len(c.GetDevices()) > 0 {
		return nil, invalid("devices", "host devices are not supported")
	}
	if len(c.GetCDIDevices()) > 0 {
		return nil, invalid("CDI_devices", "CDI devices are not supported")
	}
	for i, m := range c.GetMounts() {
		mt, err := mount(fmt.Sprintf("mounts[%d]", i), m)
		if err != nil {
			return nil, err
		}
		cfg.Mounts = append(cfg.Mounts, mt)
	}
	lx := c.GetLinux()
	res, err := resources(lx.GetResources())
	if err != nil {
		return nil, err
	}
	cfg.Resources = res
	if adj := lx.GetResources().GetOomScoreAdj(); adj != 0 {
		v := int(adj)
		cfg.OOMScoreAdj = &v
	}
	sec, err := security(in, lx.GetSecurityContext(), sb.GetLinux().GetSecurityContext())
	if err != nil {
		return nil, err
	}
	cfg.Security = *sec
	return cfg, nil
}

func mount(field string, m *runtimeapi.Mount) (runtime.Mount, error) {
	if len(m.GetUidMappings()) > 0 || len(m.GetGidMappings()) > 0 {
		return runtime.Mount{}, invalid(field+".uidMappings", "ID-mapped mounts are not supported")
	}
	if p := m.GetPropagation(); p != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
		return runtime.Mount{}, invalid(field+".propagation", "%v is not supported (only PROPAGATION_PRIVATE)", p)
	}
	if m.GetRecursiveReadOnly() && !m.GetReadonly() {
		return runtime.Mount{}, invalid(field+".recursive_read_only", "needs readonly")
	}
	if m.GetImage() != nil {
		return imageMount(field, m)
	}
	if m.GetImageSubPath() != "" {
		return runtime.Mount{}, invalid(field+".image_sub_path", "goes with image only")
	}
	if m.GetContainerPath() == "" || m.GetHostPath() == "" {
		return runtime.Mount{}, invalid(field, "container_path and host_path are required")
	}
	if !filepath.IsAbs(m.GetContainerPath()) || !filepath.IsAbs(m.GetHostPath()) {
		return runtime.Mount{}, invalid(field, "container_path %q and host_path %q must be absolute", m.GetContainerPath(), m.GetHostPath())
	}
	// A read-only bind is read-only recursively in this runtime, which is
	// what recursive_read_only asks and stricter than a plain readonly.
	return runtime.Mount{HostPath: m.GetHostPath(), ContainerPath: m.GetContainerPath(), ReadOnly: m.GetReadonly()}, nil
}

// imageMount is an image volume (KEP-4639): the image's content,
// read-only. The reference is resolved to an image of the store by the
// caller (CreateContainer), as the container's own image is.
func imageMount(field string, m *runtimeapi.Mount) (runtime.Mount, error) {
	switch {
	case m.GetImage().GetImage() == "":
		return runtime.Mount{}, invalid(field+".image.image", "required")
	case m.GetHostPath() != "":
		return runtime.Mount{}, invalid(field+".host_path", "must be empty with image")
	case !m.GetReadonly():
		// The mount is read-only whatever is asked; saying otherwise is
		// refused rather than silently not honoured (as critest expects).
		return runtime.Mount{}, invalid(field+".readonly", "an image volume is read-only: readonly must be true")
	case !filepath.IsAbs(m.GetContainerPath()):
		return runtime.Mount{}, invalid(field+".container_path", "%q must be absolute", m.GetContainerPath())
	}
	mt := runtime.Mount{Image: m.GetImage().GetImage(), ContainerPath: m.GetContainerPath(), SubPath: m.GetImageSubPath(), ReadOnly: true}
	if err := mt.Validate(); err != nil {
		return runtime.Mount{}, invalid(field+".image_sub_path", "%v", err)
	}
	return mt, nil
}

// resources translates the CFS and memory settings kubelet derives from a
// container's requests and limits. What this runtime does not program is
// refused when set.
func resources(r *runtimeapi.LinuxContainerResources) (runtime.Resources, error) {
	var out runtime.Resources
	if r == nil {
		return out, nil
	}
	const field = "linux.resources"
	if r.GetCpuQuota() > 0 {
		period := r.GetCpuPeriod()
		if period <= 0 {
			period = 100000
		}
		// The runtime works in millicores over its own 100 ms period.
		out.CPULimitMilli = max(1, (r.GetCpuQuota()*1000+period-1)/period)
	}
	if s := r.GetCpuShares(); s > 0 {
		// kubelet's shares = milli*1024/1000; back to millicores.
		out.CPURequestMilli = max(1, s*1000/1024)
	}
	if r.GetMemoryLimitInBytes() < 0 || r.GetCpuQuota() < -1 || r.GetCpuShares() < 0 {
		return out, invalid(field, "negative limit")
	}
	out.MemoryLimit = r.GetMemoryLimitInBytes()
	if r.GetCpusetCpus() != "" || r.GetCpusetMems() != "" {
		return out, invalid(field+".cpuset_cpus", "cpusets are not supported")
	}
	if len(r.GetUnified()) > 0 {
		return out, invalid(field+".unified", "raw cgroup v2 settings are not supported")
	}
	for i, h := range r.GetHugepageLimits() {
		// kubelet sends a zero limit for every huge page size to deny
		// them; that holds without a hugetlb limit only when the host
		// reserved none of that size.
		if h.GetLimit() != 0 || hugePagesReserved(h.GetPageSize()) {
			return out, invalid(fmt.Sprintf("%s.hugepage_limits[%d]", field, i), "huge page limits are not supported (%s: %d bytes)", h.GetPageSize(), h.GetLimit())
		}
	}
	if s := r.GetMemorySwapLimitInBytes(); s != 0 && s != r.GetMemoryLimitInBytes() {
		return out, invalid(field+".memory_swap_limit_in_bytes", "swap beyond the memory limit is not supported")
	}
	return out, nil
}

// kubelet's masked and read-only paths (procMount Default) are the ones
// this runtime always applies to unprivileged containers, beneath its
// own procfs and sysfs; others cannot be applied.
var (
	defaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
		"/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

func security(in containerInput, s *runtimeapi.LinuxContainerSecurityContext, sbs *runtimeapi.LinuxSandboxSecurityContext) (*runtime.SecurityConfig, error) {
	const field = "linux.security_context"
	out := &runtime.SecurityConfig{
		Privileged:               s.GetPrivileged(),
		ReadOnlyRootfs:           s.GetReadonlyRootfs(),
		SupplementalGroups:       s.GetSupplementalGroups(),
		AllowPrivilegeEscalation: !s.GetNoNewPrivs(),
		RunAsUserName:            s.GetRunAsUsername(),
	}
	if out.Privileged && !sbs.GetPrivileged() {
		return nil, invalid(field+".privileged", "a privileged container needs a privileged sandbox")
	}
	if v := s.GetRunAsUser(); v != nil {
		u := v.GetValue()
		out.RunAsUser = &u
	}
	if v := s.GetRunAsGroup(); v != nil {
		if out.RunAsUser == nil && out.RunAsUserName == "" {
			return nil, invalid(field+".run_as_group", "set without run_as_user or run_as_username")
		}
		g := v.GetValue()
		out.RunAsGroup = &g
	}
	if s.GetSupplementalGroupsPolicy() != runtimeapi.SupplementalGroupsPolicy_Merge {
		return nil, invalid(field+".supplemental_groups_policy", "%v is not supported (Merge only)", s.GetSupplementalGroupsPolicy())
	}
	if c := s.GetCapabilities(); c != nil {
		if len(c.GetAddAmbientCapabilities()) > 0 {
			return nil, invalid(field+".capabilities.add_ambient_capabilities", "ambient capabilities are not supported")
		}
		out.CapAdd, out.CapDrop = c.GetAddCapabilities(), c.GetDropCapabilities()
	}
	if !out.Privileged {
		for _, p := range s.GetMaskedPaths() {
			if !slices.Contains(defaultMaskedPaths, p) {
				return nil, invalid(field+".masked_paths", "%q: this runtime masks only its fixed list beneath /proc and /sys", p)
			}
		}
		for _, p := range s.GetReadonlyPaths() {
			if !slices.Contains(defaultReadonlyPaths, p) {
				return nil, invalid(field+".readonly_paths", "%q: this runtime makes only its fixed list beneath /proc read-only", p)
			}
		}
	}
	if err := containerNamespaces(s.GetNamespaceOptions(), sbs.GetNamespaceOptions()); err != nil {
		return nil, err
	}
	sp := s.GetSeccomp()
	switch {
	case sp == nil && s.GetSeccompProfilePath() != "":
		// The deprecated string form.
		p := s.GetSeccompProfilePath()
		switch {
		case p == "unconfined":
			out.Seccomp.Type = "Unconfined"
		case p == "runtime/default" || p == "docker/default":
			out.Seccomp.Type = "RuntimeDefault"
		case strings.HasPrefix(p, "localhost/"):
			sp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: strings.TrimPrefix(p, "localhost/")}
		default:
			return nil, invalid(field+".seccomp_profile_path", "%q is not unconfined, runtime/default or localhost/<path>", p)
		}
	case sp == nil:
		// The CRI's nil profile is unconfined (kubelet sends RuntimeDefault
		// with seccompDefault: true).
		out.Seccomp.Type = "Unconfined"
	}
	if sp != nil {
		switch sp.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			out.Seccomp.Type = "RuntimeDefault"
		case runtimeapi.SecurityProfile_Unconfined:
			out.Seccomp.Type = "Unconfined"
		case runtimeapi.SecurityProfile_Localhost:
			ref := sp.GetLocalhostRef()
			if !filepath.IsAbs(ref) {
				return nil, invalid(field+".seccomp.localhost_ref", "%q is not an absolute path", ref)
			}
			name, err := in.SeccompName(ref)
			if err != nil {
				return nil, fmt.Errorf("%s.seccomp.localhost_ref: %w", field, err)
			}
			out.Seccomp = runtime.SeccompProfile{Type: "Localhost", LocalhostProfile: name}
		}
	}
	if a := s.GetApparmor(); a != nil && a.GetProfileType() == runtimeapi.SecurityProfile_Localhost {
		return nil, invalid(field+".apparmor", "AppArmor profiles are not supported")
	}
	if p := s.GetApparmorProfile(); p != "" && p != "unconfined" && p != "runtime/default" {
		return nil, invalid(field+".apparmor_profile", "AppArmor profiles are not supported")
	}
	return out, nil
}

// containerNamespaces checks a container's namespaces against its
// sandbox's: this runtime sets them per pod.
func containerNamespaces(c, sb *runtimeapi.NamespaceOption) error {
	const field = "linux.security_context.namespace_options"
	if c == nil {
		return nil
	}
	if c.GetNetwork() != sb.GetNetwork() {
		return invalid(field+".network", "%v differs from the sandbox's %v", c.GetNetwork(), sb.GetNetwork())
	}
	if c.GetIpc() != sb.GetIpc() {
		return invalid(field+".ipc", "%v differs from the sandbox's %v", c.GetIpc(), sb.GetIpc())
	}
	if c.GetPid() != sb.GetPid() {
		return invalid(field+".pid", "%v differs from the sandbox's %v (set per pod here)", c.GetPid(), sb.GetPid())
	}
	if u := c.GetUsernsOptions(); u != nil && u.GetMode() != runtimeapi.NamespaceMode_NODE {
		return invalid(field+".userns_options", "user namespaces are not supported")
	}
	return nil
}
