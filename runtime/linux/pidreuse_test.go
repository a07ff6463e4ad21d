package linux

import (
	"context"
	"fmt"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// otherThreads returns TIDs of this process's threads other than the main
// one: PIDs that name a thread of another process, from the point of view
// of a record.
func otherThreads(t *testing.T, n int) []int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		if tid != os.Getpid() && len(out) < n {
			out = append(out, tid)
		}
	}
	if len(out) < n {
		t.Fatalf("want %d threads besides the main one, have %d", n, len(out))
	}
	return out
}

// TestRemovalWithRecordedPIDsReusedByThreads makes every recorded PID of a
// stopped container and of its sandbox's dead pause name a thread of
// another process (this test process), with a start time that is not the
// recorded one, as PID reuse does. pidfd_open refuses a thread that is not
// a thread-group leader, which is not "gone" as ESRCH is: stop and removal
// must still finish.
func TestRemovalWithRecordedPIDsReusedByThreads(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	c := e.startSleeper(t, "reused", nil)
	if err := e.rt.StopContainer(ctx, c.ID, 0); err != nil {
		t.Fatal(err)
	}
	tids := otherThreads(t, 3)
	rec, err := e.rt.containerRecord(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, err := rec.State()
	if err != nil {
		t.Fatal(err)
	}
	st.Shim.PID, st.Shim.Start = tids[0], 1
	st.Init.PID, st.Init.Start = tids[1], 1
	if err := record.WriteJSON(filepath.Join(rec.Dir, record.StateFile), st); err != nil {
		t.Fatal(err)
	}
	// Without the exit record, stop has to signal the recorded init and
	// wait for the recorded shim.
	if err := os.Remove(record.ExitPath(rec.RunRoot, rec.ID)); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.StopContainer(ctx, c.ID, time.Second); err != nil {
		t.Errorf("stop with reused PIDs: %v", err)
	}
	if err := e.rt.RemoveContainer(ctx, c.ID); err != nil {
		t.Errorf("remove with reused PIDs: %v", err)
	}

	killPause(t, e.rt, e.sb.ID)
	sb, err := e.rt.sandboxRecord(e.sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	sb.Pause.PID, sb.Pause.Start = tids[2], 1
	if err := e.rt.writeRecord(sb); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}
