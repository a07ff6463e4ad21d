package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
	"github.com/pelagos-containers/pelagos-agent/spec/node"
)

// emptyDigest is the sha256 of zero bytes.
const emptyDigest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Documents are the ConfigMaps, Secrets and PersistentVolumeClaims of the
// manifest directory, by namespace/name; pods in the same namespace
// consume them.
type Documents struct {
	ConfigMaps map[spec.PodKey]*spec.ConfigMap
	Secrets    map[spec.PodKey]*spec.Secret
	Claims     map[spec.PodKey]*spec.PersistentVolumeClaim
}

// TranslateFunc adjusts a translated pod (volumes, env sources, probes...).
// It runs after the built-in translation; an error makes the pod's
// containers wait with CreateContainerConfigError.
type TranslateFunc func(pod *spec.Pod, d *DesiredPod, docs *Documents) error

// Translator turns a manifest snapshot into a DesiredSet.
type Translator struct {
	// NodeName answers spec.nodeName field references (the host name).
	NodeName string
	// Node, when set, decides which pods are meant for this node
	// (spec/node); the others are held with reason NodeMismatch.
	Node *node.Node
	// NodeMemory is the node's memory in bytes, for the OOM score of
	// Burstable pods (see OOMScoreAdj) and as the memory limit the
	// downward API reports for a container without one; 0 when unknown.
	NodeMemory int64
	// NodeCPUMilli and NodeEphemeralStorage are the node's CPUs (in
	// millicores) and the state root's filesystem size in bytes: the
	// limits the downward API reports for a container without one, as
	// Kubernetes reports the node's allocatable amount; 0 when unknown.
	NodeCPUMilli         int64
	NodeEphemeralStorage int64
	// Extra runs after the built-in translation, in order.
	Extra []TranslateFunc
	// Cache, when set, reuses the translation of a pod whose file bytes
	// and the directory's ConfigMaps and Secrets did not change since the
	// last load: a watched directory is reloaded whole on every change, and
	// hashing every pod again each time would make a batch of N file
	// events cost O(N^2).
	Cache *TranslateCache
	// FileTime, when set, tells when a manifest file was created
	// (DesiredPod.Created, the admission order); zero when unknown. It is
	// asked once per translation, so a cached pod keeps its time.
	FileTime func(path string) time.Time
}

// TranslateCache holds translated pods between loads; see Translator.Cache.
type TranslateCache struct {
	mu   sync.Mutex
	docs string
	pods map[string]*DesiredPod
}

// NewTranslateCache returns an empty cache.
func NewTranslateCache() *TranslateCache { return &TranslateCache{pods: map[string]*DesiredPod{}} }

