package spec

import (
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
)

// Workload is a decoded Deployment, StatefulSet, DaemonSet or Job.
type Workload interface {
	// WorkloadKind is the object's kind (KindDeployment, ...).
	WorkloadKind() string
	// Meta is the object's metadata.
	Meta() *ObjectMeta
	// Template is the pod template the controller copies.
	Template() *PodTemplateSpec
}

func (d *Deployment) WorkloadKind() string       { return KindDeployment }
func (d *Deployment) Meta() *ObjectMeta          { return &d.Metadata }
func (d *Deployment) Template() *PodTemplateSpec { return &d.Spec.Template }

func (s *StatefulSet) WorkloadKind() string       { return KindStatefulSet }
func (s *StatefulSet) Meta() *ObjectMeta          { return &s.Metadata }
func (s *StatefulSet) Template() *PodTemplateSpec { return &s.Spec.Template }

func (d *DaemonSet) WorkloadKind() string       { return KindDaemonSet }
func (d *DaemonSet) Meta() *ObjectMeta          { return &d.Metadata }
func (d *DaemonSet) Template() *PodTemplateSpec { return &d.Spec.Template }

func (j *Job) WorkloadKind() string       { return KindJob }
func (j *Job) Meta() *ObjectMeta          { return &j.Metadata }
func (j *Job) Template() *PodTemplateSpec { return &j.Spec.Template }

// WorkloadKey identifies a workload on the node: kind, namespace, name.
type WorkloadKey struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (k WorkloadKey) String() string { return k.Kind + " " + k.Namespace + "/" + k.Name }

// KeyOf returns a defaulted workload's key.
func KeyOf(w Workload) WorkloadKey {
	m := w.Meta()
	return WorkloadKey{Kind: w.WorkloadKind(), Namespace: m.Namespace, Name: m.Name}
}

// workloadAPIVersion is the one API version accepted for each workload kind.
var workloadAPIVersion = map[string]string{
	KindDeployment: APIVersionApps, KindStatefulSet: APIVersionApps, KindDaemonSet: APIVersionApps,
	KindJob: APIVersionBatch,
}

func newWorkload(kind string) Workload {
	switch kind {
	case KindDeployment:
		return &Deployment{}
	case KindStatefulSet:
		return &StatefulSet{}
	case KindDaemonSet:
		return &DaemonSet{}
	case KindJob:
		return &Job{}
	}
	return nil
}

// TemplatePod is the pod a workload's template describes, named after the
// workload, in its namespace: what validation checks and what controllers
// copy. It shares nothing with w.
func TemplatePod(w Workload) *Pod {
	t := deepCopyJSON(w.Template())
	m := w.Meta()
	return &Pod{
		TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindPod},
		Metadata: ObjectMeta{Name: m.Name, Namespace: m.Namespace, Labels: t.Metadata.Labels, Annotations: t.Metadata.Annotations},
		Spec:     t.Spec,
	}
}

// Kubernetes' defaults for the workload kinds.
const (
	defaultMaxUnavailable       = "25%"
	defaultMaxSurge             = "25%"
	defaultRevisionHistory      = int32(10)
	defaultProgressDeadline     = int32(600)
	defaultBackoffLimit         = int32(6)
	defaultDaemonMaxUnavailable = int32(1)
)

