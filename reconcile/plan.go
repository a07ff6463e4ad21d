package reconcile

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// ActionKind names one step of a plan.
type ActionKind string

const (
	ActCreateSandbox   ActionKind = "CreateSandbox"
	ActRemoveSandbox   ActionKind = "RemoveSandbox"
	ActPullImage       ActionKind = "PullImage"
	ActStartContainer  ActionKind = "StartContainer"
	ActStopContainer   ActionKind = "StopContainer"
	ActRemoveContainer ActionKind = "RemoveContainer"
)

// Action is one step. A StartContainer with an empty SandboxID runs in the
// sandbox the same plan creates.
type Action struct {
	Kind        ActionKind    `json:"kind"`
	SandboxID   string        `json:"sandboxID,omitempty"`
	ContainerID string        `json:"containerID,omitempty"`
	Container   string        `json:"container,omitempty"`
	Image       string        `json:"image,omitempty"`
	Init        bool          `json:"init,omitempty"`
	Attempt     int           `json:"attempt,omitempty"`
	CrashCount  int           `json:"crashCount,omitempty"`
	Grace       time.Duration `json:"grace,omitempty"`
	// Wave orders the stops of one pod: consecutive stops of a wave run
	// together, and a wave begins when the one before it has ended. App
	// containers stop in wave 0, native sidecars after them, the last
	// declared first (stopWaves).
	Wave   int    `json:"wave,omitempty"`
	Reason string `json:"reason"`
}

func (a Action) String() string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	if a.Container != "" {
		fmt.Fprintf(&b, " container=%s", a.Container)
	}
	if a.Image != "" {
		fmt.Fprintf(&b, " image=%s", a.Image)
	}
	if a.SandboxID != "" {
		fmt.Fprintf(&b, " sandbox=%s", a.SandboxID)
	}
	if a.ContainerID != "" {
		fmt.Fprintf(&b, " id=%s", a.ContainerID)
	}
	if a.Kind == ActStartContainer {
		fmt.Fprintf(&b, " attempt=%d", a.Attempt)
	}
	if a.Kind == ActStopContainer {
		fmt.Fprintf(&b, " grace=%s", a.Grace)
		if a.Wave > 0 {
			fmt.Fprintf(&b, " wave=%d", a.Wave)
		}
	}
	fmt.Fprintf(&b, " (%s)", a.Reason)
	return b.String()
}

// Wait is a container (or, with Container empty, the whole pod) held back
// on purpose, with the Kubernetes reason.
type Wait struct {
	Container string `json:"container"`
	// Reason: CrashLoopBackOff, PodInitializing, ImagePullBackOff,
	// CreateContainerError, CreateContainerConfigError; OutOfCapacity,
	// NodeMismatch or HostPortConflict for a pod (DesiredPod.Hold).
	Reason  string    `json:"reason"`
	Until   time.Time `json:"until,omitzero"`
	Message string    `json:"message,omitempty"`
}