// FromSnapshot translates a whole load of the manifest directory. loadErr
// is LoadDir's error: the directory itself is missing or untrusted, so
// there is no truth and the set says so.
func (t Translator) FromSnapshot(snap *manifest.Snapshot, loadErr error) DesiredSet {
	if loadErr != nil {
		return DesiredSet{Unavailable: loadErr}
	}
	var set DesiredSet
	for _, p := range snap.Paths() {
		fr := snap.Files[p]
		if fr.Vanished() {
			// Removed between the listing and the read: the file is gone,
			// which is the truth the next listing will show too.
			delete(snap.Files, p)
			for k, ps := range snap.Pods {
				if ps.File == p {
					delete(snap.Pods, k)
				}
			}
			for k, ws := range snap.Workloads {
				if ws.File == p {
					delete(snap.Workloads, k)
				}
			}
			continue
		}
		for _, err := range fr.Errs {
			set.Errors = append(set.Errors, fileError(p, err))
		}
		for _, w := range fr.Warnings {
			set.Notices = append(set.Notices, noticeOf(fr, w))
		}
		if fr.Digest == emptyDigest {
			// Truncate-then-write shows an empty file for a moment. Treat it
			// as unfinished, not as "this file defines no pods": what it
			// defined keeps running until it is written or removed.
			set.Errors = append(set.Errors, FileError{File: p, Message: "file is empty; keeping what it defined until it is written or removed"})
		}
	}
	// The cache is valid only for the same ConfigMaps, Secrets and claims.
	docs, docsKey := DocumentsOf(snap)
	var fresh map[string]*DesiredPod
	if t.Cache != nil {
		t.Cache.mu.Lock()
		defer t.Cache.mu.Unlock()
		if t.Cache.docs != docsKey {
			t.Cache.docs, t.Cache.pods = docsKey, map[string]*DesiredPod{}
		}
		fresh = map[string]*DesiredPod{}
		defer func() { t.Cache.pods = fresh }()
	}
	for _, ps := range snap.SortedPods() {
		var ck string
		if t.Cache != nil {
			digest := ""
			if fr := snap.Files[ps.File]; fr != nil {
				digest = fr.Digest
			}
			ck = fmt.Sprintf("%s\x00%s\x00%d\x00%s", ps.File, digest, ps.Doc, ps.Pod.Key())
			if d, ok := t.Cache.pods[ck]; ok && digest != "" {
				fresh[ck] = d
				set.Pods = append(set.Pods, d)
				continue
			}
		}
		d, err := t.Pod(ps.Pod, ps.File, docs)
		if err == nil && t.FileTime != nil {
			d.Created = t.FileTime(ps.File)
		}
		if err == nil && t.Cache != nil {
			fresh[ck] = d
		}
		if err != nil {
			k := runtime.PodKey(ps.Pod.Key())
			set.Errors = append(set.Errors, FileError{File: ps.File, Pod: &k, Message: err.Error()})
			continue
		}
		set.Pods = append(set.Pods, d)
	}
	return set
}

// DocumentsOf gathers the snapshot's ConfigMaps and Secrets for pods to
// consume, and a key that changes whenever any of them may have (the paths
// and digests of the files that hold them).
func DocumentsOf(snap *manifest.Snapshot) (*Documents, string) {
	docs := &Documents{ConfigMaps: map[spec.PodKey]*spec.ConfigMap{}, Secrets: map[spec.PodKey]*spec.Secret{},
		Claims: map[spec.PodKey]*spec.PersistentVolumeClaim{}}
	var key strings.Builder
	for _, p := range snap.Paths() {
		fr := snap.Files[p]
		for _, c := range fr.ConfigMaps {
			docs.ConfigMaps[spec.PodKey{Namespace: nsOr(c.ConfigMap.Metadata.Namespace), Name: c.ConfigMap.Metadata.Name}] = c.ConfigMap
		}
		for _, s := range fr.Secrets {
			docs.Secrets[spec.PodKey{Namespace: nsOr(s.Secret.Metadata.Namespace), Name: s.Secret.Metadata.Name}] = s.Secret
		}
		for _, c := range fr.Claims {
			docs.Claims[spec.PodKey{Namespace: nsOr(c.Claim.Metadata.Namespace), Name: c.Claim.Metadata.Name}] = c.Claim
		}
		if len(fr.ConfigMaps) > 0 || len(fr.Secrets) > 0 || len(fr.Claims) > 0 {
			key.WriteString(p + "\x00" + fr.Digest + "\x00")
		}
	}
	return docs, key.String()
}

func nsOr(ns string) string {
	if ns == "" {
		return spec.DefaultNamespace
	}
	return ns
}

// Event reasons of manifest notices.
const (
	ReasonNoEffect = "NoEffect"
	ReasonSkipped  = "Skipped"
)

// noticeOf turns a loader warning into a notice about the object its
// document defines (the file, for a skipped document).
func noticeOf(fr *manifest.FileResult, w error) Notice {
	n := Notice{Type: EventWarning, Reason: ReasonNoEffect, Object: ObjectRef{Kind: "File", Name: fr.Path}, Message: w.Error()}
	if errors.Is(w, spec.ErrSkipped) {
		n.Type, n.Reason = EventNormal, ReasonSkipped
	}
	var fe *spec.FieldError
	if !errors.As(w, &fe) {
		return n
	}
	for _, ps := range fr.Pods {
		if ps.Doc == fe.Doc {
			n.Object = podRef(runtime.PodKey(ps.Pod.Key()))
		}
	}
	for _, ws := range fr.Workloads {
		if ws.Doc == fe.Doc {
			k := spec.KeyOf(ws.Workload)
			n.Object = ObjectRef{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name}
		}
	}
	return n
}