// SetWorkloadDefaults fills the defaulted fields of a workload and of its
// template (as SetDefaults does for a pod), as the API server would.
func SetWorkloadDefaults(w Workload) {
	m := w.Meta()
	if m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
	t := w.Template()
	p := &Pod{Metadata: ObjectMeta{Namespace: m.Namespace}, Spec: t.Spec}
	SetDefaults(p)
	t.Spec = p.Spec
	i32 := func(v int32) *int32 { return &v }
	str := func(v string) *string { return &v }
	pct := func(v string) *IntOrString { x := FromString(v); return &x }
	switch w := w.(type) {
	case *Deployment:
		s := &w.Spec
		if s.Replicas == nil {
			s.Replicas = i32(1)
		}
		if s.Strategy.Type == "" {
			s.Strategy.Type = RollingUpdateDeploymentStrategyType
		}
		if s.Strategy.Type == RollingUpdateDeploymentStrategyType {
			if s.Strategy.RollingUpdate == nil {
				s.Strategy.RollingUpdate = &RollingUpdateDeployment{}
			}
			if s.Strategy.RollingUpdate.MaxUnavailable == nil {
				s.Strategy.RollingUpdate.MaxUnavailable = pct(defaultMaxUnavailable)
			}
			if s.Strategy.RollingUpdate.MaxSurge == nil {
				s.Strategy.RollingUpdate.MaxSurge = pct(defaultMaxSurge)
			}
		}
		if s.RevisionHistoryLimit == nil {
			s.RevisionHistoryLimit = i32(defaultRevisionHistory)
		}
		if s.ProgressDeadlineSeconds == nil {
			s.ProgressDeadlineSeconds = i32(defaultProgressDeadline)
		}
	case *StatefulSet:
		s := &w.Spec
		if s.Replicas == nil {
			s.Replicas = i32(1)
		}
		if s.PodManagementPolicy == "" {
			s.PodManagementPolicy = "OrderedReady"
		}
		if s.UpdateStrategy.Type == "" {
			s.UpdateStrategy.Type = "RollingUpdate"
		}
		if s.UpdateStrategy.Type == "RollingUpdate" {
			if s.UpdateStrategy.RollingUpdate == nil {
				s.UpdateStrategy.RollingUpdate = &RollingUpdateStatefulSetStrategy{}
			}
			if s.UpdateStrategy.RollingUpdate.Partition == nil {
				s.UpdateStrategy.RollingUpdate.Partition = i32(0)
			}
		}
		if s.RevisionHistoryLimit == nil {
			s.RevisionHistoryLimit = i32(defaultRevisionHistory)
		}
	case *DaemonSet:
		s := &w.Spec
		if s.UpdateStrategy.Type == "" {
			s.UpdateStrategy.Type = "RollingUpdate"
		}
		if s.UpdateStrategy.Type == "RollingUpdate" {
			if s.UpdateStrategy.RollingUpdate == nil {
				s.UpdateStrategy.RollingUpdate = &RollingUpdateDaemonSet{}
			}
			ru := s.UpdateStrategy.RollingUpdate
			if ru.MaxUnavailable == nil {
				v := FromInt(defaultDaemonMaxUnavailable)
				ru.MaxUnavailable = &v
			}
			if ru.MaxSurge == nil {
				v := FromInt(0)
				ru.MaxSurge = &v
			}
		}
		if s.RevisionHistoryLimit == nil {
			s.RevisionHistoryLimit = i32(defaultRevisionHistory)
		}
	case *Job:
		s := &w.Spec
		if s.Completions == nil && s.Parallelism == nil {
			s.Completions = i32(1)
		}
		if s.Parallelism == nil {
			s.Parallelism = i32(1)
		}
		if s.BackoffLimit == nil {
			s.BackoffLimit = i32(defaultBackoffLimit)
		}
		if s.CompletionMode == nil {
			s.CompletionMode = str(NonIndexedCompletion)
		}
		if s.Suspend == nil {
			f := false
			s.Suspend = &f
		}
		if s.ManualSelector == nil {
			f := false
			s.ManualSelector = &f
		}
		if s.PodReplacementPolicy == nil {
			s.PodReplacementPolicy = str("TerminatingOrFailed")
		}
	}
}

// MaxReplicas bounds replicas, parallelism and completions: far more pods
// than one node runs (the agent's --max-pods is 110 by default), and few
// enough that a typo cannot make the agent hold a million pods in memory.
const MaxReplicas = 10000

