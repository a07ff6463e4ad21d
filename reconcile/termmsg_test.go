package reconcile

import (
	"strings"
	"testing"
)

// TestTerminationMessagesShareTheBudget: each message is cut to its share
// of the pod's 12 KiB (never more than 4 KiB), in State and LastState of
// init and app containers alike.
func TestTerminationMessagesShareTheBudget(t *testing.T) {
	msg := strings.Repeat("x", 4<<10)
	term := func() ContainerState { return ContainerState{Terminated: &StateTerminated{Message: msg}} }
	for _, c := range []struct {
		init, app int
		want      int
	}{
		{0, 1, 4096}, {0, 3, 4096}, {1, 3, 3072}, {2, 10, 1024}, {0, 13, 945},
	} {
		st := PodStatus{}
		for range c.init {
			st.InitContainerStatuses = append(st.InitContainerStatuses, ContainerStatus{State: term(), LastState: term()})
		}
		for range c.app {
			st.ContainerStatuses = append(st.ContainerStatuses, ContainerStatus{State: term(), LastState: term()})
		}
		limitTerminationMessages(&st)
		total := 0
		for _, l := range [][]ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses} {
			for _, cs := range l {
				for _, s := range []ContainerState{cs.State, cs.LastState} {
					if got := len(s.Terminated.Message); got != c.want {
						t.Errorf("%d init + %d app containers: message of %d bytes, want %d", c.init, c.app, got, c.want)
					}
				}
				total += len(cs.State.Terminated.Message)
			}
		}
		if total > 12<<10 {
			t.Errorf("%d init + %d app containers: %d bytes of current messages, over 12 KiB", c.init, c.app, total)
		}
	}
}