func fileError(file string, err error) FileError {
	fe := FileError{File: file, Message: err.Error()}
	var se *spec.FieldError
	if errors.As(err, &se) {
		fe.Field = se.Path
	}
	return fe
}

// Pod translates one valid, defaulted pod.
func (t Translator) Pod(p *spec.Pod, source string, docs *Documents) (*DesiredPod, error) {
	p = p.DeepCopy()
	spec.SetDefaults(p)
	s := &p.Spec
	key := runtime.PodKey(p.Key())
	d := &DesiredPod{
		Key:         key,
		Source:      source,
		SandboxHash: spec.SandboxHash(p),
		Restart:     RestartPolicy(s.RestartPolicy),
		Grace:       seconds(*s.TerminationGracePeriodSeconds),
		Manifest:    manifestView{p},
	}
	if docs == nil {
		docs = &Documents{}
	}
	if t.Node != nil {
		if m := t.Node.Match(s); m != nil {
			// Not meant for this node: it owns nothing here, so nothing of
			// it is translated (a ConfigMap or hostPath it needs may exist
			// only where it runs); its containers are named for its status.
			d.Hold = &Hold{Reason: ReasonNodeMismatch, Message: m.Message}
			for _, c := range s.InitContainers {
				d.Init = append(d.Init, DesiredContainer{Name: c.Name, Init: true, Config: runtime.ContainerConfig{Name: c.Name, Image: c.Image}})
			}
			for _, c := range s.Containers {
				d.Containers = append(d.Containers, DesiredContainer{Name: c.Name, Config: runtime.ContainerConfig{Name: c.Name, Image: c.Image}})
			}
			return d, nil
		}
	}
	sb := runtime.SandboxConfig{
		Pod:         key,
		Hostname:    s.Hostname,
		Subdomain:   s.Subdomain,
		Labels:      p.Metadata.Labels,
		Annotations: p.Metadata.Annotations,
	}
	if sb.Hostname == "" && !s.HostNetwork {
		// Kubernetes names the pod's host after the pod, cut to a label.
		sb.Hostname = strings.TrimRight(truncate(p.Metadata.Name, 63), "-.")
	}
	if s.HostNetwork {
		sb.Namespaces.Network = runtime.NamespaceNode
	}
	if s.HostIPC {
		sb.Namespaces.IPC = runtime.NamespaceNode
	}
	switch {
	case s.HostPID:
		sb.Namespaces.PID = runtime.NamespaceNode
	case s.ShareProcessNamespace != nil && *s.ShareProcessNamespace:
		sb.Namespaces.PID = runtime.NamespacePod
	}
	switch s.DNSPolicy {
	case spec.DNSNone:
	default:
		// ClusterFirst has no cluster DNS here and means the node's resolver.
		sb.DNS.UseHost = true
	}
	if dc := s.DNSConfig; dc != nil {
		sb.DNS.Servers = slices.Clone(dc.Nameservers)
		sb.DNS.Searches = slices.Clone(dc.Searches)
		for _, o := range dc.Options {
			if o.Value != nil {
				sb.DNS.Options = append(sb.DNS.Options, o.Name+":"+*o.Value)
			} else {
				sb.DNS.Options = append(sb.DNS.Options, o.Name)
			}
		}
	}
	for _, h := range s.HostAliases {
		sb.HostAliases = append(sb.HostAliases, runtime.HostAlias{IP: h.IP, Hostnames: slices.Clone(h.Hostnames)})
	}
	for _, c := range s.Serving() {
		for _, pt := range c.Ports {
			if pt.HostPort != 0 {
				sb.Ports = append(sb.Ports, runtime.PortMapping{Protocol: runtime.Protocol(pt.Protocol),
					ContainerPort: pt.ContainerPort, HostPort: pt.HostPort, HostIP: pt.HostIP})
			}
		}
	}
	if sc := s.SecurityContext; sc != nil && len(sc.Sysctls) > 0 {
		sb.Sysctls = map[string]string{}
		for _, sy := range sc.Sysctls {
			sb.Sysctls[sy.Name] = sy.Value
		}
	}
	for _, v := range s.Volumes {
		if v.Image != nil {
			// Mounted by each container that names it (Mount.Image): the
			// sandbox has nothing to make for it.
			continue
		}
		vc, err := t.volumeConfig(p, v, docs)
		if err != nil {
			return nil, err
		}
		sb.Volumes = append(sb.Volumes, vc)
	}
	if s.Resources != nil {
		sb.Resources = runtimeResources(s.Resources)
	}
	d.Sandbox = sb
	for _, ref := range s.ImagePullSecrets {
		// As the kubelet does, a missing pull secret is not an error: the
		// pull is tried without it and fails only if the registry says so.
		d.PullAuth = append(d.PullAuth, pullAuth(docs.Secrets[spec.PodKey{Namespace: key.Namespace, Name: ref.Name}])...)
	}

	var errs []error
	for i := range s.InitContainers {
		c, err := t.container(p, &s.InitContainers[i], docs)
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.initContainers[%d]: %w", i, err))
			continue
		}
		c.Init = true
		c.Sidecar = s.InitContainers[i].IsSidecar()
		d.Init = append(d.Init, c)
	}
	for i := range s.Containers {
		c, err := t.container(p, &s.Containers[i], docs)
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.containers[%d]: %w", i, err))
			continue
		}
		d.Containers = append(d.Containers, c)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("pod %s: %w", key, errors.Join(errs...))
	}
	setQoS(p, d, t.NodeMemory)
	for _, f := range t.Extra {
		if err := f(p, d, docs); err != nil {
			return nil, fmt.Errorf("pod %s: %w", key, err)
		}
	}
	return d, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// manifestView lets the API print the pod as written (defaulted).
