package linux

import (
	"context"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// TestExecOutputUncapped: interactive exec (kubectl exec, pelagos-agent
// exec) gets all of a command's output. The runtime used to cut each
// stream at 16 MiB and still report success; callers that need a bound
// (probes, hooks) bring their own writer.
func TestExecOutputUncapped(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	c, err := e.rt.StartContainer(ctx, e.config("app", "/bin/sleep", "3600"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut byteCounter
	code, err := e.rt.Exec(ctx, c.ID, runtime.ExecOptions{Cmd: []string{"/bin/sh", "-c", "head -c 67108864 /dev/zero; head -c 33554432 /dev/zero >&2"},
		Stdout: &out, Stderr: &errOut})
	if err != nil || code != 0 {
		t.Fatalf("exec: code %d, %v", code, err)
	}
	if out.n != 64<<20 || errOut.n != 32<<20 {
		t.Errorf("got %d bytes of stdout and %d of stderr; want 64 MiB and 32 MiB", out.n, errOut.n)
	}
	if err := e.rt.StopContainer(ctx, c.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

type byteCounter struct{ n int64 }

func (b *byteCounter) Write(p []byte) (int, error) {
	b.n += int64(len(p))
	return len(p), nil
}
