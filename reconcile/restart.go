package reconcile

import (
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// RestartPolicy is the pod's restartPolicy.
type RestartPolicy string

const (
	RestartAlways    RestartPolicy = "Always"
	RestartOnFailure RestartPolicy = "OnFailure"
	RestartNever     RestartPolicy = "Never"
)

// ShouldRestart reports whether a container that exited with exitCode is
// started again under policy. Kubernetes restarts successful exits too under
// Always; OnFailure restarts only non-zero exits.
func ShouldRestart(policy RestartPolicy, exitCode int) bool {
	switch policy {
	case RestartNever:
		return false
	case RestartOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// BackoffPolicy is the CrashLoopBackOff schedule: Initial doubling up to Max;
// a container that ran at least Reset before exiting starts the count over.
type BackoffPolicy struct {
	Initial time.Duration
	Max     time.Duration
	Reset   time.Duration
}

// DefaultBackoff is kubelet's schedule: 10 s doubling to 300 s, reset after
// 10 minutes of running.
var DefaultBackoff = BackoffPolicy{Initial: 10 * time.Second, Max: 300 * time.Second, Reset: 10 * time.Minute}

func (b BackoffPolicy) withDefaults() BackoffPolicy {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max < b.Initial {
		b.Max = max(DefaultBackoff.Max, b.Initial)
	}
	if b.Reset <= 0 {
		b.Reset = DefaultBackoff.Reset
	}
	return b
}

// Delay is the wait before restart number n of a crash loop (n >= 1):
// Initial * 2^(n-1), capped at Max. n < 1 means no wait.
func (b BackoffPolicy) Delay(n int) time.Duration {
	b = b.withDefaults()
	if n < 1 {
		return 0
	}
	d := b.Initial
	for i := 1; i < n; i++ {
		d *= 2
		if d >= b.Max {
			return b.Max
		}
	}
	return min(d, b.Max)
}

// CrashCount is the position in the crash loop of the restart that follows
// the exit of c: one more than the count c itself was started with, or 1 when
// c ran for at least Reset (a long healthy run forgives earlier crashes).
// The count is carried on the container as an annotation, so it survives an
// agent restart without any state of the agent's own.
func (b BackoffPolicy) CrashCount(c *runtime.Container) int {
	b = b.withDefaults()
	if !c.StartedAt.IsZero() && !c.FinishedAt.IsZero() && c.FinishedAt.Sub(c.StartedAt) >= b.Reset {
		return 1
	}
	return crashCountOf(c) + 1
}

// RestartAt is when the container c, which exited, may be started again, and
// the crash count the new container carries.
func (b BackoffPolicy) RestartAt(c *runtime.Container) (time.Time, int) {
	n := b.CrashCount(c)
	finished := c.FinishedAt
	if finished.IsZero() {
		finished = c.CreatedAt
	}
	return finished.Add(b.Delay(n)), n
}

// StepBackoff is the per-pod retry schedule after a failed reconcile step.
type StepBackoff struct {
	Initial time.Duration
	Max     time.Duration
}

// DefaultStepBackoff retries fast at first (a transient error costs little)
// and settles at 30 s so a broken pod never spins.
var DefaultStepBackoff = StepBackoff{Initial: 100 * time.Millisecond, Max: 30 * time.Second}

// Delay is the wait after the n-th consecutive failure (n >= 1).
func (s StepBackoff) Delay(n int) time.Duration {
	if s.Initial <= 0 {
		s = DefaultStepBackoff
	}
	return BackoffPolicy{Initial: s.Initial, Max: max(s.Max, s.Initial), Reset: time.Hour}.Delay(n)
}