// Plan is what one pass does for one pod: plain data, printable in a dry run
// and comparable in tests.
type Plan struct {
	Key     runtime.PodKey `json:"pod"`
	Actions []Action       `json:"actions,omitempty"`
	Waits   []Wait         `json:"waits,omitempty"`
	// RequeueAfter > 0 asks for another pass then (a backoff ends).
	RequeueAfter time.Duration `json:"requeueAfter,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Actions) == 0 }

func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s:", p.Key)
	if p.Empty() && len(p.Waits) == 0 {
		b.WriteString(" up to date\n")
		return b.String()
	}
	b.WriteString("\n")
	for _, a := range p.Actions {
		fmt.Fprintf(&b, "  - %s\n", a)
	}
	for _, w := range p.Waits {
		if w.Container == "" {
			fmt.Fprintf(&b, "  ~ wait pod %s", w.Reason)
		} else {
			fmt.Fprintf(&b, "  ~ wait container=%s %s", w.Container, w.Reason)
		}
		if !w.Until.IsZero() {
			fmt.Fprintf(&b, " until %s", w.Until.UTC().Format(time.RFC3339))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (p *Plan) add(a Action) { p.Actions = append(p.Actions, a) }

func (p *Plan) requeue(d time.Duration) {
	if d <= 0 {
		d = time.Millisecond
	}
	if p.RequeueAfter == 0 || d < p.RequeueAfter {
		p.RequeueAfter = d
	}
}

const removedReason = "pod removed from manifests"

// DiffOptions are the inputs of Diff besides the two states.
type DiffOptions struct {
	Now time.Time
	// Backoff is the crash-loop schedule, also applied to failed creations.
	Backoff BackoffPolicy
	// PullBackoff is the schedule of image pull retries.
	PullBackoff BackoffPolicy
	// KeepExited is how many exited attempts of a container are kept beside
	// the current one (for lastState and logs --previous). Default 1.
	KeepExited int
	// Carried is the last container of each name from sandboxes of the
	// pod that died and were removed: a new sandbox continues their
	// restart counts and crash-loop back-off.
	Carried map[string]*runtime.Container
	// Pulls are failed image pulls by reference, Starts failed container
	// creations by name, each held back until its back-off ends.
	Pulls  map[string]Retry
	Starts map[string]Retry
	// Started is, by container name, the ID of the attempt whose startup
	// probe passed; Probing says a prober reports them. Without one, a
	// container with a startup probe counts as started once it runs.
	Started map[string]string
	Probing bool
}

// started reports whether a running container has started, as Kubernetes
// means it: its startup probe (if any) passed.
func (o DiffOptions) started(dc DesiredContainer, c *runtime.Container) bool {
	if c == nil || c.State != runtime.ContainerRunning {
		return false
	}
	return !dc.StartupProbe || !o.Probing || o.Started[dc.Name] == c.ID
}

// Retry is a step that failed and waits out a back-off before it is tried
// again: an image pull or a container creation.
type Retry struct {
	Failures int       `json:"failures"` // in a row
	Last     time.Time `json:"last"`
	// Reason is Kubernetes' waiting reason after the failure: ErrImagePull,
	// CreateContainerError, CreateContainerConfigError.
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Hash and Attempt, for a creation: the container spec that failed
	// (another spec is tried at once) and the attempt number it used.
	Hash    string `json:"hash,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
}

// Until is when the step may be tried again under policy b.
func (f Retry) Until(b BackoffPolicy) time.Time { return f.Last.Add(b.Delay(f.Failures)) }

