package spec

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/go-playground/validator/v10"
	"k8s.io/apimachinery/pkg/api/validate/content"
)

// Validation has two layers. Field-local rules are `validate` struct tags
// checked by validator/v10 with custom tags registered below (dns1123label,
// abspath, ...), whose messages reuse Kubernetes' own wording from
// k8s.io/apimachinery. Rules that span fields (unique names, volume
// references, limit >= request, hostPort clashes, sysctls) are Go code in
// this file. Both report every problem, never just the first.

// Ranges Kubernetes allows for user and group IDs.
const (
	maxID = 1<<31 - 1
)

// knownCapabilities are the Linux capability names (without CAP_).
var knownCapabilities = map[string]bool{}

func init() {
	for _, c := range strings.Fields(`CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
		LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO
		SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
		AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON
		BPF CHECKPOINT_RESTORE`) {
		knownCapabilities[c] = true
	}
}

// supportedFieldRefs are the downward-API paths env fieldRef may use.
var supportedFieldRefs = map[string]bool{
	"metadata.name": true, "metadata.namespace": true, "metadata.uid": true,
	"spec.nodeName": true, "spec.serviceAccountName": true,
	"status.hostIP": true, "status.hostIPs": true, "status.podIP": true, "status.podIPs": true,
}

var (
	validateOnce sync.Once
	validate     *validator.Validate
	// tagMessages explain each custom tag's failure for a value.
	tagMessages = map[string]func(v string) []string{
		"dns1123label":     content.IsDNS1123Label,
		"dns1123subdomain": content.IsDNS1123Subdomain,
		"envvarname":       isEnvVarName,
		"portname":         isValidPortName,
		"httpheader":       isHTTPHeaderName,
		"configkey":        isConfigMapKey,
		"abspath":          checkAbsPath,
		"dirpath":          checkDirPath,
		"relpath":          checkRelPath,
		"volfile":          checkVolumeFilePath,
		"imageref":         checkImageRef,
		"dnssearch":        checkDNSSearch,
	}
)

func validatorInstance() *validator.Validate {
	validateOnce.Do(func() {
		v := validator.New(validator.WithRequiredStructEnabled())
		v.RegisterTagNameFunc(func(f reflect.StructField) string {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				return ""
			}
			return name
		})
		if err := v.RegisterValidation("range", inRange); err != nil {
			panic(fmt.Sprintf("spec: registering validation range: %v", err))
		}
		for tag, check := range tagMessages {
			check := check
			if err := v.RegisterValidation(tag, func(fl validator.FieldLevel) bool {
				return len(check(fl.Field().String())) == 0
			}); err != nil {
				panic(fmt.Sprintf("spec: registering validation %s: %v", tag, err))
			}
		}
		validate = v
	})
	return validate
}

func checkAbsPath(p string) []string {
	if !strings.HasPrefix(p, "/") {
		return []string{"must be an absolute path"}
	}
	if path.Clean(p) != p {
		return []string{fmt.Sprintf("must be a clean path (%s)", path.Clean(p))}
	}
	return nil
}

// checkDirPath is checkAbsPath for a directory, which may end in one
// slash as Kubernetes allows (kubeadm and GCE static pods write
// mountPath: /etc/kubernetes/).
func checkDirPath(p string) []string {
	if p != "/" && strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "//") {
		p = strings.TrimSuffix(p, "/")
	}
	return checkAbsPath(p)
}

// checkRelPath refuses what could escape the directory it is joined to.
func checkRelPath(p string) []string {
	if strings.HasPrefix(p, "/") {
		return []string{"must be a relative path"}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return []string{"must not contain '..'"}
		}
	}
	return nil
}

// checkVolumeFilePath is checkRelPath for the files of a projected
// volume, which also may not start with ".." (the "..data" layout of the
// writer lives there).
func checkVolumeFilePath(p string) []string {
	if msgs := checkRelPath(p); len(msgs) > 0 {
		return msgs
	}
	if strings.HasPrefix(p, "..") {
		return []string{"must not start with '..'"}
	}
	return nil
}

func checkImageRef(s string) []string {
	if strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\n\r") {
		return []string{"must not contain whitespace"}
	}
	return nil
}

func checkDNSSearch(s string) []string {
	return content.IsDNS1123Subdomain(strings.TrimSuffix(s, "."))
}

// validator's namespace is "Pod.spec.containers[0].name"; embedded structs
// add their Go type name ("Pod.spec.volumes[0].VolumeSource.hostPath.path").
// jsonPath drops the root and those.
func jsonPath(ns string) string {
	p := parsePath(ns)
	var out fieldPath
	for i, e := range p {
		if i == 0 {
			continue
		}
		if e.kind == 'f' && e.field != "" && e.field[0] >= 'A' && e.field[0] <= 'Z' {
			continue
		}
		out = append(out, e)
	}
	return out.String()
}

