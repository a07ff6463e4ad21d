package linux

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
)

// TestListContainersDecodesOnce: with 200 container records of other
// sandboxes on the node, listing one sandbox's containers decodes each
// record once in the process's life, not on every call (issue 13: this
// was 95 % of an idle agent's CPU). New records, and records removed by
// another process, are still seen.
func TestListContainersDecodesOnce(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	write := func(id, sandbox string) {
		dir := filepath.Join(r.containersDir(), id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		rec := &record.Container{Version: 1, ID: id, SandboxID: sandbox, Dir: dir, RunRoot: e.cfg.RunRoot,
			Config: runtime.ContainerConfig{Name: id}, CreatedAt: time.Now()}
		if err := record.WriteJSON(filepath.Join(dir, record.ContainerFile), rec); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		write(fmt.Sprintf("other%03d", i), "sandbox-b")
	}
	write("mine", "sandbox-a")
	list := func() []*runtime.Container {
		t.Helper()
		cs, err := r.ListContainers(ctx, runtime.ContainerFilter{SandboxID: "sandbox-a"})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	if cs := list(); len(cs) != 1 || cs[0].ID != "mine" {
		t.Fatalf("sandbox-a lists %d containers", len(cs))
	}
	before := recordDecodes.Load()
	for range 50 {
		list()
	}
	if n := recordDecodes.Load() - before; n != 0 {
		t.Errorf("50 listings of an unchanged node decoded %d records, want 0", n)
	}
	// A record written by another process appears, decoded once.
	write("mine2", "sandbox-a")
	before = recordDecodes.Load()
	if cs := list(); len(cs) != 2 {
		t.Errorf("after a new record: %d containers, want 2", len(cs))
	}
	list()
	if n := recordDecodes.Load() - before; n != 1 {
		t.Errorf("a new record cost %d decodes, want 1", n)
	}
	// A directory whose record is written after it was first seen.
	late := filepath.Join(r.containersDir(), "late")
	os.MkdirAll(late, 0o700)
	list()
	time.Sleep(2 * racyWindow)
	list()
	write("late", "sandbox-a")
	if cs := list(); len(cs) != 3 {
		t.Errorf("a record written into a known directory: %d containers, want 3", len(cs))
	}
	// Removed by another process.
	os.RemoveAll(filepath.Join(r.containersDir(), "mine2"))
	if cs := list(); len(cs) != 2 {
		t.Errorf("after another process removed a record: %d containers, want 2", len(cs))
	}
	if _, err := r.GetContainer(ctx, "mine2"); err == nil {
		t.Error("GetContainer finds a removed record")
	}
	os.RemoveAll(r.containersDir())
	e.check(t)
}
