package reconcile

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// The downward API (pod fields and container resources as env values and
// files) and projected volumes, translated into the files the runtime
// writes. Files are rebuilt on every translation, which a label or
// annotation edit causes: the runtime then swaps the volume's files in
// place (syncVolumes), as the kubelet does, without a restart.

// fieldValue answers a fieldRef of a downward-API file: one of the
// metadata paths validation admits for volumes.
func fieldValue(p *spec.Pod, fp string) (string, error) {
	switch {
	case fp == "metadata.name":
		return p.Metadata.Name, nil
	case fp == "metadata.namespace":
		return p.Metadata.Namespace, nil
	case fp == "metadata.labels":
		return formatMap(p.Metadata.Labels), nil
	case fp == "metadata.annotations":
		return formatMap(p.Metadata.Annotations), nil
	case strings.HasPrefix(fp, "metadata.labels['") && strings.HasSuffix(fp, "']"):
		return p.Metadata.Labels[fp[len("metadata.labels['"):len(fp)-2]], nil
	case strings.HasPrefix(fp, "metadata.annotations['") && strings.HasSuffix(fp, "']"):
		return p.Metadata.Annotations[fp[len("metadata.annotations['"):len(fp)-2]], nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported", fp)
}

// formatMap writes labels or annotations as the kubelet does: one
// key="value" line per key, in key order, the value quoted as a Go string
// (so a line break in a value stays on its line), no final newline.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(m[k]))
	}
	return b.String()
}

// resourceValue answers a resourceFieldRef: the named container's request
// or limit (self when containerName is empty, in env), in units of the
// divisor, rounded up as the kubelet rounds. A limit the container does
// not set is the pod-level limit (spec.resources), else the node's
// allocatable amount, as in Kubernetes.
func (t Translator) resourceValue(p *spec.Pod, self *spec.Container, rf *spec.ResourceFieldSelector) (string, error) {
	c := self
	if rf.ContainerName != "" {
		c = nil
		for _, list := range [][]spec.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for i := range list {
				if list[i].Name == rf.ContainerName {
					c = &list[i]
				}
			}
		}
	}
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef: no container %q in the pod", rf.ContainerName)
	}
	kind, name, _ := strings.Cut(rf.Resource, ".")
	list := c.Resources.Requests
	if kind == "limits" {
		list = c.Resources.Limits
	}
	q, set := list[spec.ResourceName(name)]
	if !set && kind == "limits" {
		// As the kubelet: the pod-level limit, then the node's amount.
		if q, set = p.Spec.PodLimit(spec.ResourceName(name)); !set {
			q = t.allocatable(spec.ResourceName(name))
		}
	}
	divisor := resource.MustParse("1")
	if rf.Divisor != nil && !rf.Divisor.IsZero() {
		divisor = *rf.Divisor
	}
	switch spec.ResourceName(name) {
	case spec.ResourceCPU:
		return strconv.FormatInt(ceilDiv(milliValue(q), milliValue(divisor)), 10), nil
	case spec.ResourceMemory, spec.ResourceEphemeralStorage:
		return strconv.FormatInt(ceilDiv(wholeValue(q), wholeValue(divisor)), 10), nil
	}
	return "", fmt.Errorf("resourceFieldRef: resource %q is not supported", rf.Resource)
}

// allocatable is what the node offers of a resource; 0 when unknown.
func (t Translator) allocatable(name spec.ResourceName) resource.Quantity {
	switch name {
	case spec.ResourceCPU:
		return *resource.NewMilliQuantity(t.NodeCPUMilli, resource.DecimalSI)
	case spec.ResourceMemory:
		return *resource.NewQuantity(t.NodeMemory, resource.BinarySI)
	case spec.ResourceEphemeralStorage:
		return *resource.NewQuantity(t.NodeEphemeralStorage, resource.BinarySI)
	}
	return resource.Quantity{}
}

