package oomscore

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// TestClamp raises a child's score (always allowed) and asks for one below
// the minimum it inherited from this process: the lowest allowed value is
// kept, and nothing fails. Under a root with CAP_SYS_RESOURCE the low value
// is simply taken.
func TestClamp(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	base, err := Get(pid)
	if err != nil {
		t.Fatal(err)
	}
	up := min(base+300, Max)
	if got, err := Set(pid, up); err != nil || got != up {
		t.Fatalf("raise to %d: got %d, %v", up, got, err)
	}
	got, err := Set(pid, Min)
	if err != nil {
		t.Fatalf("lower to %d: %v", Min, err)
	}
	if now, _ := Get(pid); now != got {
		t.Errorf("Set returned %d, the kernel holds %d", got, now)
	}
	if got > base {
		t.Errorf("lowered to %d, above the inherited %d which is always allowed", got, base)
	}
	if got, _ := Set(pid, 5000); got != Max {
		t.Errorf("5000 is clamped to %d, got %d", Max, got)
	}
}

// TestSetSelfSaysWhy runs SetSelf in a child copy of the test binary (so
// this process keeps its own score): raised first, then asked for the
// agent's value, it either gets it (with CAP_SYS_RESOURCE) or reports the
// value kept and the reason.
func TestSetSelfSaysWhy(t *testing.T) {
	linuxtest.RequireRoot(t)
	if os.Getenv("OOMSCORE_CHILD") == "1" {
		setSelfInChild(t)
		return
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^TestSetSelfSaysWhy$", "-test.v")
	cmd.Env = append(os.Environ(), "OOMSCORE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSetSelfSaysWhy") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func setSelfInChild(t *testing.T) {
	if got, err := SetSelf(500); err != nil || got != 500 {
		t.Fatalf("raise to 500: %d, %v", got, err)
	}
	got, err := SetSelf(Agent)
	if linuxtest.HasCapability(t, unix.CAP_SYS_RESOURCE) {
		if err != nil || got != Agent {
			t.Errorf("with CAP_SYS_RESOURCE: %d, %v; want %d", got, err, Agent)
		}
		return
	}
	var re *RefusedError
	if !errors.As(err, &re) || got > 500 || re.Kept != got || re.Wanted != Agent {
		t.Fatalf("without CAP_SYS_RESOURCE: %d, %v; want a RefusedError with the value kept", got, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "instead of -998") || !strings.Contains(msg, "CAP_SYS_RESOURCE") {
		t.Errorf("message %q does not say what is kept and why", msg)
	}
}
