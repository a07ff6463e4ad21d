package reconcile

import (
	"strconv"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Annotations the reconciler keeps on runtime objects, beside the hashes the
// contract names. Keeping them on the objects (not in agent state) is what
// lets a restarted agent carry on exactly where the last one stopped.
const (
	// AnnotationCrashCount: the crash-loop position a container was started with.
	AnnotationCrashCount = "pelagos.io/crash-count"
	// AnnotationInit marks an init container.
	AnnotationInit = "pelagos.io/init"
	// AnnotationSidecar marks a native sidecar with its position among the
	// pod's init containers: the stop order when the manifest is gone.
	AnnotationSidecar = "pelagos.io/sidecar"
	// AnnotationGracePeriod: the pod's termination grace period in seconds,
	// stored on the sandbox so a removed manifest still stops gracefully.
	AnnotationGracePeriod = "pelagos.io/grace-period-seconds"
	// AnnotationPreStop: the container's preStop hook (its name, ports and
	// handler as manifest JSON), stored on the container so the hook still
	// runs when the manifest is gone, even after an agent restart.
	AnnotationPreStop = "pelagos.io/pre-stop"
)

// DesiredContainer is one container of a desired pod, translated to the
// runtime's terms.
type DesiredContainer struct {
	Name string
	Hash string
	Init bool
	// Sidecar marks a native sidecar (an init container with
	// restartPolicy Always): started in order with the init containers,
	// kept running beside the app, stopped after it.
	Sidecar bool
	// StartupProbe: the container has one; until it passes, the container
	// has not started (a sidecar then holds the next init container back).
	StartupProbe bool
	PullPolicy   runtime.PullPolicy
	// Config is complete except SandboxID, Attempt and the reconciler's
	// annotations, which the apply step fills in.
	Config runtime.ContainerConfig
	// VolumeImages are the images of the image volumes the container
	// mounts, pulled with its own image before it starts.
	VolumeImages []VolumeImage
}

// VolumeImage is the image of an image volume (volumes[].image).
type VolumeImage struct {
	Volume     string
	Ref        string
	PullPolicy runtime.PullPolicy
}

// DesiredPod is a pod as the manifests want it, translated to the runtime's
// terms. It is plain data: Diff needs nothing else.
type DesiredPod struct {
	Key         runtime.PodKey
	Source      string // manifest file
	SandboxHash string
	Sandbox     runtime.SandboxConfig
	Init        []DesiredContainer
	Containers  []DesiredContainer
	Restart     RestartPolicy
	Grace       time.Duration
	QOSClass    string // Guaranteed, Burstable or BestEffort
	// PullAuth holds credentials from imagePullSecrets: never printed,
	// serialised or logged.
	PullAuth []runtime.RegistryAuth `json:"-"`
	// Manifest is the pod as written (for status output); opaque here.
	Manifest any
	// Created is when the manifest file was created (Translator.FileTime),
	// zero when unknown: the first key of the admission order.
	Created time.Time
	// Hold, when set, means the pod is desired but must own nothing: it
	// is not meant for this node (NodeMismatch), or its controller holds
	// it back (HostPortConflict). Whatever it runs is removed, and it is
	// shown Pending with the hold's reason and message.
	Hold *Hold
	// Owner is the workload that made the pod, if any (reconcile/workload).
	Owner *OwnerRef
	// Terminal marks a pod that has finished for good (a Job's completed
	// or failed pod, kept for its status and logs): what it still has is
	// kept as it is, and nothing of it is ever created or started again,
	// not even after a reboot wiped its sandbox.
	Terminal bool
}

// Hold is why a desired pod owns nothing; see DesiredPod.Hold.
type Hold struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Hold reasons.
const (
	// ReasonNodeMismatch: the pod's nodeName, nodeSelector, required node
	// affinity or tolerations say it is meant for another node. It is not
	// an error: one manifest directory serves many nodes.
	ReasonNodeMismatch = "NodeMismatch"
	// ReasonHostPortConflict: another pod of the same workload holds the
	// hostPort this one needs.
	ReasonHostPortConflict = "HostPortConflict"
)

// OwnerRef names the workload that made a pod, as metadata.ownerReferences
// does in Kubernetes.
type OwnerRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller bool   `json:"controller"`
}

// ObservedPod is what the runtime reports for one pod key.
type ObservedPod struct {
	Sandboxes  []*runtime.Sandbox
	Containers []*runtime.Container
}

func crashCountOf(c *runtime.Container) int {
	n, _ := strconv.Atoi(c.Annotations[AnnotationCrashCount])
	return n
}

func graceOf(s *runtime.Sandbox) time.Duration {
	n, err := strconv.Atoi(s.Annotations[AnnotationGracePeriod])
	if err != nil || n < 0 {
		return 30 * time.Second
	}
	return time.Duration(n) * time.Second
}
