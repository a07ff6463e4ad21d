package spec

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeFields collects the JSON names of a k8s.io/api type's fields,
// flattening inline members as encoding/json does.
func kubeFields(t reflect.Type, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if tag == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			kubeFields(f.Type, out)
			continue
		}
		out[name] = true
	}
}

// TestSchedulingAndWorkloadTypesMatchKubernetes is TestEveryKubernetesFieldIsKnown
// for the scheduling and workload types, read straight from k8s.io/api:
// every Kubernetes field is modelled, refused or ignored (so "unknown
// field" still means a typo), and nothing is modelled that Kubernetes
// lacks.
func TestSchedulingAndWorkloadTypesMatchKubernetes(t *testing.T) {
	for _, pair := range []struct{ ours, theirs any }{
		{Affinity{}, corev1.Affinity{}}, {NodeAffinity{}, corev1.NodeAffinity{}}, {NodeSelector{}, corev1.NodeSelector{}},
		{NodeSelectorTerm{}, corev1.NodeSelectorTerm{}}, {NodeSelectorRequirement{}, corev1.NodeSelectorRequirement{}},
		{PreferredSchedulingTerm{}, corev1.PreferredSchedulingTerm{}}, {PodAffinity{}, corev1.PodAffinity{}},
		{PodAntiAffinity{}, corev1.PodAntiAffinity{}}, {PodAffinityTerm{}, corev1.PodAffinityTerm{}},
		{WeightedPodAffinityTerm{}, corev1.WeightedPodAffinityTerm{}}, {LabelSelector{}, metav1.LabelSelector{}},
		{LabelSelectorRequirement{}, metav1.LabelSelectorRequirement{}}, {Toleration{}, corev1.Toleration{}},
		{TopologySpreadConstraint{}, corev1.TopologySpreadConstraint{}}, {PodSpec{}, corev1.PodSpec{}},
		{PodTemplateSpec{}, corev1.PodTemplateSpec{}},
		{Deployment{}, appsv1.Deployment{}}, {DeploymentSpec{}, appsv1.DeploymentSpec{}},
		{DeploymentStrategy{}, appsv1.DeploymentStrategy{}}, {RollingUpdateDeployment{}, appsv1.RollingUpdateDeployment{}},
		{StatefulSet{}, appsv1.StatefulSet{}}, {StatefulSetSpec{}, appsv1.StatefulSetSpec{}},
		{StatefulSetUpdateStrategy{}, appsv1.StatefulSetUpdateStrategy{}},
		{RollingUpdateStatefulSetStrategy{}, appsv1.RollingUpdateStatefulSetStrategy{}},
		{StatefulSetOrdinals{}, appsv1.StatefulSetOrdinals{}},
		{DaemonSet{}, appsv1.DaemonSet{}}, {DaemonSetSpec{}, appsv1.DaemonSetSpec{}},
		{DaemonSetUpdateStrategy{}, appsv1.DaemonSetUpdateStrategy{}}, {RollingUpdateDaemonSet{}, appsv1.RollingUpdateDaemonSet{}},
		{Job{}, batchv1.Job{}}, {JobSpec{}, batchv1.JobSpec{}},
	} {
		ours, theirs := reflect.TypeOf(pair.ours), reflect.TypeOf(pair.theirs)
		k8s := map[string]bool{}
		kubeFields(theirs, k8s)
		si := infoFor(ours)
		for f := range k8s {
			if _, modelled := si.fields[f]; !modelled && si.unsupported[f] == "" && !si.ignored[f] {
				t.Errorf("%s.%s is a Kubernetes field, but a manifest using it would be told it is unknown (a typo)", ours.Name(), f)
			}
		}
		for _, f := range si.names {
			if !k8s[f] {
				t.Errorf("%s.%s is modelled but is not a field of %s", ours.Name(), f, theirs)
			}
		}
	}
}

// TestKindVerdicts: cluster objects are skipped with a notice, kinds whose
// absence would change what pods do are refused, and a typo is a typo.
func TestKindVerdicts(t *testing.T) {
	for _, tc := range []struct {
		apiVersion, kind string
		skip, refused    string
	}{
		{"v1", "Service", "Service is skipped", ""},
		{"networking.k8s.io/v1", "Ingress", "Ingress is skipped", ""},
		{"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "ClusterRoleBinding is skipped", ""},
		{"gateway.networking.k8s.io/v1", "HTTPRoute", "there is no gateway controller", ""},
		{"monitoring.coreos.com/v1", "ServiceMonitor", "custom resource", ""},
		{"networking.k8s.io/v1", "NetworkPolicy", "", "would not be enforced"},
		{"v1", "LimitRange", "", "defaults would not be applied"},
		{"apps/v1", "ReplicaSet", "", "write a Deployment"},
		{"batch/v1", "CronJob", "", "systemd timer"},
		{"apps/v1", "Deploymnet", "", `did you mean "Deployment"?`},
		{"v1", "Servcie", "", `did you mean "Service"?`},
	} {
		skip, refused := kindVerdict(tc.apiVersion, tc.kind)
		if (tc.skip == "") != (skip == "") || !strings.Contains(skip, tc.skip) ||
			(tc.refused == "") != (refused == "") || !strings.Contains(refused, tc.refused) {
			t.Errorf("%s %s: skip %q, refused %q; want skip ~%q, refused ~%q", tc.apiVersion, tc.kind, skip, refused, tc.skip, tc.refused)
		}
	}
	// No kind is both skipped and refused, and nothing the agent runs is
	// in either table.
	for group, kinds := range refusedKinds {
		for k := range kinds {
			if _, both := skippedKinds[group][k]; both {
				t.Errorf("%s/%s is both skipped and refused", group, k)
			}
		}
	}
	for _, tables := range []map[string]map[string]string{skippedKinds, refusedKinds} {
		for _, kinds := range tables {
			for k := range kinds {
				if slices.Contains(runKinds, k) {
					t.Errorf("%s is run by the agent but listed as skipped or refused", k)
				}
			}
		}
	}
}