func structErrors(obj any) FieldErrors {
	var out FieldErrors
	err := validatorInstance().Struct(obj)
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		if err != nil {
			out = append(out, &FieldError{Msg: err.Error(), Err: ErrInvalid})
		}
		return out
	}
	for _, fe := range verrs {
		out = append(out, &FieldError{Path: jsonPath(fe.Namespace()), Msg: tagMessage(fe), Err: ErrInvalid})
	}
	return out
}

func tagMessage(fe validator.FieldError) string {
	val := fe.Value()
	for rv := reflect.ValueOf(val); rv.IsValid() && rv.Kind() == reflect.Pointer; rv = rv.Elem() {
		if rv.IsNil() {
			break
		}
		val = rv.Elem().Interface()
	}
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min", "max":
		word := "at least"
		if fe.Tag() == "max" {
			word = "at most"
		}
		switch fe.Kind() {
		case reflect.Slice, reflect.Map:
			return fmt.Sprintf("must have %s %s entries", word, fe.Param())
		case reflect.String:
			return fmt.Sprintf("must be %s %s characters long", word, fe.Param())
		}
		return fmt.Sprintf("%v is out of range: must be %s %s", val, word, fe.Param())
	case "range":
		return fmt.Sprintf("%v is out of range: must be %s", val, rangeText(fe.Param()))
	case "oneof":
		return fmt.Sprintf("%q is not one of: %s", fmt.Sprint(val), strings.ReplaceAll(fe.Param(), " ", ", "))
	case "ip":
		return fmt.Sprintf("%q is not an IP address", fmt.Sprint(val))
	}
	if f, ok := tagMessages[fe.Tag()]; ok {
		msgs := f(fmt.Sprint(val))
		return fmt.Sprintf("%q is invalid: %s", fmt.Sprint(val), strings.Join(msgs, "; "))
	}
	return fmt.Sprintf("%q fails rule %s", fmt.Sprint(val), fe.Tag())
}

// errList collects cross-field problems.
type errList struct{ errs FieldErrors }

func (l *errList) add(p fieldPath, format string, args ...any) {
	l.errs = append(l.errs, &FieldError{Path: p.String(), Msg: fmt.Sprintf(format, args...), Err: ErrInvalid})
}

func (l *errList) unsupported(p fieldPath, format string, args ...any) {
	l.errs = append(l.errs, &FieldError{Path: p.String(), Msg: fmt.Sprintf(format, args...), Err: ErrUnsupported})
}

// ValidationOptions relax rules that an operator may opt out of.
type ValidationOptions struct {
	// AllowUnsafeSysctls admits namespaced sysctls outside the safe set
	// (the agent's --allow-unsafe-sysctls). Sysctls that are not namespaced
	// are refused regardless: they would change the whole node.
	AllowUnsafeSysctls bool
}

// ValidatePod checks a defaulted pod with the default (strict) options and
// returns every problem, with field paths but without File or Doc
// (ParseFile fills those).
func ValidatePod(p *Pod) FieldErrors { return ValidatePodWithOptions(p, ValidationOptions{}) }

