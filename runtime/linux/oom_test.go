package linux

import (
	"context"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/oomscore"
)

// TestContainerOOMScoreAdj: the workload gets the oom_score_adj asked for
// (raising is always allowed); one the kernel refuses to lower to is
// clamped to the lowest allowed and noted in the start record, and the
// start does not fail; the shim sits just above the agent.
func TestContainerOOMScoreAdj(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	own, err := oomscore.Get(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{own + 500, -999} {
		c := e.startSleeper(t, "oom", func(c *runtime.ContainerConfig) {
			c.OOMScoreAdj = &want
			c.Attempt = want + 1000
		})
		got, err := oomscore.Get(c.PID)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := e.rt.containerRecord(c.ID)
		st, err := rec.State()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("asked %d: workload %d, note %q", want, got, st.OOMScoreNote)
		switch {
		case want > own && got != min(want, oomscore.Max):
			t.Errorf("asked for %d: the workload has %d", want, got)
		case got != want && (got < want || got > own+1):
			t.Errorf("asked for %d: the workload has %d, want the lowest value allowed (at most %d)", want, got, own+1)
		}
		if st.OOMScoreAdj != got || (got != want) != (st.OOMScoreNote != "") {
			t.Errorf("start record: %d %q; the workload has %d (asked %d)", st.OOMScoreAdj, st.OOMScoreNote, got, want)
		}
		if got != want && !strings.Contains(st.OOMScoreNote, "CAP_SYS_RESOURCE") {
			t.Errorf("note %q does not say why", st.OOMScoreNote)
		}
		if shimScore, _ := oomscore.Get(st.Shim.PID); shimScore != min(own+1, oomscore.Max) {
			t.Errorf("shim oom_score_adj %d, want the agent's %d + 1", shimScore, own)
		}
		if err := e.rt.RemoveContainer(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	e.check(t)
}