type manifestView struct{ p *spec.Pod }

func (m manifestView) View() (map[string]string, map[string]string, any) {
	return m.p.Metadata.Labels, m.p.Metadata.Annotations, m.p.Spec
}

// Pod returns the defaulted manifest pod, for components (probes, hooks)
// that need fields the runtime configs do not carry.
func (d *DesiredPod) Pod() *spec.Pod {
	if m, ok := d.Manifest.(manifestView); ok {
		return m.p
	}
	return nil
}

func (t Translator) volumeConfig(p *spec.Pod, v spec.Volume, docs *Documents) (runtime.VolumeConfig, error) {
	vc := runtime.VolumeConfig{Name: v.Name}
	ns := p.Metadata.Namespace
	switch {
	case v.EmptyDir != nil:
		vc.EmptyDir = &runtime.EmptyDirVolume{Medium: string(v.EmptyDir.Medium)}
		if v.EmptyDir.SizeLimit != nil {
			vc.EmptyDir.SizeLimit = wholeValue(*v.EmptyDir.SizeLimit)
		}
	case v.HostPath != nil:
		vc.HostPath = &runtime.HostPathVolume{Path: path.Clean(v.HostPath.Path)}
		if v.HostPath.Type != nil {
			vc.HostPath.Type = string(*v.HostPath.Type)
		}
	case v.ConfigMap != nil:
		cm := docs.ConfigMaps[spec.PodKey{Namespace: ns, Name: v.ConfigMap.Name}]
		if cm == nil {
			if isTrue(v.ConfigMap.Optional) {
				vc.Files = &runtime.ProjectedVolume{}
				return vc, nil
			}
			return vc, fmt.Errorf("spec.volumes[%s]: configMap %q not found in the manifest directory", v.Name, v.ConfigMap.Name)
		}
		files, err := project(configMapData(cm), v.ConfigMap.Items, modeOr(v.ConfigMap.DefaultMode, spec.DefaultVolumeMode), "configMap "+v.ConfigMap.Name)
		if err != nil {
			return vc, fmt.Errorf("spec.volumes[%s]: %w", v.Name, err)
		}
		vc.Files = &runtime.ProjectedVolume{Files: files}
	case v.Secret != nil:
		sec := docs.Secrets[spec.PodKey{Namespace: ns, Name: v.Secret.SecretName}]
		if sec == nil {
			if isTrue(v.Secret.Optional) {
				vc.Files = &runtime.ProjectedVolume{Sensitive: true}
				return vc, nil
			}
			return vc, fmt.Errorf("spec.volumes[%s]: secret %q not found in the manifest directory", v.Name, v.Secret.SecretName)
		}
		files, err := project(sec.Data, v.Secret.Items, modeOr(v.Secret.DefaultMode, spec.DefaultSecretVolumeMode), "secret "+v.Secret.SecretName)
		if err != nil {
			return vc, fmt.Errorf("spec.volumes[%s]: %w", v.Name, err)
		}
		vc.Files = &runtime.ProjectedVolume{Files: files, Sensitive: true}
	case v.DownwardAPI != nil:
		files, err := t.downwardFiles(p, v.DownwardAPI.Items, modeOr(v.DownwardAPI.DefaultMode, spec.DefaultVolumeMode))
		if err != nil {
			return vc, fmt.Errorf("spec.volumes[%s]: %w", v.Name, err)
		}
		vc.Files = &runtime.ProjectedVolume{Files: files}
	case v.Projected != nil:
		pv, err := t.projectedVolume(p, v.Projected, docs)
		if err != nil {
			return vc, fmt.Errorf("spec.volumes[%s]: projected: %w", v.Name, err)
		}
		vc.Files = pv
	case v.PersistentVolumeClaim != nil:
		// A claim without a document is a volume without a size, made on
		// first use, as podman does for a named volume.
		name := v.PersistentVolumeClaim.ClaimName
		vc.Persistent = &runtime.PersistentVolume{Namespace: ns, Name: name}
		if c := docs.Claims[spec.PodKey{Namespace: ns, Name: name}]; c != nil {
			vc.Persistent.Size = c.StorageRequest()
		}
	}
	if vc.Files != nil && p.Spec.SecurityContext != nil && p.Spec.SecurityContext.FSGroup != nil {
		g := *p.Spec.SecurityContext.FSGroup
		vc.Files.FSGroup = &g
	}
	return vc, nil
}