// Diff computes the next steps that move observed towards desired. desired
// nil means the pod must go. It is pure: the same inputs give the same plan.
//
// A plan does what can be done without seeing its own results: it creates
// the sandbox and starts the containers in it, but an init container's exit
// is only known to a later pass, which the exit event triggers.
func Diff(desired *DesiredPod, observed ObservedPod, opt DiffOptions) Plan {
	opt.Backoff = opt.Backoff.withDefaults()
	opt.PullBackoff = opt.PullBackoff.withDefaults()
	if opt.KeepExited <= 0 {
		opt.KeepExited = 1
	}
	var p Plan
	if desired != nil {
		p.Key = desired.Key
	} else if len(observed.Sandboxes) > 0 {
		p.Key = observed.Sandboxes[0].Pod
	}
	if desired != nil && desired.Hold != nil {
		// Desired, but owning nothing: everything it has goes.
		h := desired.Hold
		p.Waits = append(p.Waits, Wait{Reason: h.Reason, Message: h.Message})
		removal := Diff(nil, observed, opt)
		for _, a := range removal.Actions {
			if a.Reason == removedReason {
				a.Reason = h.Reason + ": " + h.Message
			}
			p.add(a)
		}
		return p
	}
	byBox := map[string][]*runtime.Container{}
	for _, c := range observed.Containers {
		byBox[c.SandboxID] = append(byBox[c.SandboxID], c)
	}

	// The sandbox to keep: ready, with the desired hash, the newest.
	var keep *runtime.Sandbox
	if desired != nil {
		for _, s := range observed.Sandboxes {
			if s.State != runtime.SandboxReady || s.Hash() != desired.SandboxHash {
				continue
			}
			if keep == nil || s.CreatedAt.After(keep.CreatedAt) || (s.CreatedAt.Equal(keep.CreatedAt) && s.ID > keep.ID) {
				keep = s
			}
		}
	}
	boxes := slices.Clone(observed.Sandboxes)
	slices.SortFunc(boxes, func(a, b *runtime.Sandbox) int { return cmp.Compare(a.ID, b.ID) })
	carried := opt.Carried
	for _, s := range boxes {
		if s == keep {
			continue
		}
		if desired != nil && s.State != runtime.SandboxReady {
			// What runs in the next sandbox continues from this one.
			carried = mergeCarry(maps.Clone(carried), carryFrom(byBox[s.ID], s, opt.Now))
		}
		reason := removedReason
		switch {
		case desired == nil:
		case s.State != runtime.SandboxReady:
			reason = "sandbox not ready: " + cmp.Or(s.Reason, "unknown")
		case s.Hash() != desired.SandboxHash:
			reason = "sandbox spec changed"
		default:
			reason = "duplicate sandbox"
		}
		stopAll(&p, byBox[s.ID], graceOf(s), reason)
		p.add(Action{Kind: ActRemoveSandbox, SandboxID: s.ID, Reason: reason})
	}
	// Containers whose sandbox is gone are orphans: remove them.
	known := map[string]bool{}
	for _, s := range observed.Sandboxes {
		known[s.ID] = true
	}
	for _, c := range sortedContainers(observed.Containers) {
		if !known[c.SandboxID] {
			p.add(Action{Kind: ActRemoveContainer, ContainerID: c.ID, Container: c.Name, Reason: "sandbox gone"})
		}
	}
	if desired == nil {
		return p
	}
	if desired.Terminal {
		if keep == nil {
			p.Waits = append(p.Waits, Wait{Reason: "Terminal", Message: "the pod has finished; it is not run again"})
		}
		return p
	}
	boxID := ""
	var current []*runtime.Container
	if keep == nil {
		reason := "pod new"
		if len(observed.Sandboxes) > 0 {
			reason = "recreate pod"
		}
		p.add(Action{Kind: ActCreateSandbox, Reason: reason})
	} else {
		boxID = keep.ID
		current = byBox[keep.ID]
	}
	diffContainers(&p, desired, boxID, current, carried, opt)
	return p
}

// carryFrom is what the containers of a sandbox that died leave to the
// next one: the newest attempt of each name. One still running counts as
// killed now, by the sandbox's death: a crash, for the back-off.
func carryFrom(cs []*runtime.Container, s *runtime.Sandbox, now time.Time) map[string]*runtime.Container {
	out := map[string]*runtime.Container{}
	for _, c := range sortedContainers(cs) {
		if out[c.Name] != nil || c.State == runtime.ContainerCreated {
			continue
		}
		if c.State != runtime.ContainerExited {
			k := *c
			k.State, k.ExitCode, k.Signal, k.PID = runtime.ContainerExited, 137, "SIGKILL", 0
			k.Reason, k.Message = runtime.ReasonError, "pod sandbox died: "+cmp.Or(s.Reason, "not ready")
			k.FinishedAt = now
			c = &k
		}
		out[c.Name] = c
	}
	return out
}

// mergeCarry adds from to into (allocated when nil), keeping the newest
// attempt of each name.
func mergeCarry(into, from map[string]*runtime.Container) map[string]*runtime.Container {
	if into == nil {
		into = map[string]*runtime.Container{}
	}
	for n, c := range from {
		if o := into[n]; o == nil || c.Attempt > o.Attempt {
			into[n] = c
		}
	}
	return into
}

// stopAll stops every running container of cs: app containers (and
// what is not a sidecar) together first, then the native sidecars one
// wave each, the last declared first, as the kubelet terminates a pod.
// The sidecar order is read from the containers (AnnotationSidecar), so it
// holds when the manifest is gone.
func stopAll(p *Plan, cs []*runtime.Container, grace time.Duration, reason string) {
	var live []*runtime.Container
	for _, c := range sortedContainers(cs) {
		if c.State == runtime.ContainerRunning || c.State == runtime.ContainerUnknown {
			live = append(live, c)
		}
	}
	waves := stopWaves(live)
	slices.SortStableFunc(live, func(a, b *runtime.Container) int { return cmp.Compare(waves[a], waves[b]) })
	for _, c := range live {
		p.add(Action{Kind: ActStopContainer, ContainerID: c.ID, Container: c.Name, SandboxID: c.SandboxID, Grace: grace,
			Wave: waves[c], Reason: reason})
	}
}

