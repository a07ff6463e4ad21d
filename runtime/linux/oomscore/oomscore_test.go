package oomscore

import (
	"os/exec"
	"testing"
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