// ValidatePodWithOptions is ValidatePod with relaxations.
func ValidatePodWithOptions(p *Pod, o ValidationOptions) FieldErrors {
	errs := structErrors(p)
	l := &errList{}
	root := fieldPath{}
	validateMeta(l, root.Field("metadata"), &p.Metadata)
	s := &p.Spec
	validateAppArmorAnnotations(l, root.Field("metadata").Field("annotations"), p)
	sp := root.Field("spec")

	volumes := map[string]*Volume{}
	for i := range s.Volumes {
		v := &s.Volumes[i]
		vp := sp.Field("volumes").Index(i)
		if _, dup := volumes[v.Name]; dup && v.Name != "" {
			l.add(vp.Field("name"), "duplicate volume name %q", v.Name)
		}
		volumes[v.Name] = v
		validateVolume(l, vp, v)
	}

	containers := map[string]bool{}
	for _, list := range [][]Container{s.InitContainers, s.Containers} {
		for i := range list {
			containers[list[i].Name] = true
		}
	}
	for i := range s.Volumes {
		validateVolumeRefs(l, sp.Field("volumes").Index(i), &s.Volumes[i], containers)
	}
	names := map[string]string{}
	// Published ports by "port/protocol"; an empty or unspecified hostIP
	// binds every address, so it clashes with any hostIP on that port.
	type published struct{ ip, path string }
	hostPorts := map[string][]published{}
	s.eachContainer(func(field string, i int, c *Container) {
		cp := sp.Field(field).Index(i)
		if prev, dup := names[c.Name]; dup && c.Name != "" {
			l.add(cp.Field("name"), "duplicate container name %q (also %s)", c.Name, prev)
		}
		names[c.Name] = cp.String()
		validateContainer(l, cp, c, s, volumes, containers, field == "initContainers")
		for j, pt := range c.Ports {
			if pt.HostPort == 0 {
				continue
			}
			key := fmt.Sprintf("%d/%s", pt.HostPort, pt.Protocol)
			pp := cp.Field("ports").Index(j)
			for _, prev := range hostPorts[key] {
				if prev.ip == pt.HostIP || wildcardIP(prev.ip) || wildcardIP(pt.HostIP) {
					l.add(pp.Field("hostPort"), "hostPort %d/%s is already used by %s", pt.HostPort, pt.Protocol, prev.path)
					break
				}
			}
			hostPorts[key] = append(hostPorts[key], published{pt.HostIP, pp.String()})
			if s.HostNetwork && pt.HostPort != pt.ContainerPort {
				l.add(pp.Field("hostPort"), "must equal containerPort (%d) when hostNetwork is true", pt.ContainerPort)
			}
		}
	})

	if s.AutomountServiceAccountToken != nil && *s.AutomountServiceAccountToken {
		l.unsupported(sp.Field("automountServiceAccountToken"), "true is not supported by pelagos-agent: no API server issues service-account tokens here; set false or delete this line")
	}
	if s.HostPID && s.ShareProcessNamespace != nil && *s.ShareProcessNamespace {
		l.add(sp.Field("shareProcessNamespace"), "cannot be true together with hostPID")
	}
	if s.DNSPolicy == DNSNone && (s.DNSConfig == nil || len(s.DNSConfig.Nameservers) == 0) {
		l.add(sp.Field("dnsConfig").Field("nameservers"), "must list at least one nameserver when dnsPolicy is None")
	}
	if s.Hostname != "" && s.HostNetwork {
		l.add(sp.Field("hostname"), "cannot be set with hostNetwork: the pod uses the node's hostname")
	}
	if sc := s.SecurityContext; sc != nil {
		scp := sp.Field("securityContext")
		validateIDs(l, scp, sc.RunAsUser, sc.RunAsGroup)
		if sc.FSGroup != nil && (*sc.FSGroup < 0 || *sc.FSGroup > maxID) {
			l.add(scp.Field("fsGroup"), "%d is out of range: must be 0..%d", *sc.FSGroup, maxID)
		}
		if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			l.add(scp.Field("runAsUser"), "is 0 (root) but runAsNonRoot is true")
		}
		validateSeccomp(l, scp.Field("seccompProfile"), sc.SeccompProfile)
		validateAppArmor(l, scp.Field("appArmorProfile"), sc.AppArmorProfile)
		validateSysctls(l, scp, sc.Sysctls, s, o)
	}
	for k, v := range s.NodeSelector {
		validateLabel(l, sp.Field("nodeSelector"), k, v)
	}
	validateScheduling(l, sp, s)
	validatePodResources(l, sp, s)
	if s.DNSConfig != nil {
		for i, o := range s.DNSConfig.Options {
			if strings.ContainsAny(o.Name, " \t\n:") || (o.Value != nil && strings.ContainsAny(*o.Value, " \t\n")) {
				l.add(sp.Field("dnsConfig").Field("options").Index(i), "option %q must not contain blanks or ':'", o.Name)
			}
		}
	}
	errs = append(errs, l.errs...)
	sortErrors(errs)
	return errs
}

func wildcardIP(ip string) bool {
	if ip == "" {
		return true
	}
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsUnspecified()
}

func sortErrors(errs FieldErrors) {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Path < errs[j].Path })
}

func validateMeta(l *errList, mp fieldPath, m *ObjectMeta) {
	for k, v := range m.Labels {
		validateLabel(l, mp.Field("labels"), k, v)
	}
	total := 0
	for k, v := range m.Annotations {
		total += len(k) + len(v)
		// As Kubernetes checks them: a qualified name whose case does not
		// matter (podman writes io.kubernetes.cri-o.TTY/app).
		if msgs := content.IsLabelKey(strings.ToLower(k)); len(msgs) > 0 {
			l.add(mp.Field("annotations").Key(k), "key %q is invalid: %s", k, strings.Join(msgs, "; "))
		}
	}
	if total > 256*1024 {
		l.add(mp.Field("annotations"), "total size %d bytes exceeds 262144", total)
	}
}

func validateLabel(l *errList, p fieldPath, k, v string) {
	if msgs := content.IsLabelKey(k); len(msgs) > 0 {
		l.add(p.Key(k), "key %q is invalid: %s", k, strings.Join(msgs, "; "))
	}
	if msgs := content.IsLabelValue(v); len(msgs) > 0 {
		l.add(p.Key(k), "value %q is invalid: %s", v, strings.Join(msgs, "; "))
	}
}

// volumeTypes names the supported volume sources, for messages.
const volumeTypes = "hostPath, emptyDir, configMap, secret, downwardAPI, projected, persistentVolumeClaim, image"

