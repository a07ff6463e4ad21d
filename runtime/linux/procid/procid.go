// Package procid identifies processes across PID reuse, by PID and start
// time, and signals and waits for them only through a pidfd opened after
// that identity was checked. The agent and its helpers record processes
// this way (pauses, shims, container inits) and act on the records long
// after the PID was read.
package procid

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ID is a process: PID plus start time in clock ticks since boot
// (/proc/PID/stat field 22). The JSON names are those of the records.
type ID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// ErrGone says the recorded process no longer exists: it exited, or its
// PID now names another process or another process's thread.
var ErrGone = errors.New("process is gone")

// Stat returns a process's state letter and start time.
func Stat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// comm may hold spaces and parentheses: parse after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat start time: %w", pid, err)
	}
	return fields[0][0], start, nil
}

// Of returns the identity of the running process pid.
func Of(pid int) (ID, error) {
	_, st, err := Stat(pid)
	if err != nil {
		return ID{}, err
	}
	return ID{PID: pid, Start: st}, nil
}

// Self returns the calling process's identity.
func Self() (ID, error) { return Of(os.Getpid()) }

// Alive reports whether the process is the one recorded and has not exited
// (a zombie has exited, whatever kill(pid, 0) says). /proc/<tid>/stat also
// answers for a thread of another process, whose start time differs.
func (p ID) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	state, start, err := Stat(p.PID)
	if err != nil || start != p.Start {
		return false
	}
	return state != 'Z' && state != 'X' && state != 'x'
}

// gone reports whether a pidfd_open error means the recorded PID is not a
// process any more: ESRCH (no such PID), ENOENT or EINVAL (the PID is a
// thread of another process, depending on the kernel).
func gone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}

// Open returns a pidfd of p, or ErrGone. The identity is checked before
// opening (a PID that now names another process's thread makes pidfd_open
// fail in ways that mean nothing about p) and again after it: the pidfd
// then names the recorded process for good, whatever happens to the PID.
func (p ID) Open() (int, error) {
	if !p.Alive() {
		return -1, ErrGone
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		if gone(err) {
			return -1, ErrGone
		}
		return -1, fmt.Errorf("pid %d: %w", p.PID, os.NewSyscallError("pidfd_open", err))
	}
	if !p.Alive() {
		unix.Close(fd)
		return -1, ErrGone
	}
	return fd, nil
}

// OpenFile is Open as an *os.File, for handing the pidfd to a child.
func (p ID) OpenFile() (*os.File, error) {
	fd, err := p.Open()
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(p.PID)), nil
}

// signal sends sig through fd and reports whether the process had exited.
func signal(fd int, p ID, sig unix.Signal) (bool, error) {
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return true, nil
		}
		return false, fmt.Errorf("signal pid %d: %w", p.PID, os.NewSyscallError("pidfd_send_signal", err))
	}
	return false, nil
}

// Terminate sends sig and returns the wait for the process's end, which
// SIGKILLs it after grace; the caller can do other work between the two.
// A process that is gone, now or by then, is not an error. When sig is
// SIGTERM and the process has no handler for it (PID 1 of a PID namespace
// ignores unhandled signals) it gets SIGKILL at once.
func (p ID) Terminate(sig unix.Signal) (wait func(grace time.Duration) error) {
	fd, err := p.Open()
	if errors.Is(err, ErrGone) {
		return func(time.Duration) error { return nil }
	}
	if err != nil {
		return func(time.Duration) error { return fmt.Errorf("stop: %w", err) }
	}
	if sig == unix.SIGTERM && !Catches(p.PID, unix.SIGTERM) {
		sig = unix.SIGKILL
	}
	exited, err := signal(fd, p, sig)
	return func(grace time.Duration) error {
		defer unix.Close(fd)
		if exited || err != nil {
			return err
		}
		if exited, err := WaitFD(fd, grace); err != nil || exited {
			return err
		}
		if exited, err := signal(fd, p, unix.SIGKILL); err != nil || exited {
			return err
		}
		if exited, err := WaitFD(fd, 5*time.Second); err != nil || exited {
			return err
		}
		return fmt.Errorf("pid %d: still running after SIGKILL", p.PID)
	}
}

// Signal sends sig to the process, or returns ErrGone.
func (p ID) Signal(sig unix.Signal) error {
	fd, err := p.Open()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if exited, err := signal(fd, p, sig); err != nil || exited {
		if exited {
			return ErrGone
		}
		return err
	}
	return nil
}

// Stop ends the process: sig, up to grace for it to exit, then SIGKILL.
func (p ID) Stop(sig unix.Signal, grace time.Duration) error {
	return p.Terminate(sig)(grace)
}

// SignalAndWait sends sig and waits up to d (or ctx's deadline) for the
// process to exit; it does not escalate. A gone process is not an error.
func (p ID) SignalAndWait(ctx context.Context, sig unix.Signal, d time.Duration) error {
	_, err := p.wait(ctx, d, func(fd int) (bool, error) { return signal(fd, p, sig) })
	return err
}

// WaitGone waits up to d (or ctx's deadline) for the process to exit and
// fails if it still runs then.
func (p ID) WaitGone(ctx context.Context, d time.Duration) error {
	exited, err := p.wait(ctx, d, nil)
	if err == nil && !exited && p.Alive() {
		return fmt.Errorf("pid %d still running after %s", p.PID, d)
	}
	return err
}

// wait opens a pidfd, runs first on it (nil: nothing), then waits up to d
// (or ctx's deadline) for the process to exit. A gone process has exited.
func (p ID) wait(ctx context.Context, d time.Duration, first func(fd int) (exited bool, err error)) (bool, error) {
	fd, err := p.Open()
	if errors.Is(err, ErrGone) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	if first != nil {
		if exited, err := first(fd); err != nil || exited {
			return exited, err
		}
	}
	cut := false
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		d, cut = time.Until(dl), true
	}
	exited, err := WaitFDContext(ctx, fd, d)
	if err == nil && !exited && cut {
		// The wait ended at ctx's deadline, a moment before ctx says so.
		return false, context.DeadlineExceeded
	}
	return exited, err
}

// WaitFDContext is WaitFD that also gives up, with ctx's error, as soon
// as ctx ends: an agent shutting down must not sit out a workload's grace
// period. The workload keeps what it was sent and its shim stays with it;
// the next agent finds the outcome.
func WaitFDContext(ctx context.Context, fd int, d time.Duration) (bool, error) {
	if ctx.Done() == nil {
		return WaitFD(fd, d)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return false, os.NewSyscallError("eventfd", err)
	}
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woken)
		_, _ = unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	})
	defer func() {
		if !stop() {
			<-woken // never close efd under the writer
		}
		unix.Close(efd)
	}()
	deadline := time.Now().Add(d)
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(efd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, max(0, int(time.Until(deadline).Milliseconds())))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return false, os.NewSyscallError("poll", err)
		case fds[0].Revents != 0:
			return true, nil
		case n == 0:
			return false, nil
		}
		// Only the eventfd: ctx ended; the loop's check returns its error.
	}
}

// WaitFD waits up to d for the process behind the pidfd to exit.
func WaitFD(fd int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		ms := max(int(time.Until(deadline).Milliseconds()), 0)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, os.NewSyscallError("poll", err)
		}
		return n > 0, nil
	}
}

// Catches reports whether the process has a handler for sig (SigCgt in
// /proc/PID/status).
func Catches(pid int, sig unix.Signal) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}