func isTrue(b *bool) bool { return b != nil && *b }

// readOnlyClaim reports whether the pod's volume name is a claim mounted
// read-only by the pod (persistentVolumeClaim.readOnly): every mount of it
// is then read-only.
func readOnlyClaim(p *spec.Pod, name string) bool {
	for _, v := range p.Spec.Volumes {
		if v.Name == name && v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ReadOnly
		}
	}
	return false
}

// imageVolume is the pod's image volume name, or nil when name is another
// kind of volume.
func imageVolume(p *spec.Pod, name string) *spec.ImageVolumeSource {
	for _, v := range p.Spec.Volumes {
		if v.Name == name {
			return v.Image
		}
	}
	return nil
}

// modeOr is a volume's defaultMode, or def when it has none.
func modeOr(m *int32, def int32) uint32 {
	if m != nil {
		return fileMode(*m)
	}
	return fileMode(def)
}

func project(data map[string][]byte, items []spec.KeyToPath, mode uint32, what string) ([]runtime.ProjectedFile, error) {
	var out []runtime.ProjectedFile
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, runtime.ProjectedFile{Path: k, Data: data[k], Mode: mode})
		}
		return out, nil
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = fileMode(*it.Mode)
		}
		clean := path.Clean(it.Path)
		if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, fmt.Errorf("%s: item path %q leaves the volume", what, it.Path)
		}
		out = append(out, runtime.ProjectedFile{Path: clean, Data: b, Mode: m})
	}
	return out, nil
}

