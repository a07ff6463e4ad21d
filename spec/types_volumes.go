package spec

import (
	"k8s.io/apimachinery/pkg/api/resource"
)

// Volume sources that project pod information (downwardAPI, projected)
// and node-local named volumes (persistentVolumeClaim, with the
// PersistentVolumeClaim document that sizes them), and image volumes.
// Same JSON names as core/v1.

// SupplementalGroupsPolicy says which groups a container's process gets
// beside its primary group.
type SupplementalGroupsPolicy string

// Supplemental groups policies, as in Kubernetes.
const (
	SupplementalGroupsMerge  SupplementalGroupsPolicy = "Merge"
	SupplementalGroupsStrict SupplementalGroupsPolicy = "Strict"
)

// DownwardAPIVolumeSource writes pod fields and container resources as
// files.
type DownwardAPIVolumeSource struct {
	Items       []DownwardAPIVolumeFile `json:"items,omitempty" validate:"dive"`
	DefaultMode *int32                  `json:"defaultMode,omitempty" validate:"omitempty,range=0:511"`
}

// DownwardAPIVolumeFile is one file of a downward-API volume: exactly one
// of fieldRef and resourceFieldRef.
type DownwardAPIVolumeFile struct {
	Path             string                 `json:"path" validate:"required,volfile"`
	FieldRef         *ObjectFieldSelector   `json:"fieldRef,omitempty"`
	ResourceFieldRef *ResourceFieldSelector `json:"resourceFieldRef,omitempty"`
	Mode             *int32                 `json:"mode,omitempty" validate:"omitempty,range=0:511"`
}

// ResourceFieldSelector selects a container's request or limit, such as
// limits.memory, in units of divisor (default 1).
type ResourceFieldSelector struct {
	ContainerName string             `json:"containerName,omitempty"`
	Resource      string             `json:"resource" validate:"required"`
	Divisor       *resource.Quantity `json:"divisor,omitempty"`
}

// ProjectedVolumeSource puts several sources in one directory.
type ProjectedVolumeSource struct {
	Sources     []VolumeProjection `json:"sources" validate:"dive"`
	DefaultMode *int32             `json:"defaultMode,omitempty" validate:"omitempty,range=0:511"`
}

// VolumeProjection is one source of a projected volume; exactly one member
// is set. Service-account tokens, cluster trust bundles and pod
// certificates need an API server and are refused (strict.go).
type VolumeProjection struct {
	Secret      *SecretProjection      `json:"secret,omitempty"`
	DownwardAPI *DownwardAPIProjection `json:"downwardAPI,omitempty"`
	ConfigMap   *ConfigMapProjection   `json:"configMap,omitempty"`
}

// SecretProjection projects a Secret's keys into a projected volume.
type SecretProjection struct {
	LocalObjectReference `json:",inline"`
	Items                []KeyToPath `json:"items,omitempty" validate:"dive"`
	Optional             *bool       `json:"optional,omitempty"`
}

// ConfigMapProjection projects a ConfigMap's keys into a projected volume.
type ConfigMapProjection struct {
	LocalObjectReference `json:",inline"`
	Items                []KeyToPath `json:"items,omitempty" validate:"dive"`
	Optional             *bool       `json:"optional,omitempty"`
}

// DownwardAPIProjection projects pod fields into a projected volume.
type DownwardAPIProjection struct {
	Items []DownwardAPIVolumeFile `json:"items,omitempty" validate:"dive"`
}

// PersistentVolumeClaimVolumeSource mounts a node-local named volume: a
// directory under the state root, named by the claim in the pod's
// namespace, made on first use and kept when the pod goes.
type PersistentVolumeClaimVolumeSource struct {
	ClaimName string `json:"claimName" validate:"required,dns1123subdomain"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// PersistentVolumeClaim is a Kubernetes v1 PersistentVolumeClaim document:
// here it only sizes the node-local volume of its name (a quota where the
// filesystem enforces one). A claim a pod uses need not have one.
type PersistentVolumeClaim struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta                `json:"metadata"`
	Spec     PersistentVolumeClaimSpec `json:"spec"`
}

// PersistentVolumeAccessMode is a claim's access mode. On one node every
// mode means the same: the pods of this node share the directory.
type PersistentVolumeAccessMode string

// PersistentVolumeClaimSpec is the supported subset of core/v1's.
type PersistentVolumeClaimSpec struct {
	AccessModes []PersistentVolumeAccessMode `json:"accessModes,omitempty" validate:"dive,oneof=ReadWriteOnce ReadOnlyMany ReadWriteMany ReadWriteOncePod"`
	Resources   VolumeResourceRequirements   `json:"resources,omitempty"`
	// StorageClassName is accepted and means nothing here: every claim is
	// a directory of this node.
	StorageClassName *string `json:"storageClassName,omitempty"`
	// VolumeMode must be Filesystem (the default); Block is refused.
	VolumeMode *string `json:"volumeMode,omitempty" validate:"omitempty,oneof=Filesystem Block"`
}

// VolumeResourceRequirements holds a claim's storage request and limit.
type VolumeResourceRequirements struct {
	Limits   ResourceList `json:"limits,omitempty"`
	Requests ResourceList `json:"requests,omitempty"`
}

// ResourceStorage is a claim's size.
const ResourceStorage ResourceName = "storage"

// StorageRequest is the claim's requested size in bytes, 0 when it has
// none.
func (c *PersistentVolumeClaim) StorageRequest() int64 {
	q, ok := c.Spec.Resources.Requests[ResourceStorage]
	if !ok {
		return 0
	}
	return q.Value()
}

// ImageVolumeSource mounts the content of an OCI image (KEP-4639): its
// unpacked layers, always read-only, whatever the volumeMount's readOnly
// says.
type ImageVolumeSource struct {
	// Reference is required in a pod (the API server's rule).
	Reference string `json:"reference,omitempty" validate:"required,imageref"`
	// PullPolicy defaults as a container's imagePullPolicy does: Always
	// for :latest or no tag, IfNotPresent otherwise.
	PullPolicy PullPolicy `json:"pullPolicy,omitempty" validate:"omitempty,oneof=Always IfNotPresent Never"`
}