// ValidateWorkload checks a defaulted workload: its own fields, and its
// template exactly as a Pod (paths under spec.template).
func ValidateWorkload(w Workload, o ValidationOptions) FieldErrors {
	errs := structErrors(w)
	l := &errList{}
	root := fieldPath{}
	validateMeta(l, root.Field("metadata"), w.Meta())
	sp := root.Field("spec")
	tp := sp.Field("template")
	t := w.Template()

	pod := TemplatePod(w)
	for _, e := range ValidatePodWithOptions(pod, o) {
		if e.Path == "metadata.name" || e.Path == "metadata.namespace" {
			continue // the workload's own, reported above
		}
		e.Path = tp.String() + "." + e.Path
		errs = append(errs, e)
	}

	replicas := func(field string, v *int32) {
		if v != nil && *v > MaxReplicas {
			l.add(sp.Field(field), "%d is out of range: must be at most %d (more pods than one node can run)", *v, MaxReplicas)
		}
		if v != nil && *v < 0 {
			l.add(sp.Field(field), "%d must not be negative", *v)
		}
	}
	rp := tp.Field("spec").Field("restartPolicy")
	switch w := w.(type) {
	case *Deployment:
		s := &w.Spec
		replicas("replicas", s.Replicas)
		validateSelector(l, sp.Field("selector"), s.Selector, t, true)
		if t.Spec.RestartPolicy != RestartPolicyAlways {
			l.add(rp, "%q is not allowed: a Deployment's pods always restart (Always); use a Job to run to completion", t.Spec.RestartPolicy)
		}
		if s.Paused {
			l.unsupported(sp.Field("paused"), "a paused rollout is not supported by pelagos-agent: its pods follow the file; delete this line (or set false) and keep the file unchanged instead")
		}
		stp := sp.Field("strategy")
		if ru := s.Strategy.RollingUpdate; ru != nil {
			if s.Strategy.Type == RecreateDeploymentStrategyType {
				l.add(stp.Field("rollingUpdate"), "may not be set when type is Recreate")
			} else {
				validateSurge(l, stp.Field("rollingUpdate"), ru.MaxUnavailable, ru.MaxSurge, false)
			}
		}
	case *StatefulSet:
		s := &w.Spec
		replicas("replicas", s.Replicas)
		validateSelector(l, sp.Field("selector"), s.Selector, t, true)
		if t.Spec.RestartPolicy != RestartPolicyAlways {
			l.add(rp, "%q is not allowed: a StatefulSet's pods always restart (Always); use a Job to run to completion", t.Spec.RestartPolicy)
		}
		usp := sp.Field("updateStrategy")
		if s.UpdateStrategy.Type == "OnDelete" {
			l.unsupported(usp.Field("type"), "OnDelete is not supported by pelagos-agent: pods here are removed only by the agent, so they would never be updated; use RollingUpdate")
		}
		if ru := s.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
			validateSurge(l, usp.Field("rollingUpdate"), ru.MaxUnavailable, nil, true)
		}
		last := int64(*s.Replicas) - 1
		if s.Ordinals != nil {
			last += int64(s.Ordinals.Start)
		}
		if msgs := content.IsDNS1123Label(w.Metadata.Name); len(msgs) > 0 {
			l.add(root.Field("metadata").Field("name"), "%q is invalid: %s (a StatefulSet's name is a DNS label)", w.Metadata.Name, strings.Join(msgs, "; "))
		} else {
			validateNameRoom(l, root, w.Metadata.Name, 1+len(strconv.FormatInt(max(last, 0), 10)), "its pods are named <name>-<ordinal> and each pod's host name is its name")
		}
	case *DaemonSet:
		s := &w.Spec
		validateSelector(l, sp.Field("selector"), s.Selector, t, true)
		if t.Spec.RestartPolicy != RestartPolicyAlways {
			l.add(rp, "%q is not allowed: a DaemonSet's pod always restarts (Always); use a Job to run to completion", t.Spec.RestartPolicy)
		}
		usp := sp.Field("updateStrategy")
		if s.UpdateStrategy.Type == "OnDelete" {
			l.unsupported(usp.Field("type"), "OnDelete is not supported by pelagos-agent: the pod here is removed only by the agent, so it would never be updated; use RollingUpdate")
		}
		if ru := s.UpdateStrategy.RollingUpdate; ru != nil {
			validateSurge(l, usp.Field("rollingUpdate"), ru.MaxUnavailable, ru.MaxSurge, false)
			if ru.MaxSurge != nil && ru.MaxUnavailable != nil && !zeroIntOrPercent(*ru.MaxSurge) && !zeroIntOrPercent(*ru.MaxUnavailable) {
				l.add(usp.Field("rollingUpdate").Field("maxSurge"), "may not be set when maxUnavailable is not 0: with one pod, either the new pod starts first (maxSurge) or the old one goes first (maxUnavailable)")
			}
		}
	case *Job:
		s := &w.Spec
		replicas("parallelism", s.Parallelism)
		replicas("completions", s.Completions)
		if s.Selector != nil {
			if s.ManualSelector == nil || !*s.ManualSelector {
				l.add(sp.Field("selector"), "is generated for a Job: delete it, or set manualSelector: true to use your own")
			} else {
				validateSelector(l, sp.Field("selector"), s.Selector, t, true)
			}
		}
		if t.Spec.RestartPolicy != RestartPolicyOnFailure && t.Spec.RestartPolicy != RestartPolicyNever {
			l.add(rp, "%q is not allowed: a Job's pods must be OnFailure or Never (set restartPolicy)", t.Spec.RestartPolicy)
		}
		if s.CompletionMode != nil && *s.CompletionMode == IndexedCompletion {
			l.unsupported(sp.Field("completionMode"), "not supported yet: Indexed Jobs; delete this line to run a NonIndexed Job")
		}
	}
	errs = append(errs, l.errs...)
	sortErrors(errs)
	return errs
}

