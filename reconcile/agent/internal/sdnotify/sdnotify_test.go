package sdnotify

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSystemd listens where $NOTIFY_SOCKET points, as systemd does.
func fakeSystemd(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// next returns the next datagram, failing the test after a generous wait
// (the bound only stops a hang; nothing here measures speed).
func next(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	b := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := c.Read(b)
	if err != nil {
		t.Fatal("no notification:", err)
	}
	return string(b[:n])
}

// none checks that nothing was sent.
func none(t *testing.T, c *net.UnixConn) {
	t.Helper()
	b := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(b); err == nil {
		t.Fatalf("unexpected notification %q", b[:n])
	}
}

func TestStates(t *testing.T) {
	c := fakeSystemd(t)
	if err := Ready("watching /etc/pelagos/pods"); err != nil {
		t.Fatal(err)
	}
	if got := next(t, c); got != "READY=1\nSTATUS=watching /etc/pelagos/pods" {
		t.Errorf("ready: %q", got)
	}
	var before unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	got := next(t, c)
	var after unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &after)
	usec, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
	n, err := strconv.ParseInt(strings.TrimSuffix(usec, "\n"), 10, 64)
	if !ok || err != nil || n < before.Nano()/1000 || n > after.Nano()/1000 {
		t.Errorf("reloading: %q (monotonic clock between %d and %d µs)", got, before.Nano()/1000, after.Nano()/1000)
	}
	if err := Stopping(); err != nil {
		t.Fatal(err)
	}
	if got := next(t, c); got != "STOPPING=1" {
		t.Errorf("stopping: %q", got)
	}
}

func TestWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	if err := Ready("x"); err != nil {
		t.Error(err)
	}
	called := false
	if err := Watchdog(t.Context(), func(context.Context) error { called = true; return nil }, func(error) {}); err != nil || called {
		t.Errorf("no watchdog: %v, check called %v", err, called)
	}
	// A watchdog meant for another process is not ours.
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", "1")
	if err := Watchdog(t.Context(), func(context.Context) error { called = true; return nil }, func(error) {}); err != nil || called {
		t.Errorf("another PID's watchdog: %v, check called %v", err, called)
	}
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "soon")
	if err := Watchdog(t.Context(), nil, nil); err == nil {
		t.Error("a malformed WATCHDOG_USEC is accepted")
	}
}

// TestWatchdogFollowsLiveness: pings while the check passes, none while it
// fails, and a hanging check is reported without a second one started
// beside it.
func TestWatchdogFollowsLiveness(t *testing.T) {
	c := fakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "40000") // a check every 20 ms
	var (
		healthy atomic.Bool
		hang    atomic.Bool
		running atomic.Int32
		calls   atomic.Int32
	)
	release := make(chan struct{})
	fails := make(chan error, 100)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		done <- Watchdog(ctx, func(ctx context.Context) error {
			calls.Add(1)
			if running.Add(1) > 1 {
				t.Error("two checks at once")
			}
			defer running.Add(-1)
			if hang.Load() {
				<-release // ignores ctx, as a deadlocked check would
				return nil
			}
			if healthy.Load() {
				return nil
			}
			return errors.New("the loop is stuck")
		}, func(err error) {
			select {
			case fails <- err:
			default: // the test reads only the failures it waits for
			}
		})
	}()

	// Failing: no ping, each failure reported.
	for range 3 {
		if err := <-fails; err.Error() != "the loop is stuck" {
			t.Errorf("failure: %v", err)
		}
	}
	none(t, c)
	// Healthy: pings.
	healthy.Store(true)
	for range 3 {
		if got := next(t, c); got != "WATCHDOG=1" {
			t.Errorf("ping: %q", got)
		}
	}
	// Hanging: reported as not answering, one check in flight.
	hang.Store(true)
	for {
		err := <-fails
		if strings.Contains(err.Error(), "did not answer within 20ms") {
			break
		}
	}
	n := calls.Load()
	for range 3 {
		<-fails
	}
	if calls.Load() != n {
		t.Errorf("%d more checks started while one hangs", calls.Load()-n)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	for {
		if _, err := c.Read(make([]byte, 64)); err != nil {
			break // drain what was sent before the hang
		}
	}
	hang.Store(false)
	close(release)
	for got := next(t, c); got != "WATCHDOG=1"; got = next(t, c) {
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
