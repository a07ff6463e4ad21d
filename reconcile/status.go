package reconcile

import (
	"slices"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Pod phases.
const (
	PhasePending   = "Pending"
	PhaseRunning   = "Running"
	PhaseSucceeded = "Succeeded"
	PhaseFailed    = "Failed"
	PhaseUnknown   = "Unknown"
)

// Pod is a pod as the API reports it: Kubernetes' core/v1 Pod shape, so
// scripts written for `kubectl get pods -o json` read it unchanged.
type Pod struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       any        `json:"spec,omitempty"`
	Status     PodStatus  `json:"status"`
}

// ObjectMeta is the metadata subset we report.
type ObjectMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace"`
	UID               string            `json:"uid,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	CreationTimestamp *time.Time        `json:"creationTimestamp,omitempty"`
}

// PodList is what `get pods -o json` prints.
type PodList struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Items      []Pod  `json:"items"`
}

// PodCondition is one of Initialized, ContainersReady, Ready.
type PodCondition struct {
	Type               string     `json:"type"`
	Status             string     `json:"status"` // "True" | "False"
	Reason             string     `json:"reason,omitempty"`
	LastTransitionTime *time.Time `json:"lastTransitionTime,omitempty"`
}

// PodIP is one pod address.
type PodIP struct {
	IP string `json:"ip"`
}

// PodStatus follows core/v1 PodStatus, plus our own block under "pelagos".
type PodStatus struct {
	Phase                 string            `json:"phase"`
	Reason                string            `json:"reason,omitempty"`
	Message               string            `json:"message,omitempty"`
	Conditions            []PodCondition    `json:"conditions,omitempty"`
	PodIP                 string            `json:"podIP,omitempty"`
	PodIPs                []PodIP           `json:"podIPs,omitempty"`
	StartTime             *time.Time        `json:"startTime,omitempty"`
	InitContainerStatuses []ContainerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses     []ContainerStatus `json:"containerStatuses,omitempty"`
	QOSClass              string            `json:"qosClass,omitempty"`
	Pelagos               AgentPodStatus    `json:"pelagos"`
}

// AgentPodStatus is what only this agent knows.
type AgentPodStatus struct {
	SourceFile string       `json:"sourceFile,omitempty"`
	SandboxID  string       `json:"sandboxID,omitempty"`
	NetNS      string       `json:"netns,omitempty"`
	PausePID   int          `json:"pausePID,omitempty"`
	LastError  *ManifestErr `json:"lastError,omitempty"`
	// Stale is set when the manifest is broken and the pod runs its last
	// good version.
	Stale bool `json:"stale,omitempty"`
	// SetAside lists state records of the pod the runtime could not use
	// and moved aside (runtime.RecordProblem), until the pod runs again
	// from a fresh sandbox.
	SetAside []runtime.RecordProblem `json:"setAside,omitempty"`
}

// ManifestErr is an error the agent reports about a pod: from its manifest
// (file and field) or from the last reconcile step.
type ManifestErr struct {
	File    string    `json:"file,omitempty"`
	Field   string    `json:"field,omitempty"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// ContainerStatus follows core/v1 ContainerStatus.
type ContainerStatus struct {
	Name         string         `json:"name"`
	State        ContainerState `json:"state"`
	LastState    ContainerState `json:"lastState"`
	Ready        bool           `json:"ready"`
	RestartCount int            `json:"restartCount"`
	Image        string         `json:"image"`
	ImageID      string         `json:"imageID"`
	ContainerID  string         `json:"containerID,omitempty"`
	Started      *bool          `json:"started,omitempty"`
}

// ContainerState has exactly one member set (or none for "no state yet").
type ContainerState struct {
	Waiting    *StateWaiting    `json:"waiting,omitempty"`
	Running    *StateRunning    `json:"running,omitempty"`
	Terminated *StateTerminated `json:"terminated,omitempty"`
}

type StateWaiting struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type StateRunning struct {
	StartedAt time.Time `json:"startedAt"`
}

