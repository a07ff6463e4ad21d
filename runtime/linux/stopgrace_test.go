package linux

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// TestShimKeepsGracePeriod stops a container that ignores SIGTERM with a
// 3 s grace period and gives up waiting after a moment, as an agent that
// gets SIGTERM does (issue 12): the stop returns at once with the
// context's error, the container still runs, and without anything more
// from the agent its shim kills it when the grace period ends and records
// the exit, which a new runtime (the next agent) reads. A stop repeated by
// that runtime keeps the first deadline.
func TestShimKeepsGracePeriod(t *testing.T) {
	e := newCtrEnv(t, nil)
	c := e.startSleeper(t, "stubborn", func(c *runtime.ContainerConfig) {
		c.Command = []string{"/bin/sh", "-c", "trap '' TERM; while true; do sleep 1; done"}
	})
	const grace = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := e.rt.StopContainer(ctx, c.ID, grace)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop with its context ending: %v, want the context's error", err)
	}
	if got, err := e.rt.GetContainer(context.Background(), c.ID); err != nil || got.State != runtime.ContainerRunning {
		t.Fatalf("right after the abandoned stop: %+v %v, want running (the grace period is not over)", got, err)
	}

	// The next agent: a repeated stop keeps the first deadline, and the
	// exit is the shim's.
	next := e.open(t)
	if err := next.StopContainer(context.Background(), c.ID, time.Hour); err != nil {
		t.Fatalf("the next agent's stop: %v", err)
	}
	got, err := next.GetContainer(context.Background(), c.ID)
	if err != nil || got.State != runtime.ContainerExited || got.Signal != "SIGKILL" {
		t.Fatalf("after the grace period: %+v %v, want exited by SIGKILL", got, err)
	}
	if got.FinishedAt.Before(t0.Add(grace)) {
		t.Errorf("killed %s after the stop, before its %s grace period ended", got.FinishedAt.Sub(t0), grace)
	}
	if got.FinishedAt.After(t0.Add(time.Hour)) {
		t.Errorf("the repeated stop's hour replaced the first deadline")
	}
	t.Logf("killed %s after the stop was asked for, with a %s grace period", got.FinishedAt.Sub(t0).Round(time.Millisecond), grace)
	e.check(t)
}

// TestShimStopNobodyWaits: a stop whose caller goes away at once still
// ends the container at the end of its grace period, with nobody asking
// again: the shim's exit record appears on its own.
func TestShimStopNobodyWaits(t *testing.T) {
	e := newCtrEnv(t, nil)
	c := e.startSleeper(t, "stubborn", func(c *runtime.ContainerConfig) {
		c.Command = []string{"/bin/sh", "-c", "trap '' TERM; while true; do sleep 1; done"}
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.rt.StopContainer(ctx, c.ID, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("stop with a context already ended: %v, want context.Canceled", err)
	}
	got := e.waitExit(t, c.ID)
	if got.Signal != "SIGKILL" {
		t.Fatalf("exit %+v, want killed at the end of the grace period", got)
	}
	e.check(t)
}
