package procid

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A wait for a process to exit gives up when its context ends, not only at
// its deadline: an agent stopping during a 30 s grace period must not sit
// it out (issue 12). The process is left as it was.
func TestWaitFDContextHonoursContext(t *testing.T) {
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := WaitFDContext(ctx, fd, time.Hour)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("wait ended with %v, want context.Canceled", err)
	}
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		t.Errorf("the process did not survive the abandoned wait: %v", err)
	}
	// Without cancellation the wait still sees the exit.
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	if exited, err := WaitFDContext(context.Background(), fd, time.Minute); err != nil || !exited {
		t.Errorf("exit not seen: %v %v", exited, err)
	}
}

// A wait cut short by its context's deadline says so: it is the caller's
// deadline that passed, not the process that failed to end in time.
func TestWaitGoneAtContextDeadline(t *testing.T) {
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	p, err := Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.WaitGone(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitGone at the context's deadline: %v, want context.DeadlineExceeded", err)
	}
	if !p.Alive() {
		t.Error("the process did not survive the wait")
	}
}