// stopWaves numbers the stop waves of running containers: 0 for all but
// sidecars, then 1, 2, ... for the sidecars from the last declared.
func stopWaves(cs []*runtime.Container) map[*runtime.Container]int {
	var positions []int
	for _, c := range cs {
		if n, ok := sidecarPosition(c); ok && !slices.Contains(positions, n) {
			positions = append(positions, n)
		}
	}
	slices.Sort(positions)
	out := make(map[*runtime.Container]int, len(cs))
	for _, c := range cs {
		if n, ok := sidecarPosition(c); ok {
			out[c] = len(positions) - slices.Index(positions, n)
		}
	}
	return out
}

func sortedContainers(cs []*runtime.Container) []*runtime.Container {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b *runtime.Container) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(b.Attempt, a.Attempt), cmp.Compare(a.ID, b.ID))
	})
	return cs
}

// attempts groups a sandbox's containers by name, newest attempt first.
func attempts(cs []*runtime.Container) map[string][]*runtime.Container {
	m := map[string][]*runtime.Container{}
	for _, c := range sortedContainers(cs) {
		m[c.Name] = append(m[c.Name], c)
	}
	return m
}

func diffContainers(p *Plan, d *DesiredPod, boxID string, cs []*runtime.Container, carried map[string]*runtime.Container, opt DiffOptions) {
	byName := attempts(cs)
	wanted := map[string]bool{}
	for _, c := range d.Init {
		wanted[c.Name] = true
	}
	for _, c := range d.Containers {
		wanted[c.Name] = true
	}
	// Containers the manifest no longer names, and exited attempts beyond
	// the ones kept for lastState.
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		list := byName[n]
		if !wanted[n] {
			stopAll(p, list, d.Grace, "container removed from manifest")
			for _, c := range list {
				p.add(Action{Kind: ActRemoveContainer, ContainerID: c.ID, Container: n, SandboxID: boxID, Reason: "container removed from manifest"})
			}
			continue
		}
		var cur *runtime.Container
		for _, c := range list {
			if c.State != runtime.ContainerCreated {
				cur = c
				break
			}
		}
		exited := 0
		for _, c := range list {
			if c == cur {
				continue
			}
			switch c.State {
			case runtime.ContainerCreated:
				// What a crash during start leaves: remove, start over below.
				p.add(Action{Kind: ActRemoveContainer, ContainerID: c.ID, Container: n, SandboxID: boxID, Reason: "never started"})
			case runtime.ContainerRunning, runtime.ContainerUnknown:
				p.add(Action{Kind: ActStopContainer, ContainerID: c.ID, Container: n, SandboxID: boxID, Grace: d.Grace, Reason: "superseded attempt"})
				p.add(Action{Kind: ActRemoveContainer, ContainerID: c.ID, Container: n, SandboxID: boxID, Reason: "superseded attempt"})
			default:
				exited++
				if exited > opt.KeepExited {
					p.add(Action{Kind: ActRemoveContainer, ContainerID: c.ID, Container: n, SandboxID: boxID, Reason: "old attempt"})
				}
			}
		}
	}

	latest := func(name string) *runtime.Container {
		for _, c := range byName[name] {
			if c.State != runtime.ContainerCreated {
				return c
			}
		}
		return nil
	}
	// prev is how a container not run in this sandbox yet ended in the
	// sandbox that died before it.
	prev := func(name string) *runtime.Container {
		if len(byName[name]) > 0 {
			return nil
		}
		return carried[name]
	}
	// Attempts number every try, across sandboxes and failed creations.
	nextAttempt := func(name string) int {
		n := 0
		if l := byName[name]; len(l) > 0 {
			n = l[0].Attempt + 1
		}
		if c := carried[name]; c != nil {
			n = max(n, c.Attempt+1)
		}
		if f, ok := opt.Starts[name]; ok {
			n = max(n, f.Attempt+1)
		}
		return n
	}
	start := func(dc DesiredContainer, crash int, reason string) {
		if retryWait(p, dc, opt) {
			return
		}
		p.add(Action{Kind: ActPullImage, Container: dc.Name, Image: dc.Config.Image, Init: dc.Init, Reason: reason})
		p.add(Action{Kind: ActStartContainer, SandboxID: boxID, Container: dc.Name, Image: dc.Config.Image, Init: dc.Init,
			Attempt: nextAttempt(dc.Name), CrashCount: crash, Reason: reason})
	}

	if d.Restart == RestartNever && len(cs) == 0 && len(carried) > 0 {
		// The pod ran in a sandbox that died: under Never nothing runs
		// again (kubelet does not even make a new sandbox).
		return
	}
	// stopSidecars ends the native sidecars of a pod that is done: they
	// never keep a Never or OnFailure pod from completing.
	stopSidecars := func(reason string) {
		var live []*runtime.Container
		for _, ic := range d.Init {
			if c := latest(ic.Name); ic.Sidecar && c != nil {
				live = append(live, c)
			}
		}
		stopAll(p, live, d.Grace, reason)
	}
	if appsDone(d, latest) {
		stopSidecars("pod completed: its app containers are done")
		return
	}
	// ranAfter reports whether a container declared after init position i
	// ran in this sandbox: the pod got past i once, and a sidecar that
	// restarts later holds nothing back.
	ranAfter := func(i int) bool {
		for _, ic := range d.Init[i+1:] {
			if len(byName[ic.Name]) > 0 {
				return true
			}
		}
		for _, c := range d.Containers {
			if len(byName[c.Name]) > 0 {
				return true
			}
		}
		return false
	}
	// Init containers run one at a time, in order; each must succeed. A
	// native sidecar is started in its turn and counts as done once it
	// runs and its startup probe passed; it is restarted whenever it
	// exits, whatever the pod's restartPolicy. A new sandbox runs them all
	// again.
	for i, ic := range d.Init {
		cur := latest(ic.Name)
		if ic.Sidecar {
			switch {
			case cur == nil && prev(ic.Name) != nil:
				restartOrWait(p, ic, prev(ic.Name), opt, start)
			case cur == nil:
				start(ic, 0, "sidecar not started")
			case cur.State == runtime.ContainerRunning || cur.State == runtime.ContainerUnknown:
				if cur.Hash() != ic.Hash {
					p.add(Action{Kind: ActStopContainer, ContainerID: cur.ID, Container: ic.Name, SandboxID: boxID, Grace: d.Grace, Reason: "container spec changed"})
					start(ic, 0, "container spec changed")
				} else if opt.started(ic, cur) {
					continue
				}
			default:
				restartOrWait(p, ic, cur, opt, start)
			}
			if ranAfter(i) {
				continue
			}
			waitRest(p, d, i+1)
			return
		}
		switch {
		case cur == nil && prev(ic.Name) != nil && prev(ic.Name).ExitCode != 0:
			restartOrWait(p, ic, prev(ic.Name), opt, start)
			waitRest(p, d, i+1)
			return
		case cur == nil:
			start(ic, 0, "init container not started")
			waitRest(p, d, i+1)
			return
		case cur.State == runtime.ContainerRunning || cur.State == runtime.ContainerUnknown:
			waitRest(p, d, i+1)
			return
		case cur.ExitCode == 0:
			continue
		case d.Restart == RestartNever:
			// The pod has failed; nothing more runs.
			stopSidecars("pod failed: init container " + ic.Name + " failed")
			return
		default:
			restartOrWait(p, ic, cur, opt, start)
			waitRest(p, d, i+1)
			return
		}
	}

	for _, dc := range d.Containers {
		cur := latest(dc.Name)
		here := cur != nil
		if !here {
			cur = prev(dc.Name)
		}
		switch {
		case cur == nil:
			start(dc, 0, "container not started")
		case cur.Hash() != dc.Hash:
			if here && (cur.State == runtime.ContainerRunning || cur.State == runtime.ContainerUnknown) {
				p.add(Action{Kind: ActStopContainer, ContainerID: cur.ID, Container: dc.Name, SandboxID: boxID, Grace: d.Grace, Reason: "container spec changed"})
			}
			start(dc, 0, "container spec changed")
		case here && (cur.State == runtime.ContainerRunning || cur.State == runtime.ContainerUnknown):
			// Up to date.
		case !ShouldRestart(d.Restart, cur.ExitCode):
			// Terminated for good under the restart policy.
		default:
			restartOrWait(p, dc, cur, opt, start)
		}
	}
}