// ceilDiv is a/b rounded up, for a >= 0 and b > 0, without overflow.
func ceilDiv(a, b int64) int64 {
	if b <= 0 {
		return 0
	}
	n := a / b
	if a%b != 0 {
		n++
	}
	return n
}

// downwardFiles builds the files of downward-API items; defMode is the
// volume's defaultMode.
func (t Translator) downwardFiles(p *spec.Pod, items []spec.DownwardAPIVolumeFile, defMode uint32) ([]runtime.ProjectedFile, error) {
	out := make([]runtime.ProjectedFile, 0, len(items))
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = fieldValue(p, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = t.resourceValue(p, nil, it.ResourceFieldRef)
		default:
			err = fmt.Errorf("item %q names no field", it.Path)
		}
		if err != nil {
			return nil, fmt.Errorf("downwardAPI %s: %w", it.Path, err)
		}
		mode := defMode
		if it.Mode != nil {
			mode = fileMode(*it.Mode)
		}
		out = append(out, runtime.ProjectedFile{Path: path.Clean(it.Path), Data: []byte(v), Mode: mode})
	}
	return out, nil
}

// projectedVolume resolves every source of a projected volume into one
// set of files. A missing optional ConfigMap or Secret contributes
// nothing; two sources writing one path is an error (the kubelet refuses
// the volume too). A volume with a secret source lives on a tmpfs, decided
// by the manifest and not by what exists now, so a Secret that appears
// later never lands on disk.
func (t Translator) projectedVolume(p *spec.Pod, v *spec.ProjectedVolumeSource, docs *Documents) (*runtime.ProjectedVolume, error) {
	pv := &runtime.ProjectedVolume{}
	mode := func(def int32) uint32 {
		if v.DefaultMode != nil {
			return fileMode(*v.DefaultMode)
		}
		return fileMode(def)
	}
	ns := p.Metadata.Namespace
	from := map[string]string{}
	for i, src := range v.Sources {
		var files []runtime.ProjectedFile
		var what string
		var err error
		switch {
		case src.ConfigMap != nil:
			what = "configMap " + src.ConfigMap.Name
			cm := docs.ConfigMaps[spec.PodKey{Namespace: ns, Name: src.ConfigMap.Name}]
			if cm == nil {
				if isTrue(src.ConfigMap.Optional) {
					continue
				}
				return nil, fmt.Errorf("sources[%d]: configMap %q not found in the manifest directory", i, src.ConfigMap.Name)
			}
			files, err = project(configMapData(cm), src.ConfigMap.Items, mode(spec.DefaultVolumeMode), what)
		case src.Secret != nil:
			what = "secret " + src.Secret.Name
			pv.Sensitive = true
			sec := docs.Secrets[spec.PodKey{Namespace: ns, Name: src.Secret.Name}]
			if sec == nil {
				if isTrue(src.Secret.Optional) {
					continue
				}
				return nil, fmt.Errorf("sources[%d]: secret %q not found in the manifest directory", i, src.Secret.Name)
			}
			files, err = project(sec.Data, src.Secret.Items, mode(spec.DefaultSecretVolumeMode), what)
		case src.DownwardAPI != nil:
			what = "downwardAPI"
			files, err = t.downwardFiles(p, src.DownwardAPI.Items, mode(spec.DefaultVolumeMode))
		}
		if err != nil {
			return nil, fmt.Errorf("sources[%d]: %w", i, err)
		}
		for _, f := range files {
			if prev, dup := from[f.Path]; dup {
				return nil, fmt.Errorf("sources[%d]: %s writes %q, which %s writes too", i, what, f.Path, prev)
			}
			from[f.Path] = what
		}
		pv.Files = append(pv.Files, files...)
	}
	return pv, nil
}

func configMapData(cm *spec.ConfigMap) map[string][]byte {
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, s := range cm.Data {
		data[k] = []byte(s)
	}
	for k, b := range cm.BinaryData {
		data[k] = b
	}
	return data
}
