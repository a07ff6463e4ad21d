package reconcile

import (
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

func TestShouldRestart(t *testing.T) {
	for _, tc := range []struct {
		policy RestartPolicy
		code   int
		want   bool
	}{
		{RestartAlways, 0, true}, {RestartAlways, 1, true},
		{RestartOnFailure, 0, false}, {RestartOnFailure, 137, true},
		{RestartNever, 0, false}, {RestartNever, 1, false},
	} {
		if got := ShouldRestart(tc.policy, tc.code); got != tc.want {
			t.Errorf("ShouldRestart(%s, %d) = %v, want %v", tc.policy, tc.code, got, tc.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	b := BackoffPolicy{Initial: 10 * time.Second, Max: 300 * time.Second, Reset: 10 * time.Minute}
	want := []time.Duration{0, 10, 20, 40, 80, 160, 300, 300, 300}
	for n, w := range want {
		if got := b.Delay(n); got != w*time.Second {
			t.Errorf("Delay(%d) = %s, want %s", n, got, w*time.Second)
		}
	}
	if got := b.Delay(1000); got != 300*time.Second {
		t.Errorf("Delay(1000) = %s: must cap without overflow", got)
	}
	custom := BackoffPolicy{Initial: time.Second, Max: 3 * time.Second}
	if got := custom.Delay(3); got != 3*time.Second {
		t.Errorf("custom Delay(3) = %s, want 3s", got)
	}
}

func TestCrashCountResetsAfterLongRun(t *testing.T) {
	b := DefaultBackoff
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	short := &runtime.Container{StartedAt: start, FinishedAt: start.Add(time.Second),
		Annotations: map[string]string{AnnotationCrashCount: "3"}}
	if got := b.CrashCount(short); got != 4 {
		t.Errorf("crash after short run: count %d, want 4", got)
	}
	long := &runtime.Container{StartedAt: start, FinishedAt: start.Add(11 * time.Minute),
		Annotations: map[string]string{AnnotationCrashCount: "5"}}
	if got := b.CrashCount(long); got != 1 {
		t.Errorf("crash after a 11-minute run: count %d, want 1 (reset)", got)
	}
	at, n := b.RestartAt(short)
	if n != 4 || !at.Equal(short.FinishedAt.Add(80*time.Second)) {
		t.Errorf("RestartAt = %s, %d; want finish+80s, 4", at, n)
	}
}

func TestStepBackoff(t *testing.T) {
	s := StepBackoff{Initial: 100 * time.Millisecond, Max: time.Second}
	if s.Delay(1) != 100*time.Millisecond || s.Delay(2) != 200*time.Millisecond || s.Delay(10) != time.Second {
		t.Errorf("step backoff: %s %s %s", s.Delay(1), s.Delay(2), s.Delay(10))
	}
}
