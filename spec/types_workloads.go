package spec

// Workload kinds. A Deployment, StatefulSet, DaemonSet or Job in the
// manifest directory is run by the agent's workload controllers
// (reconcile/workload), which make pods from its template as Kubernetes'
// controllers do, with the single-node meaning: replicas are this node's
// replicas, a DaemonSet is one pod. The types are the subset of apps/v1
// and batch/v1 that pelagos-agent implements; the template is a PodSpec
// validated exactly as a Pod's (Workload.TemplatePod).

// API versions and kinds of the workload objects.
const (
	APIVersionApps  = "apps/v1"
	APIVersionBatch = "batch/v1"

	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindJob         = "Job"
)

// PodTemplateSpec is the pod a workload makes copies of. Its metadata has
// no name: each pod is named by its controller.
type PodTemplateSpec struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     PodSpec    `json:"spec"`
}

// Deployment runs replicas of a pod and rolls them to a new template.
type Deployment struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     DeploymentSpec `json:"spec"`
}

// DeploymentSpec is apps/v1's, without the fields that need ReplicaSets.
type DeploymentSpec struct {
	Replicas        *int32             `json:"replicas,omitempty"`
	Selector        *LabelSelector     `json:"selector"`
	Template        PodTemplateSpec    `json:"template" validate:"-"`
	Strategy        DeploymentStrategy `json:"strategy,omitempty"`
	MinReadySeconds int32              `json:"minReadySeconds,omitempty" validate:"range=0:2147483647"`
	// RevisionHistoryLimit is accepted for compatibility: no ReplicaSets
	// are kept, so there is no history to limit.
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty" validate:"omitempty,range=0:2147483647"`
	// Paused is accepted when false; a paused rollout is refused
	// (validation): the pods follow the file.
	Paused bool `json:"paused,omitempty"`
	// ProgressDeadlineSeconds: a rollout that makes no progress for this
	// long is reported (condition Progressing, reason
	// ProgressDeadlineExceeded), as in Kubernetes.
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty" validate:"omitempty,range=1:2147483647"`
}

// Deployment strategies.
const (
	RecreateDeploymentStrategyType      = "Recreate"
	RollingUpdateDeploymentStrategyType = "RollingUpdate"
)

// DeploymentStrategy is how pods are replaced by a new template.
type DeploymentStrategy struct {
	Type          string                   `json:"type,omitempty" validate:"omitempty,oneof=Recreate RollingUpdate"`
	RollingUpdate *RollingUpdateDeployment `json:"rollingUpdate,omitempty"`
}

// RollingUpdateDeployment bounds a rolling update: pods below the
// replicas (maxUnavailable) and above them (maxSurge), as counts or
// percentages of replicas.
type RollingUpdateDeployment struct {
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
	MaxSurge       *IntOrString `json:"maxSurge,omitempty"`
}

// StatefulSet runs replicas named <name>-0 ... <name>-N-1.
type StatefulSet struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Spec     StatefulSetSpec `json:"spec"`
}

// StatefulSetSpec is apps/v1's, without volume claim templates.
type StatefulSetSpec struct {
	Replicas *int32          `json:"replicas,omitempty"`
	Selector *LabelSelector  `json:"selector"`
	Template PodTemplateSpec `json:"template" validate:"-"`
	// ServiceName becomes each pod's subdomain, as in Kubernetes; there
	// is no Service (and no DNS record) behind it on one node.
	ServiceName string `json:"serviceName,omitempty" validate:"omitempty,dns1123label"`
	// PodManagementPolicy: OrderedReady (default) starts pod N only when
	// pods 0..N-1 run and are ready, and removes them in reverse; Parallel
	// starts and removes them all at once.
	PodManagementPolicy  string                    `json:"podManagementPolicy,omitempty" validate:"omitempty,oneof=OrderedReady Parallel"`
	UpdateStrategy       StatefulSetUpdateStrategy `json:"updateStrategy,omitempty"`
	RevisionHistoryLimit *int32                    `json:"revisionHistoryLimit,omitempty" validate:"omitempty,range=0:2147483647"`
	MinReadySeconds      int32                     `json:"minReadySeconds,omitempty" validate:"range=0:2147483647"`
	Ordinals             *StatefulSetOrdinals      `json:"ordinals,omitempty"`
}

