package image

import (
	"context"
	goruntime "runtime"
	"testing"
)

// TestFlightWaiterOutlivesCancelledLeader: when the caller running a pull
// gives up, a waiter with a live context does not inherit the
// cancellation; it runs the work itself.
func TestFlightWaiterOutlivesCancelledLeader(t *testing.T) {
	var g flightGroup
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	started := make(chan struct{})
	leaderDone := make(chan error, 1)
	go func() {
		_, err := g.do(leaderCtx, "k", func() (any, error) {
			close(started)
			<-leaderCtx.Done()
			return nil, leaderCtx.Err()
		})
		leaderDone <- err
	}()
	<-started
	waiterDone := make(chan any, 1)
	go func() {
		v, err := g.do(context.Background(), "k", func() (any, error) { return "second run", nil })
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		waiterDone <- v
	}()
	for g.waiting("k") != 1 {
		goruntime.Gosched() // the waiter has not joined yet
		select {
		case v := <-waiterDone:
			t.Fatalf("waiter returned %v before joining", v)
		default:
		}
	}
	cancelLeader()
	if err := <-leaderDone; err != context.Canceled {
		t.Errorf("leader: %v, want context.Canceled", err)
	}
	if v := <-waiterDone; v != "second run" {
		t.Errorf("waiter got %v, want its own run's result", v)
	}
}
