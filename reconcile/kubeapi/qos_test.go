package kubeapi

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestQOSClassPodLevel: the served pod's class follows pod-level cpu and
// memory when set, the containers otherwise.
func TestQOSClassPodLevel(t *testing.T) {
	list := func(cpu, mem string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
	burstable := corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("10Mi")}}}
	for _, c := range []struct {
		name string
		spec corev1.PodSpec
		want corev1.PodQOSClass
	}{
		{"containers only", corev1.PodSpec{Containers: []corev1.Container{burstable}}, corev1.PodQOSBurstable},
		{"pod-level guaranteed", corev1.PodSpec{Containers: []corev1.Container{burstable},
			Resources: &corev1.ResourceRequirements{Requests: list("1", "1Gi"), Limits: list("1", "1Gi")}}, corev1.PodQOSGuaranteed},
		{"pod-level burstable", corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}},
			Resources: &corev1.ResourceRequirements{Requests: list("1", "1Gi"), Limits: list("2", "1Gi")}}, corev1.PodQOSBurstable},
		{"pod-level without cpu or memory", corev1.PodSpec{Containers: []corev1.Container{burstable},
			Resources: &corev1.ResourceRequirements{}}, corev1.PodQOSBurstable},
	} {
		if got := qosClass(&c.spec); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