type StateTerminated struct {
	ExitCode    int       `json:"exitCode"`
	Signal      int       `json:"signal,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Message     string    `json:"message,omitempty"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	FinishedAt  time.Time `json:"finishedAt,omitzero"`
	ContainerID string    `json:"containerID,omitempty"`
}

// podMemory is what the agent remembers about a pod between passes that the
// runtime cannot tell it: errors of the last step, back-offs of failed pulls
// and creations, restart counts carried from a sandbox that died. It is lost
// on restart, as kubelet's in-memory back-offs are: the next pass finds the
// same errors again, and a count carried is kept on the next container.
type podMemory struct {
	lastErr    *ManifestErr
	stale      bool
	failures   int               // consecutive failed passes (step backoff)
	waiting    map[string]string // container -> ErrImagePull, CreateContainerError, CreateContainerConfigError
	waitingMsg map[string]string
	notReady   map[string]bool // container -> readiness probe says not ready (issue 8)
	// started: container -> the ID of the attempt whose startup probe
	// passed (SetStarted).
	started map[string]string
	// pulls: failed pulls by image reference; starts: failed creations by
	// container name. Diff holds them back until their back-off ends.
	pulls  map[string]Retry
	starts map[string]Retry
	// carry: the last container of each name from sandboxes that died.
	carry map[string]*runtime.Container
	// setAside: records of the pod the runtime set aside (status).
	setAside []runtime.RecordProblem
	// volumesFor and volumesBox: the desired pod and sandbox whose
	// projected volumes were last handed to the runtime.
	volumesFor *DesiredPod
	volumesBox string
	// outOfCapacity: an OutOfCapacity event was recorded for this wait.
	outOfCapacity bool
}

// containerRef is the containerID Kubernetes prints: runtime://id.
func containerRef(id string) string {
	if id == "" {
		return ""
	}
	return "pelagos://" + id
}

func terminated(c *runtime.Container) *StateTerminated {
	reason := c.Reason
	if reason == "" {
		reason = runtime.ReasonError
		if c.ExitCode == 0 {
			reason = runtime.ReasonCompleted
		}
	}
	return &StateTerminated{ExitCode: c.ExitCode, Reason: reason, Message: c.Message,
		StartedAt: c.StartedAt, FinishedAt: c.FinishedAt, ContainerID: containerRef(c.ID)}
}

func boolPtr(b bool) *bool { return &b }

