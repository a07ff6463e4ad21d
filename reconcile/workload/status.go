package workload

import (
	"time"
)

// Object is a workload as the API reports it: Kubernetes' shape (apps/v1
// or batch/v1), its spec as written (defaulted) and the status the
// controller keeps.
type Object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   Meta   `json:"metadata"`
	Spec       any    `json:"spec"`
	Status     any    `json:"status"`
}

// Meta is the workload's metadata.
type Meta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace"`
	UID               string            `json:"uid"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	CreationTimestamp time.Time         `json:"creationTimestamp"`
	Generation        int64             `json:"generation"`
}

// Condition is apps/v1's and batch/v1's condition shape.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
}

// DeploymentStatus is apps/v1's.
type DeploymentStatus struct {
	ObservedGeneration  int64       `json:"observedGeneration"`
	Replicas            int32       `json:"replicas"`
	UpdatedReplicas     int32       `json:"updatedReplicas"`
	ReadyReplicas       int32       `json:"readyReplicas"`
	AvailableReplicas   int32       `json:"availableReplicas"`
	UnavailableReplicas int32       `json:"unavailableReplicas"`
	Conditions          []Condition `json:"conditions,omitempty"`
}

// StatefulSetStatus is apps/v1's.
type StatefulSetStatus struct {
	ObservedGeneration int64       `json:"observedGeneration"`
	Replicas           int32       `json:"replicas"`
	ReadyReplicas      int32       `json:"readyReplicas"`
	CurrentReplicas    int32       `json:"currentReplicas"`
	UpdatedReplicas    int32       `json:"updatedReplicas"`
	AvailableReplicas  int32       `json:"availableReplicas"`
	CurrentRevision    string      `json:"currentRevision,omitempty"`
	UpdateRevision     string      `json:"updateRevision,omitempty"`
	Conditions         []Condition `json:"conditions,omitempty"`
}

// DaemonSetStatus is apps/v1's, for one node.
type DaemonSetStatus struct {
	ObservedGeneration     int64       `json:"observedGeneration"`
	CurrentNumberScheduled int32       `json:"currentNumberScheduled"`
	NumberMisscheduled     int32       `json:"numberMisscheduled"`
	DesiredNumberScheduled int32       `json:"desiredNumberScheduled"`
	NumberReady            int32       `json:"numberReady"`
	UpdatedNumberScheduled int32       `json:"updatedNumberScheduled"`
	NumberAvailable        int32       `json:"numberAvailable"`
	NumberUnavailable      int32       `json:"numberUnavailable"`
	Conditions             []Condition `json:"conditions,omitempty"`
}

// JobStatus is batch/v1's.
type JobStatus struct {
	Conditions     []Condition `json:"conditions,omitempty"`
	StartTime      *time.Time  `json:"startTime,omitempty"`
	CompletionTime *time.Time  `json:"completionTime,omitempty"`
	Active         int32       `json:"active"`
	Succeeded      int32       `json:"succeeded"`
	Failed         int32       `json:"failed"`
	Ready          int32       `json:"ready"`
}

func condition(typ string, ok bool, reason, message string, since time.Time) Condition {
	s := "False"
	if ok {
		s = "True"
	}
	return Condition{Type: typ, Status: s, Reason: reason, Message: message, LastTransitionTime: since}
}
