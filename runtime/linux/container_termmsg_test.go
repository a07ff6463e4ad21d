package linux

import (
	"strings"
	"testing"
)

// The termination message comes from the file at terminationMessagePath; with
// FallbackToLogsOnError, from the log tail when the file is empty and the
// container failed, and never from the log when it succeeded.
func TestContainerTerminationMessage(t *testing.T) {
	e := newCtrEnv(t, nil)
	for _, tc := range []struct {
		name, script string
		fromLogs     bool
		want         string
	}{
		{"file", "echo noise; printf 'disk full' > /dev/termination-log; exit 1", true, "disk full"},
		{"file-only-policy", "echo out; echo boom >&2; exit 2", false, ""},
		{"fallback", "for i in $(seq 1 100); do echo line $i >&2; done; echo boom >&2; exit 2", true, "boom"},
		{"success-keeps-empty", "echo fine", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config("msg-"+tc.name, "/bin/sh", "-c", tc.script)
			cfg.TerminationMessagePath = "/dev/termination-log"
			cfg.TerminationMessageFromLogs = tc.fromLogs
			c, _ := e.run(t, cfg)
			switch {
			case tc.name == "fallback":
				// The tail: the last lines (80 at most), ending with stderr's "boom".
				if !strings.HasSuffix(c.Message, "line 100\nboom") || strings.Count(c.Message, "\n") != 79 {
					t.Errorf("message = %q, want the last 80 log lines ending in boom", c.Message)
				}
			case c.Message != tc.want:
				t.Errorf("message = %q, want %q", c.Message, tc.want)
			}
		})
	}
	e.check(t)
}
