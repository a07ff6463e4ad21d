package kubeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// Workloads: the Deployments, StatefulSets, DaemonSets and Jobs of the
// manifest directory, read-only (apps/v1, batch/v1), with the status the
// agent's workload controllers keep. A change is made by editing the
// manifest; a list or get reads the controllers' state then.

type workloadColls struct {
	s                                           *Server
	deployments, statefulSets, daemonSets, jobs *collection
}

func (s *Server) registerWorkloads() {
	w := &workloadColls{s: s, deployments: newCollection(s.vs), statefulSets: newCollection(s.vs),
		daemonSets: newCollection(s.vs), jobs: newCollection(s.vs)}
	refresh := func(context.Context) error { w.refresh(); return nil }
	for _, d := range []*resourceDef{
		{group: "apps", version: "v1", name: "deployments", singular: "deployment", kind: "Deployment",
			shortNames: []string{"deploy"}, coll: w.deployments, printer: deploymentPrinter,
			newObject: func() object { return &appsv1.Deployment{} }, newList: func() kruntime.Object { return &appsv1.DeploymentList{} }},
		{group: "apps", version: "v1", name: "statefulsets", singular: "statefulset", kind: "StatefulSet",
			shortNames: []string{"sts"}, coll: w.statefulSets, printer: statefulSetPrinter,
			newObject: func() object { return &appsv1.StatefulSet{} }, newList: func() kruntime.Object { return &appsv1.StatefulSetList{} }},
		{group: "apps", version: "v1", name: "daemonsets", singular: "daemonset", kind: "DaemonSet",
			shortNames: []string{"ds"}, coll: w.daemonSets, printer: daemonSetPrinter,
			newObject: func() object { return &appsv1.DaemonSet{} }, newList: func() kruntime.Object { return &appsv1.DaemonSetList{} }},
		{group: "batch", version: "v1", name: "jobs", singular: "job", kind: "Job",
			coll: w.jobs, printer: jobPrinter,
			newObject: func() object { return &batchv1.Job{} }, newList: func() kruntime.Object { return &batchv1.JobList{} }},
	} {
		d.namespaced, d.refresh = true, refresh
		d.categories = []string{"all"}
		s.register(d)
	}
}

// refresh rebuilds the four collections from the controllers' state.
func (w *workloadColls) refresh() {
	var deps, sets, daemons, jobs []object
	if w.s.cfg.Workloads != nil {
		for _, o := range w.s.cfg.Workloads() {
			b, err := json.Marshal(o)
			if err != nil {
				continue
			}
			var obj object
			switch o.Kind {
			case "Deployment":
				obj = &appsv1.Deployment{}
			case "StatefulSet":
				obj = &appsv1.StatefulSet{}
			case "DaemonSet":
				obj = &appsv1.DaemonSet{}
			case "Job":
				obj = &batchv1.Job{}
			default:
				continue
			}
			if err := json.Unmarshal(b, obj); err != nil {
				// The shapes are apps/v1's and batch/v1's; a failure is a bug,
				// shown on the object rather than hiding it.
				obj.SetAnnotations(map[string]string{"pelagos.io/conversion-error": err.Error()})
			}
			obj.SetUID(types.UID(o.Metadata.UID))
			switch o.Kind {
			case "Deployment":
				deps = append(deps, obj)
			case "StatefulSet":
				sets = append(sets, obj)
			case "DaemonSet":
				daemons = append(daemons, obj)
			case "Job":
				jobs = append(jobs, obj)
			}
		}
	}
	w.deployments.replace(deps)
	w.statefulSets.replace(sets)
	w.daemonSets.replace(daemons)
	w.jobs.replace(jobs)
}

func podTemplateColumns(t corev1.PodTemplateSpec) (containers, images string) {
	var names, imgs []string
	for _, c := range t.Spec.Containers {
		names, imgs = append(names, c.Name), append(imgs, c.Image)
	}
	return strings.Join(names, ","), strings.Join(imgs, ",")
}

func selectorString(s *metav1.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return "<error>"
	}
	return sel.String()
}

var (
	containersCol = col("Containers", "string", "", "Names of each container in the template.", 1)
	imagesCol     = col("Images", "string", "", "Images referenced by each container in the template.", 1)
	selectorCol   = col("Selector", "string", "", "Label selector for pods.", 1)
)

var deploymentPrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Ready", "string", "", "Number of the available replicas out of the desired ones.", 0),
		col("Up-to-date", "integer", "", appsv1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"], 0),
		col("Available", "integer", "", appsv1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"], 0),
		ageCol, containersCol, imagesCol, selectorCol,
	},
	cells: func(o object, now time.Time) []any {
		d := o.(*appsv1.Deployment)
		want := int32(0)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		c, i := podTemplateColumns(d.Spec.Template)
		return []any{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want), int64(d.Status.UpdatedReplicas),
			int64(d.Status.AvailableReplicas), since(d.CreationTimestamp, now), c, i, selectorString(d.Spec.Selector)}
	},
}

var statefulSetPrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Ready", "string", "", "Number of the ready replicas out of the desired ones.", 0),
		ageCol, containersCol, imagesCol,
	},
	cells: func(o object, now time.Time) []any {
		s := o.(*appsv1.StatefulSet)
		want := int32(0)
		if s.Spec.Replicas != nil {
			want = *s.Spec.Replicas
		}
		c, i := podTemplateColumns(s.Spec.Template)
		return []any{s.Name, fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, want), since(s.CreationTimestamp, now), c, i}
	},
}

var daemonSetPrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Desired", "integer", "", appsv1.DaemonSetStatus{}.SwaggerDoc()["desiredNumberScheduled"], 0),
		col("Current", "integer", "", appsv1.DaemonSetStatus{}.SwaggerDoc()["currentNumberScheduled"], 0),
		col("Ready", "integer", "", appsv1.DaemonSetStatus{}.SwaggerDoc()["numberReady"], 0),
		col("Up-to-date", "integer", "", appsv1.DaemonSetStatus{}.SwaggerDoc()["updatedNumberScheduled"], 0),
		col("Available", "integer", "", appsv1.DaemonSetStatus{}.SwaggerDoc()["numberAvailable"], 0),
		col("Node Selector", "string", "", corev1.PodSpec{}.SwaggerDoc()["nodeSelector"], 0),
		ageCol, containersCol, imagesCol, selectorCol,
	},
	cells: func(o object, now time.Time) []any {
		d := o.(*appsv1.DaemonSet)
		var sel []string
		for k, v := range d.Spec.Template.Spec.NodeSelector {
			sel = append(sel, k+"="+v)
		}
		sort.Strings(sel)
		c, i := podTemplateColumns(d.Spec.Template)
		st := d.Status
		return []any{d.Name, int64(st.DesiredNumberScheduled), int64(st.CurrentNumberScheduled), int64(st.NumberReady),
			int64(st.UpdatedNumberScheduled), int64(st.NumberAvailable), orNone(strings.Join(sel, ",")), since(d.CreationTimestamp, now),
			c, i, selectorString(d.Spec.Selector)}
	},
}

var jobPrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Status", "string", "", "Status of the job.", 0),
		col("Completions", "string", "", "The completion status of the job.", 0),
		col("Duration", "string", "", "Time required to complete the job.", 0),
		ageCol, containersCol, imagesCol, selectorCol,
	},
	cells: func(o object, now time.Time) []any {
		j := o.(*batchv1.Job)
		status := "Running"
		for _, c := range j.Status.Conditions {
			if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed || c.Type == batchv1.JobSuspended) {
				status = string(c.Type)
			}
		}
		completions := fmt.Sprintf("%d/1", j.Status.Succeeded)
		if j.Spec.Completions != nil {
			completions = fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
		} else if j.Spec.Parallelism != nil && *j.Spec.Parallelism > 1 {
			completions = fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
		}
		duration := ""
		if j.Status.StartTime != nil {
			end := now
			if j.Status.CompletionTime != nil {
				end = j.Status.CompletionTime.Time
			}
			duration = since(metav1.NewTime(j.Status.StartTime.Time), end)
		}
		c, i := podTemplateColumns(j.Spec.Template)
		return []any{j.Name, status, completions, duration, since(j.CreationTimestamp, now), c, i, selectorString(j.Spec.Selector)}
	},
}
