package spec

import (
	"path"
	"strings"
)

// Rules that keep a manifest from weakening the container's isolation
// or asking for something that fails at every start.

// runtimeMounts are the paths the runtime itself mounts in every
// container, with why a volume may not go over them.
var runtimeMounts = []struct {
	path    string
	subtree bool // everything below is refused too
	why     string
}{
	{"/", false, "a volume over the root would hide the container's image"},
	{"/proc", true, "the runtime mounts procfs there and masks parts of it; a volume over or inside it would undo the masks or fail every start"},
	{"/sys", true, "the runtime mounts sysfs there read-only and masks parts of it; a volume over or inside it would undo that or fail every start"},
	{"/dev", false, "the runtime builds /dev (device nodes, /dev/pts, /dev/shm); mount below it, such as at /dev/shm, not over it"},
}

// runtimeMountConflict returns why a container path may not be a mount
// target, or "".
func runtimeMountConflict(p string) string {
	for _, m := range runtimeMounts {
		if p == m.path || (m.subtree && strings.HasPrefix(p, m.path+"/")) {
			return m.why
		}
	}
	return ""
}

// validateContainerPaths refuses paths that would put the container on
// the runtime's own mounts.
func validateContainerPaths(l *errList, cp fieldPath, c *Container) {
	// A working directory in procfs is the shape of CVE-2024-21626: a
	// /proc/self/fd/N that names a directory the runtime held open leaves
	// the process outside its root. Nothing legitimate works in /proc.
	if w := c.WorkingDir; w == "/proc" || strings.HasPrefix(w, "/proc/") {
		l.add(cp.Field("workingDir"), "%q is inside /proc: a working directory on procfs (such as /proc/self/fd/N) can leave the container outside its root filesystem", w)
	}
	for i, m := range c.VolumeMounts {
		if why := runtimeMountConflict(path.Clean(m.MountPath)); why != "" {
			l.add(cp.Field("volumeMounts").Index(i).Field("mountPath"), "%q cannot be a mount point: %s", m.MountPath, why)
		}
	}
	if t := c.TerminationMessagePath; t != "" {
		if why := runtimeMountConflict(t); why != "" {
			l.add(cp.Field("terminationMessagePath"), "%q cannot be a mount point (the termination message file is bound there): %s", t, why)
		}
	}
}

// AppArmor. Nodes running pelagos-agent have no AppArmor support in the
// agent: no profile is ever loaded. RuntimeDefault and Unconfined both mean
// "no AppArmor profile" here (the container is confined by its seccomp
// profile, capabilities, masked paths and namespaces); a Localhost profile
// names a confinement the agent cannot apply, so it is refused rather than
// silently dropped.

// AppArmorAnnotationPrefix is the beta annotation that preceded
// securityContext.appArmorProfile; the rest of the key is a container name.
const AppArmorAnnotationPrefix = "container.apparmor.security.beta.kubernetes.io/"

const appArmorRefusal = "AppArmor profiles are not supported by pelagos-agent (it loads none, so a Localhost profile would silently not apply); use RuntimeDefault, or confine the container with a Localhost seccompProfile"

func validateAppArmor(l *errList, p fieldPath, ap *AppArmorProfile) {
	if ap == nil {
		return
	}
	if ap.Type == AppArmorLocalhost {
		l.unsupported(p.Field("type"), "%s", appArmorRefusal)
		return
	}
	if ap.LocalhostProfile != nil {
		l.add(p.Field("localhostProfile"), "may be set only when type is Localhost")
	}
}

func validateAppArmorAnnotations(l *errList, ap fieldPath, p *Pod) {
	for k, v := range p.Metadata.Annotations {
		name, ok := strings.CutPrefix(k, AppArmorAnnotationPrefix)
		if !ok {
			continue
		}
		kp := ap.Key(k)
		if !hasContainer(p, name) {
			l.add(kp, "names container %q, which the pod does not have", name)
		}
		switch {
		case v == "runtime/default", v == "unconfined":
		case strings.HasPrefix(v, "localhost/"):
			l.unsupported(kp, "%q: %s", v, appArmorRefusal)
		default:
			l.add(kp, "%q is not one of: runtime/default, unconfined, localhost/<profile>", v)
		}
	}
}

func hasContainer(p *Pod, name string) bool {
	for _, list := range [][]Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return true
			}
		}
	}
	return false
}

// seLinuxRefusal explains the refused SELinux fields.
const seLinuxRefusal = "no SELinux label is ever applied here, so the setting would silently not hold"