// restartOrWait restarts an exited container when its crash-loop backoff has
// passed, or records the wait. It reports whether it restarted.
func restartOrWait(p *Plan, dc DesiredContainer, cur *runtime.Container, opt DiffOptions, start func(DesiredContainer, int, string)) bool {
	at, n := opt.Backoff.RestartAt(cur)
	if !opt.Now.Before(at) {
		start(dc, n, fmt.Sprintf("restart after exit code %d", cur.ExitCode))
		return true
	}
	p.Waits = append(p.Waits, Wait{Container: dc.Name, Reason: "CrashLoopBackOff", Until: at,
		Message: fmt.Sprintf("back-off %s restarting failed container=%s", opt.Backoff.Delay(n), dc.Name)})
	p.requeue(at.Sub(opt.Now))
	return false
}

// retryWait holds a start back while an earlier failure of it waits out
// its back-off: a failed creation of the same spec, or a failed pull of its
// image. It reports whether it did.
func retryWait(p *Plan, dc DesiredContainer, opt DiffOptions) bool {
	if f, ok := opt.Starts[dc.Name]; ok && f.Hash == dc.Hash {
		if until := f.Until(opt.Backoff); opt.Now.Before(until) {
			p.Waits = append(p.Waits, Wait{Container: dc.Name, Reason: f.Reason, Until: until,
				Message: fmt.Sprintf("%s (back-off %s: next attempt at %s)", f.Message, opt.Backoff.Delay(f.Failures), until.UTC().Format(time.RFC3339))})
			p.requeue(until.Sub(opt.Now))
			return true
		}
	}
	for _, ref := range append([]string{dc.Config.Image}, volumeImageRefs(dc)...) {
		if f, ok := opt.Pulls[ref]; ok {
			if until := f.Until(opt.PullBackoff); opt.Now.Before(until) {
				p.Waits = append(p.Waits, Wait{Container: dc.Name, Reason: "ImagePullBackOff", Until: until,
					Message: fmt.Sprintf("Back-off pulling image %q: next attempt at %s (back-off %s): %s",
						ref, until.UTC().Format(time.RFC3339), opt.PullBackoff.Delay(f.Failures), f.Message)})
				p.requeue(until.Sub(opt.Now))
				return true
			}
		}
	}
	return false
}