func validateVolume(l *errList, vp fieldPath, v *Volume) {
	n := 0
	for _, set := range []bool{v.HostPath != nil, v.EmptyDir != nil, v.Secret != nil, v.ConfigMap != nil,
		v.DownwardAPI != nil, v.Projected != nil, v.PersistentVolumeClaim != nil, v.Image != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		l.add(vp, "must set exactly one of %s", volumeTypes)
	case n > 1:
		l.add(vp, "sets %d volume types; exactly one of %s is allowed", n, volumeTypes)
	}
	if v.Secret != nil {
		validateItemPaths(l, vp.Field("secret").Field("items"), v.Secret.Items, map[string]string{})
	}
	if v.ConfigMap != nil {
		validateItemPaths(l, vp.Field("configMap").Field("items"), v.ConfigMap.Items, map[string]string{})
	}
	if pr := v.Projected; pr != nil {
		pp := vp.Field("projected")
		paths := map[string]string{}
		for i, src := range pr.Sources {
			sp := pp.Field("sources").Index(i)
			n := 0
			for _, set := range []bool{src.Secret != nil, src.ConfigMap != nil, src.DownwardAPI != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				l.add(sp, "must set exactly one of secret, configMap, downwardAPI, found %d", n)
			}
			switch {
			case src.Secret != nil:
				validateItemPaths(l, sp.Field("secret").Field("items"), src.Secret.Items, paths)
			case src.ConfigMap != nil:
				validateItemPaths(l, sp.Field("configMap").Field("items"), src.ConfigMap.Items, paths)
			case src.DownwardAPI != nil:
				validateDownwardFilePaths(l, sp.Field("downwardAPI").Field("items"), src.DownwardAPI.Items, paths)
			}
		}
	}
	if v.DownwardAPI != nil {
		validateDownwardFilePaths(l, vp.Field("downwardAPI").Field("items"), v.DownwardAPI.Items, map[string]string{})
	}
	if v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil {
		if q := v.EmptyDir.SizeLimit; q.Sign() <= 0 {
			l.add(vp.Field("emptyDir").Field("sizeLimit"), "%s must be positive", q.String())
		} else if msg := bytesRange(*q); msg != "" {
			l.add(vp.Field("emptyDir").Field("sizeLimit"), "%s", msg)
		}
	}
	if v.HostPath != nil {
		if t := v.HostPath.Type; t != nil {
			switch *t {
			case HostPathUnset, HostPathDirectoryOrCreate, HostPathDirectory, HostPathFileOrCreate, HostPathFile,
				HostPathSocket, HostPathCharDev, HostPathBlockDev:
			default:
				l.add(vp.Field("hostPath").Field("type"), "%q is not one of: \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice", *t)
			}
		}
		for _, seg := range strings.Split(v.HostPath.Path, "/") {
			if seg == ".." {
				l.add(vp.Field("hostPath").Field("path"), "must not contain '..'")
				break
			}
		}
	}
}

// validateItemPaths refuses two files at one path of a volume (seen holds
// the paths of the volume's other sources, with where they came from).
func validateItemPaths(l *errList, p fieldPath, items []KeyToPath, seen map[string]string) {
	for i, it := range items {
		checkDuplicatePath(l, p.Index(i).Field("path"), it.Path, seen)
	}
}

func validateDownwardFilePaths(l *errList, p fieldPath, items []DownwardAPIVolumeFile, seen map[string]string) {
	for i, it := range items {
		checkDuplicatePath(l, p.Index(i).Field("path"), it.Path, seen)
	}
}

func checkDuplicatePath(l *errList, p fieldPath, file string, seen map[string]string) {
	if file == "" {
		return
	}
	clean := path.Clean(file)
	if prev, dup := seen[clean]; dup {
		l.add(p, "%q is also written by %s: conflicting duplicate paths", file, prev)
		return
	}
	seen[clean] = p.String()
}

// validateVolumeRefs checks what a volume's downward-API files refer to.
func validateVolumeRefs(l *errList, vp fieldPath, v *Volume, containers map[string]bool) {
	check := func(fp fieldPath, files []DownwardAPIVolumeFile) {
		for i := range files {
			validateDownwardFile(l, fp.Index(i), &files[i], containers)
		}
	}
	if v.DownwardAPI != nil {
		check(vp.Field("downwardAPI").Field("items"), v.DownwardAPI.Items)
	}
	if v.Projected != nil {
		for i, src := range v.Projected.Sources {
			if src.DownwardAPI != nil {
				check(vp.Field("projected").Field("sources").Index(i).Field("downwardAPI").Field("items"), src.DownwardAPI.Items)
			}
		}
	}
}

// volumeFieldRefs are the pod fields a downward-API file may hold, beside
// one label or annotation (metadata.labels['k']).
var volumeFieldRefs = map[string]bool{
	"metadata.name": true, "metadata.namespace": true, "metadata.uid": true,
	"metadata.labels": true, "metadata.annotations": true,
}

