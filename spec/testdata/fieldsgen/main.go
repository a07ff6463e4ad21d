// Command fieldsgen writes ../kubernetes-fields.json: the JSON field names
// of every Kubernetes core/v1 (and meta/v1) type pelagos-agent models, read
// from k8s.io/api's struct tags with inline members flattened. It is its
// own module so the agent never links k8s.io/api. Regenerate for a new
// Kubernetes release (bump the versions in go.mod):
//
//	cd spec/testdata/fieldsgen && go run . > ../kubernetes-fields.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fields collects the JSON names of t's fields into out, descending into
// inline (embedded, unnamed) members as encoding/json does.
func fields(t reflect.Type, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if tag == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			fields(ft, out)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = true
	}
}

const source = "k8s.io/api v0.37.2 (Kubernetes 1.37) core/v1 and k8s.io/apimachinery meta/v1: the JSON field names of each type pelagos-agent models, read from the json struct tags (inline members flattened). Regenerate with spec/testdata/fieldsgen when the Kubernetes release changes."

func main() {
	types := map[string]any{}
	for _, v := range []any{
		corev1.Pod{}, metav1.ObjectMeta{}, corev1.PodSpec{}, corev1.Container{}, corev1.EnvVar{}, corev1.EnvVarSource{},
		corev1.ObjectFieldSelector{}, corev1.ConfigMapKeySelector{}, corev1.SecretKeySelector{}, corev1.EnvFromSource{},
		corev1.ConfigMapEnvSource{}, corev1.SecretEnvSource{}, corev1.ContainerPort{}, corev1.ResourceRequirements{},
		corev1.VolumeMount{}, corev1.Probe{}, corev1.ProbeHandler{}, corev1.ExecAction{}, corev1.HTTPGetAction{},
		corev1.HTTPHeader{}, corev1.TCPSocketAction{}, corev1.GRPCAction{}, corev1.Lifecycle{}, corev1.LifecycleHandler{},
		corev1.SleepAction{}, corev1.Capabilities{}, corev1.SeccompProfile{}, corev1.AppArmorProfile{}, corev1.SecurityContext{},
		corev1.Sysctl{}, corev1.PodSecurityContext{}, corev1.PodDNSConfig{}, corev1.PodDNSConfigOption{}, corev1.HostAlias{},
		corev1.LocalObjectReference{}, corev1.Volume{}, corev1.VolumeSource{}, corev1.HostPathVolumeSource{},
		corev1.EmptyDirVolumeSource{}, corev1.KeyToPath{}, corev1.SecretVolumeSource{}, corev1.ConfigMapVolumeSource{},
		corev1.ConfigMap{}, corev1.Secret{},
		corev1.DownwardAPIVolumeSource{}, corev1.DownwardAPIVolumeFile{}, corev1.ResourceFieldSelector{},
		corev1.ProjectedVolumeSource{}, corev1.VolumeProjection{}, corev1.SecretProjection{}, corev1.ConfigMapProjection{},
		corev1.DownwardAPIProjection{}, corev1.PersistentVolumeClaimVolumeSource{}, corev1.PersistentVolumeClaim{},
		corev1.PersistentVolumeClaimSpec{}, corev1.VolumeResourceRequirements{}, corev1.ContainerResizePolicy{},
	} {
		t := reflect.TypeOf(v)
		m := map[string]bool{}
		fields(t, m)
		var names []string
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		types[t.Name()] = names
	}
	b, err := json.MarshalIndent(map[string]any{"source": source, "types": types}, "", " ")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(append(b, '\n'))
}