// container translates one container: env (with its sources), $(VAR)
// expansion of command and args, mounts, security, resources.
func (t Translator) container(p *spec.Pod, c *spec.Container, docs *Documents) (DesiredContainer, error) {
	dc := DesiredContainer{Name: c.Name, PullPolicy: runtime.PullPolicy(c.ImagePullPolicy), StartupProbe: c.StartupProbe != nil}
	env, refDigest, err := t.env(p, c, docs)
	if err != nil {
		return dc, err
	}
	lookup := map[string]string{}
	for _, e := range env {
		lookup[e.Name] = e.Value
	}
	cfg := runtime.ContainerConfig{
		Name:                       c.Name,
		Image:                      c.Image,
		Command:                    expandAll(c.Command, lookup),
		Args:                       expandAll(c.Args, lookup),
		WorkingDir:                 c.WorkingDir,
		Env:                        env,
		TTY:                        c.TTY,
		Stdin:                      c.Stdin,
		StdinOnce:                  c.StdinOnce,
		TerminationMessagePath:     c.TerminationMessagePath,
		TerminationMessageFromLogs: c.TerminationMessagePolicy == "FallbackToLogsOnError",
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		hook := spec.Container{Name: c.Name, Ports: c.Ports, Lifecycle: &spec.Lifecycle{PreStop: c.Lifecycle.PreStop}}
		b, err := json.Marshal(hook)
		if err != nil {
			return dc, fmt.Errorf("lifecycle.preStop: %w", err)
		}
		cfg.Annotations = map[string]string{AnnotationPreStop: string(b)}
	}
	for _, m := range c.VolumeMounts {
		if iv := imageVolume(p, m.Name); iv != nil {
			// Always read-only, as in Kubernetes, whatever readOnly says.
			cfg.Mounts = append(cfg.Mounts, runtime.Mount{Image: iv.Reference, ContainerPath: path.Clean(m.MountPath), SubPath: m.SubPath, ReadOnly: true})
			dc.VolumeImages = append(dc.VolumeImages, VolumeImage{Volume: m.Name, Ref: iv.Reference, PullPolicy: runtime.PullPolicy(iv.PullPolicy)})
			continue
		}
		cfg.Mounts = append(cfg.Mounts, runtime.Mount{Volume: m.Name, ContainerPath: path.Clean(m.MountPath), SubPath: m.SubPath,
			ReadOnly: m.ReadOnly || readOnlyClaim(p, m.Name)})
	}
	sc := spec.EffectiveSecurityContext(p, c)
	sec := runtime.SecurityConfig{
		Privileged:               isTrue(sc.Privileged),
		AllowPrivilegeEscalation: isTrue(sc.AllowPrivilegeEscalation),
		ReadOnlyRootfs:           isTrue(sc.ReadOnlyRootFilesystem),
		RunAsUser:                sc.RunAsUser,
		RunAsGroup:               sc.RunAsGroup,
		RunAsNonRoot:             isTrue(sc.RunAsNonRoot),
	}
	if sc.Capabilities != nil {
		for _, a := range sc.Capabilities.Add {
			sec.CapAdd = append(sec.CapAdd, string(a))
		}
		for _, a := range sc.Capabilities.Drop {
			sec.CapDrop = append(sec.CapDrop, string(a))
		}
	}
	if sp := sc.SeccompProfile; sp != nil {
		sec.Seccomp.Type = string(sp.Type)
		if sp.LocalhostProfile != nil {
			sec.Seccomp.LocalhostProfile = *sp.LocalhostProfile
		}
	}
	if ps := p.Spec.SecurityContext; ps != nil {
		sec.SupplementalGroups = slices.Clone(ps.SupplementalGroups)
		if ps.FSGroup != nil {
			sec.SupplementalGroups = append(sec.SupplementalGroups, *ps.FSGroup)
		}
		if ps.SupplementalGroupsPolicy != nil && *ps.SupplementalGroupsPolicy == spec.SupplementalGroupsStrict {
			sec.SupplementalGroupsPolicy = string(spec.SupplementalGroupsStrict)
		}
	}
	cfg.Security = sec
	cfg.Resources = runtimeResources(&c.Resources)
	dc.Config = cfg
	dc.Hash = spec.ContainerHash(p, c)
	if refDigest != "" {
		// Values read from ConfigMaps and Secrets are not in the manifest's
		// hash; a change of them must restart the container as kubelet does.
		dc.Hash += "+" + refDigest
	}
	return dc, nil
}