func validateDownwardFile(l *errList, p fieldPath, f *DownwardAPIVolumeFile, containers map[string]bool) {
	if (f.FieldRef == nil) == (f.ResourceFieldRef == nil) {
		l.add(p, "must set exactly one of fieldRef, resourceFieldRef")
	}
	if fr := f.FieldRef; fr != nil {
		frp := p.Field("fieldRef")
		if fr.APIVersion != "" && fr.APIVersion != "v1" {
			l.add(frp.Field("apiVersion"), "%q is not supported: use v1", fr.APIVersion)
		}
		if !volumeFieldRefs[fr.FieldPath] && !labelOrAnnotationRef(fr.FieldPath) {
			l.add(frp.Field("fieldPath"), "%q is not a supported field path for a volume: use metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations or one label or annotation (metadata.labels['key'])", fr.FieldPath)
		}
	}
	if rf := f.ResourceFieldRef; rf != nil {
		validateResourceFieldRef(l, p.Field("resourceFieldRef"), rf, containers, true)
	}
}

// resourceFieldDivisors are the divisors Kubernetes accepts, by resource.
var resourceFieldDivisors = map[string]map[string]bool{
	"cpu":               {"1m": true, "1": true},
	"memory":            bytesDivisors,
	"ephemeral-storage": bytesDivisors,
}

var bytesDivisors = map[string]bool{"1": true, "1k": true, "1M": true, "1G": true, "1T": true, "1P": true, "1E": true,
	"1Ki": true, "1Mi": true, "1Gi": true, "1Ti": true, "1Pi": true, "1Ei": true}

// validateResourceFieldRef checks a resourceFieldRef; in a volume it must
// name its container, in env it defaults to the container itself.
func validateResourceFieldRef(l *errList, p fieldPath, rf *ResourceFieldSelector, containers map[string]bool, volume bool) {
	switch {
	case rf.ContainerName == "" && volume:
		l.add(p.Field("containerName"), "is required in a volume: name the container whose resources the file shows")
	case rf.ContainerName != "" && !containers[rf.ContainerName]:
		l.add(p.Field("containerName"), "%q is not a container of this pod", rf.ContainerName)
	}
	kind, name, _ := strings.Cut(rf.Resource, ".")
	divisors := resourceFieldDivisors[name]
	switch {
	case rf.Resource == "":
		return // "is required" comes from the struct rules
	case (kind == "limits" || kind == "requests") && strings.HasPrefix(name, "hugepages-"):
		l.unsupported(p.Field("resource"), "%q is not supported by pelagos-agent: hugepages are not a resource here", rf.Resource)
		return
	case (kind != "limits" && kind != "requests") || divisors == nil:
		l.add(p.Field("resource"), "%q is not one of: limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage", rf.Resource)
		return
	}
	if d := rf.Divisor; d != nil && !d.IsZero() && !divisors[d.String()] {
		allowed := "1m, 1"
		if name != "cpu" {
			allowed = "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei"
		}
		l.add(p.Field("divisor"), "%s is not a divisor for %s: use one of %s", d.String(), name, allowed)
	}
}

