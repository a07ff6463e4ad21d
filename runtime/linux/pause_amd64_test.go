package linux

import (
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"golang.org/x/sys/unix"
)

// TestPauseForbiddenSyscallKills makes a running pause execute a system
// call its filter does not allow (getpid, injected with ptrace where it
// waits) and checks that the kernel kills it with SIGSYS.
func TestPauseForbiddenSyscallKills(t *testing.T) {
	linuxtest.RequireRoot(t)
	root, err := emptyRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := startRawPause(t, root)
	pid := cmd.Process.Pid
	// ptrace requests come from the thread that attached.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceAttach(pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("ptrace attach: %v", err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
		t.Fatalf("wait for the stop: %v %v", ws, err)
	}
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &regs); err != nil {
		t.Fatal(err)
	}
	// It stopped inside rt_sigtimedwait: run its SYSCALL instruction
	// (2 bytes back) again, as getpid, with no restart of the old call.
	regs.Rip -= 2
	regs.Rax = unix.SYS_GETPID
	regs.Orig_rax = ^uint64(0)
	if err := unix.PtraceSetRegs(pid, &regs); err != nil {
		t.Fatal(err)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatal("the pause survived a call its filter does not allow")
	}
	st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !st.Signaled() || st.Signal() != syscall.SIGSYS {
		t.Errorf("pause after a forbidden call: %v (%v), want killed by SIGSYS", cmd.ProcessState, err)
	}
}