// env resolves the container's environment: envFrom first, then env, each
// value expanded against what came before, as Kubernetes does. The digest
// covers values that came from ConfigMaps and Secrets.
func (t Translator) env(p *spec.Pod, c *spec.Container, docs *Documents) ([]runtime.EnvVar, string, error) {
	var out []runtime.EnvVar
	index := map[string]int{}
	set := func(name, value string) {
		if i, ok := index[name]; ok {
			out[i].Value = value
			return
		}
		index[name] = len(out)
		out = append(out, runtime.EnvVar{Name: name, Value: value})
	}
	h := sha256.New()
	fromRefs := false
	ns := p.Metadata.Namespace
	for _, ef := range c.EnvFrom {
		var data map[string]string
		switch {
		case ef.ConfigMapRef != nil:
			cm := docs.ConfigMaps[spec.PodKey{Namespace: ns, Name: ef.ConfigMapRef.Name}]
			if cm == nil {
				if isTrue(ef.ConfigMapRef.Optional) {
					continue
				}
				return nil, "", fmt.Errorf("envFrom: configMap %q not found in the manifest directory", ef.ConfigMapRef.Name)
			}
			data = cm.Data
		case ef.SecretRef != nil:
			sec := docs.Secrets[spec.PodKey{Namespace: ns, Name: ef.SecretRef.Name}]
			if sec == nil {
				if isTrue(ef.SecretRef.Optional) {
					continue
				}
				return nil, "", fmt.Errorf("envFrom: secret %q not found in the manifest directory", ef.SecretRef.Name)
			}
			data = map[string]string{}
			for k, v := range sec.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(ef.Prefix+k, data[k])
			fmt.Fprintf(h, "%s=%s\x00", ef.Prefix+k, data[k])
			fromRefs = true
		}
	}
	for _, e := range c.Env {
		lookup := map[string]string{}
		for _, o := range out {
			lookup[o.Name] = o.Value
		}
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, lookup))
			continue
		}
		v, ref, err := t.envSource(p, c, e, docs)
		if err != nil {
			return nil, "", fmt.Errorf("env %s: %w", e.Name, err)
		}
		set(e.Name, v)
		if ref {
			fmt.Fprintf(h, "%s=%s\x00", e.Name, v)
			fromRefs = true
		}
	}
	if !fromRefs {
		return out, "", nil
	}
	return out, hex.EncodeToString(h.Sum(nil))[:16], nil
}