func validateContainer(l *errList, cp fieldPath, c *Container, s *PodSpec, volumes map[string]*Volume, containers map[string]bool, init bool) {
	sidecar := false
	if rp := c.RestartPolicy; rp != nil {
		switch {
		case !init:
			l.unsupported(cp.Field("restartPolicy"), "per-container restart policies are not supported by pelagos-agent: delete this line; the pod's restartPolicy applies")
		case *rp == ContainerRestartPolicyAlways:
			sidecar = true
		default:
			l.add(cp.Field("restartPolicy"), "%q is not supported: the only value for an init container is Always (a native sidecar)", *rp)
		}
	}
	resized := map[ResourceName]bool{}
	for i, rp := range c.ResizePolicy {
		if resized[rp.ResourceName] && rp.ResourceName != "" {
			l.add(cp.Field("resizePolicy").Index(i).Field("resourceName"), "duplicate resource %q", rp.ResourceName)
		}
		resized[rp.ResourceName] = true
	}
	validateContainerPaths(l, cp, c)
	if init && !sidecar {
		for _, pr := range []struct {
			name string
			set  bool
		}{{"livenessProbe", c.LivenessProbe != nil}, {"readinessProbe", c.ReadinessProbe != nil},
			{"startupProbe", c.StartupProbe != nil}, {"lifecycle", c.Lifecycle != nil}} {
			if pr.set {
				l.add(cp.Field(pr.name), "must not be set on an init container")
			}
		}
	}
	for i, e := range c.Env {
		ep := cp.Field("env").Index(i)
		if e.ValueFrom == nil {
			continue
		}
		if e.Value != "" {
			l.add(ep, "sets both value and valueFrom")
		}
		vf := e.ValueFrom
		n := 0
		for _, set := range []bool{vf.FieldRef != nil, vf.ResourceFieldRef != nil, vf.ConfigMapKeyRef != nil, vf.SecretKeyRef != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			l.add(ep.Field("valueFrom"), "must set exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef")
		}
		if rf := vf.ResourceFieldRef; rf != nil {
			validateResourceFieldRef(l, ep.Field("valueFrom").Field("resourceFieldRef"), rf, containers, false)
		}
		if fr := vf.FieldRef; fr != nil {
			fp := ep.Field("valueFrom").Field("fieldRef")
			if fr.APIVersion != "" && fr.APIVersion != "v1" {
				l.add(fp.Field("apiVersion"), "%q is not supported: use v1", fr.APIVersion)
			}
			if !supportedFieldRefs[fr.FieldPath] && !labelOrAnnotationRef(fr.FieldPath) {
				l.add(fp.Field("fieldPath"), "%q is not a supported field path", fr.FieldPath)
			}
		}
	}
	for i, e := range c.EnvFrom {
		if (e.ConfigMapRef == nil) == (e.SecretRef == nil) {
			l.add(cp.Field("envFrom").Index(i), "must set exactly one of configMapRef, secretRef")
		}
	}
	portNames := map[string]bool{}
	for i, pt := range c.Ports {
		if pt.Name != "" {
			if portNames[pt.Name] {
				l.add(cp.Field("ports").Index(i).Field("name"), "duplicate port name %q", pt.Name)
			}
			portNames[pt.Name] = true
		}
	}
	validateRequirements(l, cp.Field("resources"), &c.Resources, func(qp fieldPath, name ResourceName) bool {
		switch name {
		case ResourceCPU, ResourceMemory, ResourceEphemeralStorage:
			return true
		}
		l.unsupported(qp, "resource %q is not supported: use cpu, memory, ephemeral-storage", name)
		return false
	})
	requestsWithinLimits(l, cp.Field("resources"), &c.Resources)
	mounts := map[string]bool{}
	for i, m := range c.VolumeMounts {
		mp := cp.Field("volumeMounts").Index(i)
		if m.Name != "" && volumes[m.Name] == nil {
			l.add(mp.Field("name"), "volume %q is not declared in spec.volumes", m.Name)
		}
		if mounts[path.Clean(m.MountPath)] && m.MountPath != "" {
			l.add(mp.Field("mountPath"), "%q is mounted twice in this container", m.MountPath)
		}
		mounts[path.Clean(m.MountPath)] = true
		if m.SubPath != "" {
			if msgs := checkRelPath(m.SubPath); len(msgs) > 0 {
				l.add(mp.Field("subPath"), "%q %s", m.SubPath, msgs[0])
			}
		}
	}
	for _, pr := range []struct {
		name     string
		p        *Probe
		oneShot  bool // successThreshold must be 1
		portsReq bool
	}{{"livenessProbe", c.LivenessProbe, true, true}, {"readinessProbe", c.ReadinessProbe, false, true},
		{"startupProbe", c.StartupProbe, true, true}} {
		if pr.p == nil {
			continue
		}
		pp := cp.Field(pr.name)
		validateHandler(l, pp, pr.p.Exec != nil, pr.p.HTTPGet, pr.p.TCPSocket != nil, pr.p.GRPC != nil, false, portNames)
		if pr.p.TCPSocket != nil {
			validatePort(l, pp.Field("tcpSocket").Field("port"), pr.p.TCPSocket.Port, portNames)
		}
		if pr.oneShot && pr.p.SuccessThreshold > 1 {
			l.add(pp.Field("successThreshold"), "must be 1 for a %s", pr.name)
		}
	}
	if c.Lifecycle != nil {
		for _, h := range []struct {
			name string
			h    *LifecycleHandler
		}{{"postStart", c.Lifecycle.PostStart}, {"preStop", c.Lifecycle.PreStop}} {
			if h.h != nil {
				validateHandler(l, cp.Field("lifecycle").Field(h.name), h.h.Exec != nil, h.h.HTTPGet, false, false, h.h.Sleep != nil, portNames)
			}
		}
	}
	if sc := c.SecurityContext; sc != nil {
		scp := cp.Field("securityContext")
		validateIDs(l, scp, sc.RunAsUser, sc.RunAsGroup)
		if sc.Privileged != nil && *sc.Privileged && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			l.add(scp.Field("allowPrivilegeEscalation"), "cannot be false when privileged is true")
		}
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil && s.SecurityContext != nil {
			nonRoot = s.SecurityContext.RunAsNonRoot
		}
		uid := sc.RunAsUser
		if uid == nil && s.SecurityContext != nil {
			uid = s.SecurityContext.RunAsUser
		}
		if nonRoot != nil && *nonRoot && uid != nil && *uid == 0 {
			l.add(scp.Field("runAsUser"), "is 0 (root) but runAsNonRoot is true")
		}
		if caps := sc.Capabilities; caps != nil {
			for _, list := range []struct {
				field string
				caps  []Capability
			}{{"add", caps.Add}, {"drop", caps.Drop}} {
				for i, c := range list.caps {
					name := strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_")
					if !knownCapabilities[name] && !(list.field == "drop" && name == "ALL") {
						l.add(scp.Field("capabilities").Field(list.field).Index(i), "%q is not a Linux capability", string(c))
					}
				}
			}
		}
		validateSeccomp(l, scp.Field("seccompProfile"), sc.SeccompProfile)
		validateAppArmor(l, scp.Field("appArmorProfile"), sc.AppArmorProfile)
	}
}

