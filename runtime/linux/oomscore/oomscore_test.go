package oomscore

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// TestSetOnAChild works on a child process, so the test binary keeps its
// own score: raising always works, lowering to the agent's value works
// with CAP_SYS_RESOURCE and is otherwise refused with the value kept and
// the reason named.
func TestSetOnAChild(t *testing.T) {
	linuxtest.RequireRoot(t)
	child := exec.Command("sleep", "100")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	file := fmt.Sprintf("/proc/%d/oom_score_adj", child.Process.Pid)
	if got, err := Set(file, 500); err != nil || got != 500 {
		t.Fatalf("raise to 500: %d, %v", got, err)
	}
	got, err := Set(file, Agent)
	if linuxtest.HasCapability(t, unix.CAP_SYS_RESOURCE) {
		if err != nil || got != Agent {
			t.Errorf("with CAP_SYS_RESOURCE: %d, %v; want %d", got, err, Agent)
		}
		return
	}
	var re *RefusedError
	if !errors.As(err, &re) || got != 500 || re.Kept != 500 || re.Wanted != Agent || !errors.Is(err, syscall.EACCES) {
		t.Fatalf("without CAP_SYS_RESOURCE: %d, %v; want 500 kept and a RefusedError", got, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "stays 500 instead of -998") || !strings.Contains(msg, "CAP_SYS_RESOURCE") {
		t.Errorf("message %q does not say what is kept and why", msg)
	}
	b, _ := os.ReadFile(file)
	if strings.TrimSpace(string(b)) != "500" {
		t.Errorf("the kernel has %q", b)
	}
}

func TestSetRefusesOutOfRange(t *testing.T) {
	for _, adj := range []int{-1001, 1001} {
		if _, err := Set("/nonexistent", adj); err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("Set(%d) = %v", adj, err)
		}
	}
}