// validateSelector checks a workload's selector: present (when required),
// well formed, and matching the template's labels, or the controller would
// not recognise its own pods.
func validateSelector(l *errList, p fieldPath, sel *LabelSelector, t *PodTemplateSpec, required bool) {
	if sel == nil {
		if required {
			l.add(p, "is required: a label selector matching spec.template.metadata.labels")
		}
		return
	}
	if len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0 {
		l.add(p, "must not be empty: it would select every pod")
		return
	}
	before := len(l.errs)
	validateLabelSelector(l, p, sel)
	if len(l.errs) > before {
		return
	}
	if !sel.Matches(t.Metadata.Labels) {
		l.add(p, "does not match spec.template.metadata.labels (%s): the pods would not be this workload's", formatLabels(t.Metadata.Labels))
	}
}

// Matches reports whether a set of labels satisfies the selector.
func (s *LabelSelector) Matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		in := false
		for _, x := range r.Values {
			if x == v {
				in = true
			}
		}
		switch r.Operator {
		case LabelSelectorOpIn:
			if !ok || !in {
				return false
			}
		case LabelSelectorOpNotIn:
			if ok && in {
				return false
			}
		case LabelSelectorOpExists:
			if !ok {
				return false
			}
		case LabelSelectorOpDoesNotExist:
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// validateSurge checks maxUnavailable and maxSurge: counts (>= 0) or
// percentages ("25%"), not both zero.
func validateSurge(l *errList, p fieldPath, unavailable, surge *IntOrString, unavailableAtLeastOne bool) {
	for _, f := range []struct {
		name string
		v    *IntOrString
	}{{"maxUnavailable", unavailable}, {"maxSurge", surge}} {
		if f.v == nil {
			continue
		}
		if _, err := ScaledValue(*f.v, 100, false); err != nil {
			l.add(p.Field(f.name), "%s", err)
		}
	}
	if unavailableAtLeastOne && unavailable != nil && zeroIntOrPercent(*unavailable) {
		l.add(p.Field("maxUnavailable"), "must be at least 1 (or a percentage above 0%%)")
	}
	if unavailable != nil && surge != nil && zeroIntOrPercent(*unavailable) && zeroIntOrPercent(*surge) {
		l.add(p.Field("maxUnavailable"), "may not be 0 when maxSurge is 0: no pod could ever be replaced")
	}
}

func zeroIntOrPercent(v IntOrString) bool {
	n, err := ScaledValue(v, 100, false)
	return err == nil && n == 0
}

// ScaledValue resolves a count or a percentage of total, rounding a
// percentage up or down as Kubernetes does (maxSurge up, maxUnavailable
// down).
func ScaledValue(v IntOrString, total int, roundUp bool) (int, error) {
	if !v.IsString {
		if v.IntVal < 0 {
			return 0, fmt.Errorf("%d must not be negative", v.IntVal)
		}
		return int(v.IntVal), nil
	}
	s, ok := strings.CutSuffix(v.StrVal, "%")
	n, err := strconv.Atoi(s)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("%q must be a count or a percentage such as 25%%", v.StrVal)
	}
	if n > 100 {
		return 0, fmt.Errorf("%q must not be above 100%%", v.StrVal)
	}
	if roundUp {
		return (n*total + 99) / 100, nil
	}
	return n * total / 100, nil
}

// validateNameRoom refuses a workload name too long for the names its
// pods get.
func validateNameRoom(l *errList, root fieldPath, name string, suffix int, why string) {
	const maxLabel = 63
	if len(name) > 0 && len(name)+suffix > maxLabel {
		l.add(root.Field("metadata").Field("name"), "%q is too long: must be at most %d characters, because %s (at most %d)", name, maxLabel-suffix, why, maxLabel)
	}
}

// The workload kinds' refused and ignored fields, beside the pod's
// (strict.go).
func init() {
	unsupportedFields[reflect.TypeFor[StatefulSetSpec]()] = []string{"volumeClaimTemplates", "persistentVolumeClaimRetentionPolicy"}
	unsupportedFields[reflect.TypeFor[JobSpec]()] = []string{"podFailurePolicy", "successPolicy", "backoffLimitPerIndex",
		"maxFailedIndexes", "managedBy", "scheduling"}
	maps.Copy(unsupportedWhy, map[string]string{
		"StatefulSetSpec.volumeClaimTemplates":                 "per-pod volume claims are not made here; mount a volume declared in spec.template.spec.volumes instead",
		"StatefulSetSpec.persistentVolumeClaimRetentionPolicy": "there are no per-pod claims here to keep or delete; delete this block",
		"JobSpec.managedBy":                                    "an external controller would run this Job, and none runs here; delete this line to let the agent run it",
	})
	for _, t := range []reflect.Type{reflect.TypeFor[Deployment](), reflect.TypeFor[StatefulSet](), reflect.TypeFor[DaemonSet](), reflect.TypeFor[Job]()} {
		ignoredFields[t] = []string{"status"}
	}
}
