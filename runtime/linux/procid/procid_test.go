package procid

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSelf(t *testing.T) {
	me, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if !me.Alive() {
		t.Fatal("this process is not alive")
	}
	if (ID{PID: me.PID, Start: me.Start + 1}).Alive() {
		t.Error("another start time counts as the same process")
	}
	fd, err := me.Open()
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
}

// A PID that now names a thread of another process: pidfd_open fails with
// an error that is not ESRCH; the process recorded is still gone.
func TestThreadOfAnotherProcessIsGone(t *testing.T) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		if tid == os.Getpid() {
			continue
		}
		_, start, err := Stat(tid)
		if err != nil {
			continue // the thread ended meanwhile
		}
		p := ID{PID: tid, Start: start + 1}
		if _, err := p.Open(); !errors.Is(err, ErrGone) {
			t.Errorf("thread %d with another start time: Open = %v, want ErrGone", tid, err)
		}
		// Even with its own start time a thread is not a process to signal.
		if _, err := (ID{PID: tid, Start: start}).Open(); err != nil && !errors.Is(err, ErrGone) {
			t.Errorf("thread %d: Open = %v, want a pidfd or ErrGone", tid, err)
		}
		if err := p.WaitGone(context.Background(), time.Second); err != nil {
			t.Errorf("WaitGone on a reused PID: %v", err)
		}
		if err := p.SignalAndWait(context.Background(), unix.SIGTERM, time.Second); err != nil {
			t.Errorf("SignalAndWait on a reused PID: %v", err)
		}
		return
	}
	t.Fatal("no thread besides the main one")
}

func TestTerminate(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	p, err := Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(unix.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	<-done
	if p.Alive() {
		t.Error("still alive after Stop")
	}
	if _, err := p.Open(); !errors.Is(err, ErrGone) {
		t.Errorf("Open after exit = %v, want ErrGone", err)
	}
	if err := p.Stop(unix.SIGTERM, time.Second); err != nil {
		t.Errorf("stopping what is gone: %v", err)
	}
}