// StatefulSetUpdateStrategy is how pods get a new template.
type StatefulSetUpdateStrategy struct {
	Type          string                            `json:"type,omitempty" validate:"omitempty,oneof=RollingUpdate OnDelete"`
	RollingUpdate *RollingUpdateStatefulSetStrategy `json:"rollingUpdate,omitempty"`
}

// RollingUpdateStatefulSetStrategy: pods with an ordinal below Partition
// keep their template; MaxUnavailable pods are updated at a time.
type RollingUpdateStatefulSetStrategy struct {
	Partition      *int32       `json:"partition,omitempty" validate:"omitempty,range=0:2147483647"`
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
}

// StatefulSetOrdinals sets the first pod's ordinal.
type StatefulSetOrdinals struct {
	Start int32 `json:"start" validate:"range=0:2147483647"`
}

// DaemonSet runs one pod on every node its template matches: here, one
// pod on this node, if the template is meant for it.
type DaemonSet struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     DaemonSetSpec `json:"spec"`
}

// DaemonSetSpec is apps/v1's.
type DaemonSetSpec struct {
	Selector             *LabelSelector          `json:"selector"`
	Template             PodTemplateSpec         `json:"template" validate:"-"`
	UpdateStrategy       DaemonSetUpdateStrategy `json:"updateStrategy,omitempty"`
	MinReadySeconds      int32                   `json:"minReadySeconds,omitempty" validate:"range=0:2147483647"`
	RevisionHistoryLimit *int32                  `json:"revisionHistoryLimit,omitempty" validate:"omitempty,range=0:2147483647"`
}

// DaemonSetUpdateStrategy is how the pod gets a new template.
type DaemonSetUpdateStrategy struct {
	Type          string                  `json:"type,omitempty" validate:"omitempty,oneof=RollingUpdate OnDelete"`
	RollingUpdate *RollingUpdateDaemonSet `json:"rollingUpdate,omitempty"`
}

// RollingUpdateDaemonSet: with maxSurge the new pod starts before the old
// one goes; with maxUnavailable (the default) the old one goes first.
type RollingUpdateDaemonSet struct {
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
	MaxSurge       *IntOrString `json:"maxSurge,omitempty"`
}

// Job runs pods to completion.
type Job struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     JobSpec    `json:"spec"`
}

// JobSpec is batch/v1's, without per-index back-off and failure or
// success policies.
type JobSpec struct {
	Parallelism           *int32          `json:"parallelism,omitempty" validate:"omitempty,range=0:2147483647"`
	Completions           *int32          `json:"completions,omitempty" validate:"omitempty,range=0:2147483647"`
	ActiveDeadlineSeconds *int64          `json:"activeDeadlineSeconds,omitempty" validate:"omitempty,range=1:31536000"`
	BackoffLimit          *int32          `json:"backoffLimit,omitempty" validate:"omitempty,range=0:2147483647"`
	Selector              *LabelSelector  `json:"selector,omitempty"`
	ManualSelector        *bool           `json:"manualSelector,omitempty"`
	Template              PodTemplateSpec `json:"template" validate:"-"`
	// TTLSecondsAfterFinished: this long after the Job completes or
	// fails, its pods are removed; the Job stays finished (its manifest is
	// still in the directory) and does not run again.
	TTLSecondsAfterFinished *int32  `json:"ttlSecondsAfterFinished,omitempty" validate:"omitempty,range=0:31536000"`
	CompletionMode          *string `json:"completionMode,omitempty" validate:"omitempty,oneof=NonIndexed Indexed"`
	Suspend                 *bool   `json:"suspend,omitempty"`
	PodReplacementPolicy    *string `json:"podReplacementPolicy,omitempty" validate:"omitempty,oneof=TerminatingOrFailed Failed"`
}

// Job completion modes.
const (
	NonIndexedCompletion = "NonIndexed"
	IndexedCompletion    = "Indexed"
)