func (t Translator) envSource(p *spec.Pod, c *spec.Container, e spec.EnvVar, docs *Documents) (string, bool, error) {
	vf := e.ValueFrom
	ns := p.Metadata.Namespace
	switch {
	case vf.ResourceFieldRef != nil:
		// Counted as a reference: another container's limits and the
		// node's allocatable amount are not in this container's hash.
		v, err := t.resourceValue(p, c, vf.ResourceFieldRef)
		return v, true, err
	case vf.FieldRef != nil:
		fp := vf.FieldRef.FieldPath
		switch {
		case fp == "metadata.name":
			return p.Metadata.Name, false, nil
		case fp == "metadata.namespace":
			return ns, false, nil
		case fp == "spec.nodeName":
			return t.NodeName, false, nil
		case fp == "spec.serviceAccountName":
			return "", false, nil
		case strings.HasPrefix(fp, "metadata.labels['") && strings.HasSuffix(fp, "']"):
			return p.Metadata.Labels[fp[len("metadata.labels['"):len(fp)-2]], false, nil
		case strings.HasPrefix(fp, "metadata.annotations['") && strings.HasSuffix(fp, "']"):
			return p.Metadata.Annotations[fp[len("metadata.annotations['"):len(fp)-2]], false, nil
		case fp == "status.podIP" || fp == "status.podIPs":
			// Known only once the sandbox exists: filled in at start
			// (lifecycle.go).
			return podIPPlaceholder, false, nil
		}
		return "", false, fmt.Errorf("fieldRef %q is not supported", fp)
	case vf.ConfigMapKeyRef != nil:
		r := vf.ConfigMapKeyRef
		cm := docs.ConfigMaps[spec.PodKey{Namespace: ns, Name: r.Name}]
		if cm == nil || !hasKey(cm.Data, r.Key) {
			if isTrue(r.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("configMap %q key %q not found in the manifest directory", r.Name, r.Key)
		}
		return cm.Data[r.Key], true, nil
	case vf.SecretKeyRef != nil:
		r := vf.SecretKeyRef
		sec := docs.Secrets[spec.PodKey{Namespace: ns, Name: r.Name}]
		if sec == nil {
			if isTrue(r.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %q not found in the manifest directory", r.Name)
		}
		b, ok := sec.Data[r.Key]
		if !ok {
			if isTrue(r.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %q has no key %q", r.Name, r.Key)
		}
		return string(b), true, nil
	}
	return "", false, errors.New("valueFrom names no source")
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func expandAll(in []string, lookup map[string]string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expand(s, lookup)
	}
	return out
}

// expand replaces $(VAR) with VAR's value as Kubernetes does: $$ is a
// literal $, and a reference to an undefined variable is left as written.
func expand(s string, lookup map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// pullAuth reads registry credentials from a kubernetes.io/dockerconfigjson
// (or the older kubernetes.io/dockercfg) Secret; anything else yields none.
func pullAuth(sec *spec.Secret) []runtime.RegistryAuth {
	if sec == nil {
		return nil
	}
	type entry struct {
		Username      string `json:"username"`
		Password      string `json:"password"`
		Auth          string `json:"auth"`
		IdentityToken string `json:"identitytoken"`
		RegistryToken string `json:"registrytoken"`
	}
	var auths map[string]entry
	switch sec.Type {
	case "kubernetes.io/dockerconfigjson":
		var cfg struct {
			Auths map[string]entry `json:"auths"`
		}
		if json.Unmarshal(sec.Data[".dockerconfigjson"], &cfg) != nil {
			return nil
		}
		auths = cfg.Auths
	case "kubernetes.io/dockercfg":
		if json.Unmarshal(sec.Data[".dockercfg"], &auths) != nil {
			return nil
		}
	default:
		return nil
	}
	out := make([]runtime.RegistryAuth, 0, len(auths))
	for _, reg := range slices.Sorted(maps.Keys(auths)) {
		e := auths[reg]
		out = append(out, runtime.RegistryAuth{Registry: reg, Username: e.Username, Password: e.Password,
			Auth: e.Auth, IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken})
	}
	return out
}

// runtimeResources converts cpu and memory requests and limits, of a
// container or of the pod, with saturation.
func runtimeResources(r *spec.ResourceRequirements) runtime.Resources {
	var out runtime.Resources
	if q, ok := r.Requests[spec.ResourceCPU]; ok {
		out.CPURequestMilli = milliValue(q)
	}
	if q, ok := r.Limits[spec.ResourceCPU]; ok {
		out.CPULimitMilli = milliValue(q)
	}
	if q, ok := r.Requests[spec.ResourceMemory]; ok {
		out.MemoryRequest = wholeValue(q)
	}
	if q, ok := r.Limits[spec.ResourceMemory]; ok {
		out.MemoryLimit = wholeValue(q)
	}
	return out
}
