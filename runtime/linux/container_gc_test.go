package linux

import (
	"context"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGCContainers loses a sandbox record under a running container, as a
// crash in the middle of a teardown could, and leaves a bare run directory
// and a stray exit record: GCContainers removes them all.
func TestGCContainers(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	c := e.startSleeper(t, "orphan", nil)
	os.MkdirAll(filepath.Join(e.rt.containersDir(), "half-made"), 0o700)
	os.WriteFile(record.ExitPath(e.cfg.RunRoot, "stray"), []byte("{}"), 0o600)
	// Hide the sandbox record for the container pass, then put it back so
	// the sandbox itself is removed normally.
	sbDir := e.rt.sandboxDir(e.sb.ID)
	hidden := sbDir + ".hidden-by-test"
	if err := os.Rename(sbDir, hidden); err != nil {
		t.Fatal(err)
	}
	removed, err := e.rt.GCContainers(ctx)
	if rerr := os.Rename(hidden, sbDir); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(removed, "\n")
	for _, want := range []string{"container " + c.ID, "container directory half-made", "exit record stray", "cgroup "} {
		if !strings.Contains(got, want) {
			t.Errorf("GC report lacks %q:\n%s", want, got)
		}
	}
	if _, err := e.rt.GetContainer(ctx, c.ID); err == nil {
		t.Error("orphaned container still listed")
	}
	// A second pass finds nothing.
	if again, err := e.rt.GCContainers(ctx); err != nil || len(again) != 0 {
		t.Errorf("second GC: %v %v", again, err)
	}
	e.check(t)
}
