package spec

import (
	"strings"
	"testing"
)

func workloadYAML(api, kind, specBody string) string {
	return "apiVersion: " + api + "\nkind: " + kind + "\nmetadata:\n  name: web\nspec:\n" + specBody
}

const (
	tmplAlways = "  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.36\n"
	tmplNever  = "  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox:1.36\n"
	selWeb     = "  selector:\n    matchLabels: {app: web}\n"
)

func TestWorkloadDefaults(t *testing.T) {
	docs, _ := ParseFile("w.yaml", []byte(workloadYAML("apps/v1", "Deployment", selWeb+tmplAlways)+"---\n"+
		workloadYAML("apps/v1", "StatefulSet", selWeb+tmplAlways)+"---\n"+workloadYAML("apps/v1", "DaemonSet", selWeb+tmplAlways)+"---\n"+
		workloadYAML("batch/v1", "Job", tmplNever)+"---\n"+workloadYAML("batch/v1", "Job", "  parallelism: 3\n"+tmplNever)), Limits{})
	for _, d := range docs {
		if !d.Valid() {
			t.Fatalf("doc %d: %v", d.Index, d.Errs)
		}
	}
	dep := docs[0].Workload.(*Deployment)
	if *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != "RollingUpdate" || dep.Spec.Strategy.RollingUpdate.MaxSurge.String() != "25%" ||
		dep.Spec.Strategy.RollingUpdate.MaxUnavailable.String() != "25%" || *dep.Spec.ProgressDeadlineSeconds != 600 ||
		dep.Metadata.Namespace != "default" || dep.Spec.Template.Spec.RestartPolicy != RestartPolicyAlways ||
		dep.Spec.Template.Spec.Containers[0].ImagePullPolicy != PullIfNotPresent {
		t.Errorf("Deployment defaults: %+v", dep.Spec)
	}
	if dep.Spec.Template.Metadata.Namespace != "" {
		t.Error("the template's metadata must stay as written (no namespace added)")
	}
	sts := docs[1].Workload.(*StatefulSet)
	if *sts.Spec.Replicas != 1 || sts.Spec.PodManagementPolicy != "OrderedReady" || sts.Spec.UpdateStrategy.Type != "RollingUpdate" ||
		*sts.Spec.UpdateStrategy.RollingUpdate.Partition != 0 {
		t.Errorf("StatefulSet defaults: %+v", sts.Spec)
	}
	ds := docs[2].Workload.(*DaemonSet)
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru.MaxUnavailable.String() != "1" || ru.MaxSurge.String() != "0" {
		t.Errorf("DaemonSet defaults: %+v", ru)
	}
	job := docs[3].Workload.(*Job)
	if *job.Spec.Completions != 1 || *job.Spec.Parallelism != 1 || *job.Spec.BackoffLimit != 6 || *job.Spec.CompletionMode != "NonIndexed" || *job.Spec.Suspend {
		t.Errorf("Job defaults: %+v", job.Spec)
	}
	// Parallelism alone: a work queue, completions stays unset.
	if wq := docs[4].Workload.(*Job); wq.Spec.Completions != nil || *wq.Spec.Parallelism != 3 {
		t.Errorf("work-queue Job defaults: completions %v, parallelism %d", wq.Spec.Completions, *wq.Spec.Parallelism)
	}
}

func TestWorkloadValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []wantErr
	}{
		{"selector required", workloadYAML("apps/v1", "Deployment", tmplAlways),
			[]wantErr{{"spec.selector", ErrInvalid, "is required"}}},
		{"selector must match the template", workloadYAML("apps/v1", "DaemonSet", "  selector:\n    matchLabels: {app: api}\n"+tmplAlways),
			[]wantErr{{"spec.selector", ErrInvalid, "does not match spec.template.metadata.labels (app=web)"}}},
		{"selector expressions", workloadYAML("apps/v1", "Deployment", "  selector:\n    matchExpressions: [{key: app, operator: In, values: [web, api]}]\n"+tmplAlways), nil},
		{"selector operators are label selector operators", workloadYAML("apps/v1", "Deployment", "  selector:\n    matchExpressions: [{key: app, operator: Gt, values: [\"1\"]}]\n"+tmplAlways),
			[]wantErr{{"spec.selector.matchExpressions[0].operator", ErrInvalid, `"Gt" is not one of: In, NotIn, Exists, DoesNotExist`}}},
		{"empty selector", workloadYAML("apps/v1", "Deployment", "  selector: {}\n"+tmplAlways),
			[]wantErr{{"spec.selector", ErrInvalid, "must not be empty"}}},
		{"Deployment pods restart", workloadYAML("apps/v1", "Deployment", selWeb+tmplNever),
			[]wantErr{{"spec.template.spec.restartPolicy", ErrInvalid, "a Deployment's pods always restart"}}},
		{"Job pods do not restart Always", workloadYAML("batch/v1", "Job", tmplAlways),
			[]wantErr{{"spec.template.spec.restartPolicy", ErrInvalid, "must be OnFailure or Never"}}},
		{"template checked as a pod", workloadYAML("apps/v1", "Deployment", selWeb+strings.Replace(tmplAlways, "image: busybox:1.36", "image: busybox:1.36\n        imagee: x", 1)),
			[]wantErr{{"spec.template.spec.containers[0].imagee", ErrUnknownField, `did you mean "image"`}}},
		{"template volume problem has the template's path", workloadYAML("apps/v1", "Deployment", selWeb+tmplAlways+"      volumes:\n      - name: v\n        hostPath: {path: relative}\n"),
			[]wantErr{{"spec.template.spec.volumes[0].hostPath.path", ErrInvalid, "must be an absolute path"}}},
		{"replicas bounded", workloadYAML("apps/v1", "Deployment", "  replicas: 20000\n"+selWeb+tmplAlways),
			[]wantErr{{"spec.replicas", ErrInvalid, "must be at most 10000"}}},
		{"surge and unavailable both zero", workloadYAML("apps/v1", "Deployment", selWeb+tmplAlways+"  strategy:\n    rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}\n"),
			[]wantErr{{"spec.strategy.rollingUpdate.maxUnavailable", ErrInvalid, "may not be 0 when maxSurge is 0"}}},
		{"bad percentage", workloadYAML("apps/v1", "Deployment", selWeb+tmplAlways+"  strategy:\n    rollingUpdate: {maxSurge: 150%}\n"),
			[]wantErr{{"spec.strategy.rollingUpdate.maxSurge", ErrInvalid, "must not be above 100%"}}},
		{"Recreate with rollingUpdate", workloadYAML("apps/v1", "Deployment", selWeb+tmplAlways+"  strategy:\n    type: Recreate\n    rollingUpdate: {maxSurge: 1}\n"),
			[]wantErr{{"spec.strategy.rollingUpdate", ErrInvalid, "may not be set when type is Recreate"}}},
		{"paused refused", workloadYAML("apps/v1", "Deployment", selWeb+tmplAlways+"  paused: true\n"),
			[]wantErr{{"spec.paused", ErrUnsupported, "paused rollout"}}},
		{"DaemonSet surge with unavailable", workloadYAML("apps/v1", "DaemonSet", selWeb+tmplAlways+"  updateStrategy:\n    rollingUpdate: {maxSurge: 1}\n"),
			[]wantErr{{"spec.updateStrategy.rollingUpdate.maxSurge", ErrInvalid, "may not be set when maxUnavailable is not 0"}}},
		{"DaemonSet surge", workloadYAML("apps/v1", "DaemonSet", selWeb+tmplAlways+"  updateStrategy:\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n"), nil},
		{"StatefulSet OnDelete refused", workloadYAML("apps/v1", "StatefulSet", selWeb+tmplAlways+"  updateStrategy:\n    type: OnDelete\n"),
			[]wantErr{{"spec.updateStrategy.type", ErrUnsupported, "OnDelete is not supported"}}},
		{"StatefulSet claims refused", workloadYAML("apps/v1", "StatefulSet", selWeb+tmplAlways+"  volumeClaimTemplates: []\n"),
			[]wantErr{{"spec.volumeClaimTemplates", ErrUnsupported, "per-pod volume claims"}}},
		{"StatefulSet name too long for its pods", strings.Replace(workloadYAML("apps/v1", "StatefulSet", "  replicas: 12\n"+selWeb+tmplAlways), "name: web", "name: "+strings.Repeat("a", 61), 1),
			[]wantErr{{"metadata.name", ErrInvalid, "must be at most 60 characters"}}},
		{"Job selector needs manualSelector", workloadYAML("batch/v1", "Job", selWeb+tmplNever),
			[]wantErr{{"spec.selector", ErrInvalid, "is generated for a Job"}}},
		{"Job manual selector", workloadYAML("batch/v1", "Job", "  manualSelector: true\n"+selWeb+tmplNever), nil},
		{"Indexed Job not yet", workloadYAML("batch/v1", "Job", "  completionMode: Indexed\n"+tmplNever),
			[]wantErr{{"spec.completionMode", ErrUnsupported, "not supported yet"}}},
		{"status is ignored", workloadYAML("apps/v1", "Deployment", selWeb+tmplAlways) + "status:\n  replicas: 3\n", nil},
		{"Deployment with a long name is fine (pod names are cut as Kubernetes cuts them)",
			strings.Replace(workloadYAML("apps/v1", "Deployment", selWeb+tmplAlways), "name: web", "name: "+strings.Repeat("a", 200), 1), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := docErrs(t, tc.src)
			checkErrs(t, got, tc.want)
		})
	}
}