// BuildStatus derives the Kubernetes-shaped status of a pod. desired may be
// nil (a pod being removed); plan carries the waits of the last pass;
// probing says a prober reports startup probes (mem.started).
func buildStatus(d *DesiredPod, obs ObservedPod, plan *Plan, mem *podMemory, now time.Time, probing bool) PodStatus {
	var st PodStatus
	var box *runtime.Sandbox
	for _, s := range obs.Sandboxes {
		if s.State == runtime.SandboxReady && (d == nil || s.Hash() == d.SandboxHash) {
			if box == nil || s.CreatedAt.After(box.CreatedAt) {
				box = s
			}
		}
	}
	if d != nil {
		st.Pelagos.SourceFile = d.Source
	}
	if mem != nil {
		st.Pelagos.LastError = mem.lastErr
		st.Pelagos.Stale = mem.stale
		st.Pelagos.SetAside = slices.Clone(mem.setAside)
	}
	waits := map[string]Wait{}
	// tried: containers this pass tried to pull or start; only for them
	// does a failure the pass remembers (ErrImagePull...) still hold.
	tried := map[string]bool{}
	if plan != nil {
		for _, w := range plan.Waits {
			waits[w.Container] = w
		}
		for _, a := range plan.Actions {
			if a.Kind == ActPullImage || a.Kind == ActStartContainer {
				tried[a.Container] = true
			}
		}
	}
	var byName map[string][]*runtime.Container
	if box != nil {
		st.Pelagos.SandboxID = box.ID
		st.Pelagos.NetNS = box.NetNSName
		st.Pelagos.PausePID = box.PausePID
		st.PodIP = box.IP
		if box.IP != "" {
			st.PodIPs = []PodIP{{IP: box.IP}}
		}
		t := box.CreatedAt
		st.StartTime = &t
		var cs []*runtime.Container
		for _, c := range obs.Containers {
			if c.SandboxID == box.ID {
				cs = append(cs, c)
			}
		}
		byName = attempts(cs)
	}
	if d == nil {
		st.Phase = PhaseRunning
		st.Reason = "Terminating"
		return st
	}

	// Under Never, a pod whose sandbox died runs nothing again (Diff): its
	// containers show how they ended in the sandbox that died.
	finished := d.Restart == RestartNever && mem != nil && len(mem.carry) > 0 && len(byName) == 0
	one := func(dc DesiredContainer) ContainerStatus {
		cs := ContainerStatus{Name: dc.Name, Image: dc.Config.Image, Started: boolPtr(false)}
		list := byName[dc.Name]
		var cur, prev *runtime.Container
		for _, c := range list {
			if c.State == runtime.ContainerCreated {
				continue
			}
			if cur == nil {
				cur = c
			} else if prev == nil {
				prev = c
			}
		}
		if cur == nil && mem != nil && (!dc.Init || dc.Sidecar || finished) {
			// Not run in this sandbox yet: how it ended in the one that
			// died, with its count.
			cur = mem.carry[dc.Name]
		}
		if finished {
			if cur == nil {
				cs.State.Terminated = &StateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown",
					Message: "the pod's sandbox died before the container ran; under restartPolicy Never nothing runs again"}
				return cs
			}
			cs.RestartCount, cs.ContainerID, cs.ImageID = cur.Attempt, containerRef(cur.ID), cur.ImageID
			cs.State.Terminated = terminated(cur)
			return cs
		}
		if cur != nil {
			cs.RestartCount = cur.Attempt
			cs.ContainerID = containerRef(cur.ID)
			cs.ImageID = cur.ImageID
			if cur.Image != "" {
				cs.Image = cur.Image
			}
		}
		if mem != nil {
			// A failed creation counts as a restart, as in kubelet.
			if f, ok := mem.starts[dc.Name]; ok && f.Hash == dc.Hash {
				cs.RestartCount = max(cs.RestartCount, f.Attempt)
			}
		}
		if prev != nil {
			cs.LastState.Terminated = terminated(prev)
		}
		if w, ok := waits[dc.Name]; ok && w.Reason != "PodInitializing" {
			// CrashLoopBackOff, ImagePullBackOff, CreateContainerError...
			cs.State.Waiting = &StateWaiting{Reason: w.Reason, Message: w.Message}
			if cur != nil && cur.State == runtime.ContainerExited {
				cs.LastState.Terminated = terminated(cur)
			}
			return cs
		}
		if mem != nil && tried[dc.Name] && mem.waiting[dc.Name] != "" {
			cs.State.Waiting = &StateWaiting{Reason: mem.waiting[dc.Name], Message: mem.waitingMsg[dc.Name]}
			if cur != nil && cur.State == runtime.ContainerExited {
				cs.LastState.Terminated = terminated(cur)
			}
			return cs
		}
		switch {
		case cur == nil:
			reason := "ContainerCreating"
			if w, ok := waits[dc.Name]; ok {
				reason = w.Reason
			}
			cs.State.Waiting = &StateWaiting{Reason: reason}
		case cur.State == runtime.ContainerRunning:
			cs.State.Running = &StateRunning{StartedAt: cur.StartedAt}
			cs.Started = boolPtr(!dc.StartupProbe || !probing || (mem != nil && mem.started[dc.Name] == cur.ID))
			cs.Ready = (!dc.Init || dc.Sidecar) && (mem == nil || !mem.notReady[dc.Name])
		case cur.State == runtime.ContainerExited:
			cs.State.Terminated = terminated(cur)
		default:
			cs.State.Waiting = &StateWaiting{Reason: "ContainerStatusUnknown"}
		}
		return cs
	}
	for _, ic := range d.Init {
		st.InitContainerStatuses = append(st.InitContainerStatuses, one(ic))
	}
	for _, c := range d.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, one(c))
	}

	initialized := true
	initFailed := false
	// Native sidecars count as initialised once started, and in the phase
	// and the Ready condition as long as they run; one that ended is left
	// out, as in the kubelet.
	sidecars, sidecarsRunning, sidecarsReady, sidecarWaiting := 0, 0, 0, false
	for i, s := range st.InitContainerStatuses {
		if d.Init[i].Sidecar {
			sidecars++
			if s.State.Running != nil {
				sidecarsRunning++
				if s.Ready {
					sidecarsReady++
				}
			}
			if s.State.Running == nil || s.Started == nil || !*s.Started {
				sidecarWaiting = true
			}
			continue
		}
		t := s.State.Terminated
		if t == nil || t.ExitCode != 0 {
			initialized = false
		}
		if t != nil && t.ExitCode != 0 && d.Restart == RestartNever {
			initFailed = true
		}
	}
	running, done, failed, ready, seen := 0, 0, 0, 0, 0
	for _, s := range st.ContainerStatuses {
		if s.ContainerID != "" {
			seen++
		}
		switch {
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			done++
			if s.State.Terminated.ExitCode != 0 {
				failed++
			}
		}
		if s.Ready {
			ready++
		}
	}
	n := len(st.ContainerStatuses)
	// A sidecar that restarts after the app started does not make the
	// pod initialise again.
	initialized = initialized && (!sidecarWaiting || seen > 0)
	running += sidecarsRunning
	switch {
	case box == nil:
		st.Phase = PhasePending
	case initFailed, finished && !(n > 0 && done == n):
		st.Phase = PhaseFailed
	case !initialized:
		st.Phase = PhasePending
	case n > 0 && done == n && d.Restart == RestartNever && sidecarsRunning == 0:
		st.Phase = PhaseSucceeded
		if failed > 0 {
			st.Phase = PhaseFailed
		}
	case n > 0 && done == n && d.Restart == RestartOnFailure && failed == 0 && sidecarsRunning == 0:
		st.Phase = PhaseSucceeded
	case running > 0 || (n > 0 && seen == n):
		st.Phase = PhaseRunning
	default:
		st.Phase = PhasePending
	}
	cond := func(typ string, ok bool) PodCondition {
		s := "False"
		if ok {
			s = "True"
		}
		return PodCondition{Type: typ, Status: s}
	}
	allReady := n > 0 && ready == n && sidecarsReady == sidecars
	st.Conditions = []PodCondition{cond("Initialized", initialized && box != nil), cond("ContainersReady", allReady), cond("Ready", allReady)}
	limitTerminationMessages(&st)
	return st
}

// Kubernetes' bounds on termination messages: 4 KiB per container (the
// runtime reads no more), and 12 KiB for the whole pod, divided equally
// among its containers (init containers included).
const (
	maxContainerTerminationMessage = 4 << 10
	maxPodTerminationMessages      = 12 << 10
)

// limitTerminationMessages cuts every termination message of the pod to
// its share of the pod's 12 KiB, so a pod of many containers cannot make
// its status (and every API answer and watch event carrying it) large.
func limitTerminationMessages(st *PodStatus) {
	n := len(st.InitContainerStatuses) + len(st.ContainerStatuses)
	if n == 0 {
		return
	}
	limit := min(maxContainerTerminationMessage, maxPodTerminationMessages/n)
	cut := func(t *StateTerminated) {
		if t != nil && len(t.Message) > limit {
			t.Message = t.Message[:limit]
		}
	}
	for _, list := range [][]ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses} {
		for i := range list {
			cut(list[i].State.Terminated)
			cut(list[i].LastState.Terminated)
		}
	}
}
