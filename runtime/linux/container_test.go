package linux

import (
	"context"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

func TestContainerSmoke(t *testing.T) {
	e := newCtrEnv(t, nil)
	c, out := e.run(t, e.config("smoke", "/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"))
	if c.ExitCode != 3 || c.Reason != runtime.ReasonError {
		t.Errorf("exit = %d %q, want 3 Error", c.ExitCode, c.Reason)
	}
	if out != "hello\noops\n" && out != "oops\nhello\n" {
		t.Errorf("log = %q", out)
	}
	if err := e.rt.RemoveContainer(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}