func labelOrAnnotationRef(p string) bool {
	for _, prefix := range []string{"metadata.labels['", "metadata.annotations['"} {
		if strings.HasPrefix(p, prefix) && strings.HasSuffix(p, "']") {
			key := p[len(prefix) : len(p)-2]
			return len(content.IsLabelKey(key)) == 0
		}
	}
	return false
}

func validateHandler(l *errList, p fieldPath, exec bool, get *HTTPGetAction, tcp, grpc, sleep bool, portNames map[string]bool) {
	n := 0
	for _, set := range []bool{exec, get != nil, tcp, grpc, sleep} {
		if set {
			n++
		}
	}
	if n != 1 {
		l.add(p, "must set exactly one handler (exec, httpGet, tcpSocket, grpc or sleep), found %d", n)
	}
	if get != nil {
		gp := p.Field("httpGet")
		validatePort(l, gp.Field("port"), get.Port, portNames)
		if get.Path != "" && !strings.HasPrefix(get.Path, "/") {
			l.add(gp.Field("path"), "%q must start with /", get.Path)
		}
		if strings.ContainsAny(get.Path, " \t\r\n") {
			l.add(gp.Field("path"), "must not contain blanks")
		}
		if get.Host != "" {
			if _, err := netip.ParseAddr(get.Host); err != nil && len(content.IsDNS1123Subdomain(get.Host)) > 0 {
				l.add(gp.Field("host"), "%q is neither an IP address nor a DNS name", get.Host)
			}
		}
		for i, h := range get.HTTPHeaders {
			if strings.ContainsAny(h.Value, "\r\n") {
				l.add(gp.Field("httpHeaders").Index(i).Field("value"), "must not contain a line break")
			}
		}
	}
}

func validatePort(l *errList, p fieldPath, port IntOrString, names map[string]bool) {
	if port.IsString {
		name := port.StrVal
		if msgs := isValidPortName(name); len(msgs) > 0 {
			l.add(p, "%q is invalid: %s", name, strings.Join(msgs, "; "))
		} else if !names[name] {
			l.add(p, "names port %q, which the container does not declare", name)
		}
		return
	}
	if port.IntVal < 1 || port.IntVal > 65535 {
		l.add(p, "%d is out of range: must be 1..65535", port.IntVal)
	}
}

func validateIDs(l *errList, p fieldPath, uid, gid *int64) {
	if uid != nil && (*uid < 0 || *uid > maxID) {
		l.add(p.Field("runAsUser"), "%d is out of range: must be 0..%d", *uid, maxID)
	}
	if gid != nil && (*gid < 0 || *gid > maxID) {
		l.add(p.Field("runAsGroup"), "%d is out of range: must be 0..%d", *gid, maxID)
	}
}

func validateSeccomp(l *errList, p fieldPath, sp *SeccompProfile) {
	if sp == nil {
		return
	}
	if sp.Type == SeccompLocalhost {
		if sp.LocalhostProfile == nil || *sp.LocalhostProfile == "" {
			l.add(p.Field("localhostProfile"), "is required when type is Localhost")
		} else if msgs := checkRelPath(*sp.LocalhostProfile); len(msgs) > 0 {
			l.add(p.Field("localhostProfile"), "%q %s", *sp.LocalhostProfile, msgs[0])
		}
	} else if sp.LocalhostProfile != nil {
		l.add(p.Field("localhostProfile"), "may be set only when type is Localhost")
	}
}

// ValidateConfigMap checks a defaulted ConfigMap.
func ValidateConfigMap(c *ConfigMap) FieldErrors {
	errs := structErrors(c)
	l := &errList{}
	validateMeta(l, fieldPath{}.Field("metadata"), &c.Metadata)
	size := 0
	for k, v := range c.Data {
		size += len(k) + len(v)
		if msgs := isConfigMapKey(k); len(msgs) > 0 {
			l.add(fieldPath{}.Field("data").Key(k), "key is invalid: %s", strings.Join(msgs, "; "))
		}
		if _, dup := c.BinaryData[k]; dup {
			l.add(fieldPath{}.Field("binaryData").Key(k), "key is also in data")
		}
	}
	for k, v := range c.BinaryData {
		size += len(k) + len(v)
		if msgs := isConfigMapKey(k); len(msgs) > 0 {
			l.add(fieldPath{}.Field("binaryData").Key(k), "key is invalid: %s", strings.Join(msgs, "; "))
		}
	}
	if size > 1<<20 {
		l.add(fieldPath{}.Field("data"), "total size %d bytes exceeds 1 MiB", size)
	}
	errs = append(errs, l.errs...)
	sortErrors(errs)
	return errs
}