func volumeImageRefs(dc DesiredContainer) []string {
	refs := make([]string, len(dc.VolumeImages))
	for i, im := range dc.VolumeImages {
		refs[i] = im.Ref
	}
	return refs
}

func waitRest(p *Plan, d *DesiredPod, from int) {
	for _, ic := range d.Init[min(from, len(d.Init)):] {
		p.Waits = append(p.Waits, Wait{Container: ic.Name, Reason: "PodInitializing"})
	}
	for _, c := range d.Containers {
		p.Waits = append(p.Waits, Wait{Container: c.Name, Reason: "PodInitializing"})
	}
}

// appsDone reports whether a pod whose restartPolicy is not Always has
// finished: every app container ran its current spec in this sandbox and
// exited for good under the policy. Its sidecars then stop.
func appsDone(d *DesiredPod, latest func(string) *runtime.Container) bool {
	if d.Restart == RestartAlways || len(d.Containers) == 0 {
		return false
	}
	for _, dc := range d.Containers {
		c := latest(dc.Name)
		if c == nil || c.State != runtime.ContainerExited || c.Hash() != dc.Hash || ShouldRestart(d.Restart, c.ExitCode) {
			return false
		}
	}
	return true
}

// sidecarPosition is a container's place among its pod's init containers
// when it is a native sidecar (AnnotationSidecar).
func sidecarPosition(c *runtime.Container) (int, bool) {
	v, ok := c.Annotations[AnnotationSidecar]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}