func TestScaledValue(t *testing.T) {
	for _, tc := range []struct {
		v       IntOrString
		total   int
		roundUp bool
		want    int
	}{
		{FromString("25%"), 1, true, 1}, {FromString("25%"), 1, false, 0}, {FromString("25%"), 10, true, 3},
		{FromString("25%"), 10, false, 2}, {FromString("100%"), 3, false, 3}, {FromInt(2), 10, false, 2}, {FromString("0%"), 5, true, 0},
	} {
		got, err := ScaledValue(tc.v, tc.total, tc.roundUp)
		if err != nil || got != tc.want {
			t.Errorf("ScaledValue(%s, %d, %v) = %d, %v; want %d", tc.v, tc.total, tc.roundUp, got, err, tc.want)
		}
	}
	for _, bad := range []IntOrString{FromString("x"), FromString("5"), FromString("-1%"), FromInt(-1), FromString("101%")} {
		if _, err := ScaledValue(bad, 10, false); err == nil {
			t.Errorf("ScaledValue(%s) accepted", bad)
		}
	}
}

func TestLabelSelectorMatches(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front"}
	for _, tc := range []struct {
		sel  LabelSelector
		want bool
	}{
		{LabelSelector{}, true},
		{LabelSelector{MatchLabels: map[string]string{"app": "web"}}, true},
		{LabelSelector{MatchLabels: map[string]string{"app": "api"}}, false},
		{LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "app", Operator: "In", Values: []string{"api", "web"}}}}, true},
		{LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "app", Operator: "NotIn", Values: []string{"web"}}}}, false},
		{LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "env", Operator: "NotIn", Values: []string{"prod"}}}}, true},
		{LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "tier", Operator: "Exists"}}}, true},
		{LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "tier", Operator: "DoesNotExist"}}}, false},
		{LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "env", Operator: "In", Values: []string{"prod"}}}}, false},
	} {
		if got := tc.sel.Matches(labels); got != tc.want {
			t.Errorf("%+v.Matches = %v, want %v", tc.sel, got, tc.want)
		}
	}
}

func TestSchedulingWarningsOnlyWhereNoEffect(t *testing.T) {
	p := int32(5)
	if w := SchedulingWarnings(&PodSpec{SchedulerName: DefaultSchedulerName, NodeSelector: map[string]string{"a": "b"},
		Tolerations: []Toleration{{Operator: "Exists"}}, Affinity: &Affinity{NodeAffinity: &NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &NodeSelector{}}}}); len(w) != 0 {
		t.Errorf("evaluated fields and the default scheduler drew warnings: %v", w)
	}
	w := SchedulingWarnings(&PodSpec{SchedulerName: "custom", Priority: &p})
	if len(w) != 2 || w[0].Path != "spec.priority" || w[1].Path != "spec.schedulerName" {
		t.Errorf("warnings %v", w)
	}
}
