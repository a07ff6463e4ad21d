package kubeapi

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pelagos-containers/pelagos-agent/reconcile/workload"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// The workloads are served read-only as apps/v1 and batch/v1, in their
// Kubernetes shapes, with kubectl's table columns.
func TestWorkloadsServed(t *testing.T) {
	replicas, completions := int32(3), int32(1)
	created := time.Unix(1_700_000_000, 0).UTC()
	objs := []workload.Object{
		{APIVersion: "apps/v1", Kind: "Deployment", Metadata: workload.Meta{Name: "web", Namespace: "default", UID: "u1", CreationTimestamp: created},
			Spec: spec.DeploymentSpec{Replicas: &replicas, Selector: &spec.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: spec.PodTemplateSpec{Metadata: spec.ObjectMeta{Labels: map[string]string{"app": "web"}},
					Spec: spec.PodSpec{Containers: []spec.Container{{Name: "app", Image: "busybox:1.36"}}}}},
			Status: workload.DeploymentStatus{Replicas: 3, ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2}},
		{APIVersion: "batch/v1", Kind: "Job", Metadata: workload.Meta{Name: "once", Namespace: "default", UID: "u2", CreationTimestamp: created},
			Spec: spec.JobSpec{Completions: &completions, Template: spec.PodTemplateSpec{Spec: spec.PodSpec{RestartPolicy: "Never",
				Containers: []spec.Container{{Name: "c", Image: "busybox:1.36"}}}}},
			Status: workload.JobStatus{Succeeded: 1, StartTime: &created, CompletionTime: &created,
				Conditions: []workload.Condition{{Type: "Complete", Status: "True"}}}},
	}
	e := newTestEnv(t, func(c *Config) { c.Workloads = func() []workload.Object { return objs } })
	var d appsv1.Deployment
	e.getJSON("/apis/apps/v1/namespaces/default/deployments/web", &d)
	if d.Kind != "Deployment" || d.APIVersion != "apps/v1" || d.UID != "u1" || *d.Spec.Replicas != 3 || d.Status.ReadyReplicas != 2 ||
		d.Spec.Template.Spec.Containers[0].Image != "busybox:1.36" || !d.CreationTimestamp.Equal(&metav1.Time{Time: created}) || d.ResourceVersion == "" {
		t.Errorf("deployment %+v", d)
	}
	var jobs batchv1.JobList
	e.getJSON("/apis/batch/v1/jobs", &jobs)
	if len(jobs.Items) != 1 || jobs.Items[0].Status.Succeeded != 1 || jobs.Items[0].Status.Conditions[0].Type != batchv1.JobComplete {
		t.Errorf("jobs %+v", jobs.Items)
	}
	var sets appsv1.StatefulSetList
	e.getJSON("/apis/apps/v1/statefulsets", &sets)
	if len(sets.Items) != 0 {
		t.Errorf("statefulsets %+v", sets.Items)
	}
	table := e.get("/apis/apps/v1/namespaces/default/deployments", "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if !strings.Contains(string(table.body), `"cells":["web","2/3",3,2,`) {
		t.Errorf("deployment table: %s", table.body)
	}
	if r := e.req("admin", "system:masters", "DELETE", "/apis/apps/v1/namespaces/default/deployments/web", "", ""); r.code != 405 {
		t.Errorf("a delete of a workload: %d %s", r.code, r.body)
	}
}