// ValidateSecret checks a defaulted Secret.
func ValidateSecret(s *Secret) FieldErrors {
	errs := structErrors(s)
	l := &errList{}
	validateMeta(l, fieldPath{}.Field("metadata"), &s.Metadata)
	size := 0
	for k, v := range s.Data {
		size += len(k) + len(v)
		if msgs := isConfigMapKey(k); len(msgs) > 0 {
			l.add(fieldPath{}.Field("data").Key(k), "key is invalid: %s", strings.Join(msgs, "; "))
		}
	}
	if size > 1<<20 {
		l.add(fieldPath{}.Field("data"), "total size %d bytes exceeds 1 MiB", size)
	}
	if len(s.Type) > 253 || strings.ContainsAny(string(s.Type), " \t\n") {
		l.add(fieldPath{}.Field("type"), "%q is not a valid secret type", s.Type)
	}
	errs = append(errs, l.errs...)
	sortErrors(errs)
	return errs
}

// ValidatePersistentVolumeClaim checks a defaulted claim: the rules
// Kubernetes applies to one (an access mode, a storage request), and what
// a directory of this node can be.
func ValidatePersistentVolumeClaim(c *PersistentVolumeClaim) FieldErrors {
	errs := structErrors(c)
	l := &errList{}
	validateMeta(l, fieldPath{}.Field("metadata"), &c.Metadata)
	sp := fieldPath{}.Field("spec")
	if len(c.Spec.AccessModes) == 0 {
		l.add(sp.Field("accessModes"), "is required: at least one access mode (ReadWriteOnce, for example)")
	}
	if len(c.Spec.AccessModes) > 1 && slices.Contains(c.Spec.AccessModes, "ReadWriteOncePod") {
		l.add(sp.Field("accessModes"), "may not use ReadWriteOncePod with other access modes")
	}
	if m := c.Spec.VolumeMode; m != nil && *m == "Block" {
		l.unsupported(sp.Field("volumeMode"), "Block is not supported by pelagos-agent: a claim here is a directory of this node; use Filesystem")
	}
	rp := sp.Field("resources")
	req, hasReq := c.Spec.Resources.Requests[ResourceStorage]
	if !hasReq {
		l.add(rp.Field("requests").Key(string(ResourceStorage)), "is required: the size of the volume, such as 1Gi")
	}
	for _, rl := range []struct {
		field string
		list  ResourceList
	}{{"limits", c.Spec.Resources.Limits}, {"requests", c.Spec.Resources.Requests}} {
		for name, q := range rl.list {
			qp := rp.Field(rl.field).Key(string(name))
			if name != ResourceStorage {
				l.add(qp, "resource %q is not a claim's resource: use storage", name)
				continue
			}
			if q.Sign() <= 0 {
				l.add(qp, "%s must be positive", q.String())
			} else if msg := bytesRange(q); msg != "" {
				l.add(qp, "%s", msg)
			}
		}
	}
	if lim, ok := c.Spec.Resources.Limits[ResourceStorage]; ok && hasReq && lim.Cmp(req) < 0 {
		l.add(rp.Field("requests").Key(string(ResourceStorage)), "request %s is greater than the limit %s", req.String(), lim.String())
	}
	errs = append(errs, l.errs...)
	sortErrors(errs)
	return errs
}

// validateRequirements checks the quantities of requests and limits. known reports (and refuses) a
// resource name the caller does not take.
func validateRequirements(l *errList, rp fieldPath, r *ResourceRequirements, known func(qp fieldPath, name ResourceName) bool) {
	for _, rl := range []struct {
		field string
		list  ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		for name, q := range rl.list {
			qp := rp.Field(rl.field).Key(string(name))
			if !known(qp, name) {
				continue
			}
			if lim, ok := r.Limits[name]; rl.field == "requests" && ok && lim.Cmp(q) == 0 {
				continue // the limit's problems (the request defaults to it) are reported once, there
			}
			if q.Sign() < 0 || (rl.field == "limits" && q.Sign() == 0) {
				l.add(qp, "%s must be positive", q.String())
			} else if msg := quantityRange(name, q); msg != "" {
				l.add(qp, "%s", msg)
			}
		}
	}
}

// requestsWithinLimits refuses a request above its limit.
func requestsWithinLimits(l *errList, rp fieldPath, r *ResourceRequirements) {
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && lim.Cmp(req) < 0 {
			l.add(rp.Field("requests").Key(string(name)), "request %s is greater than the limit %s", req.String(), lim.String())
		}
	}
}
