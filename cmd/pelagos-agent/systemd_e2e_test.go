package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentSystemdNotify runs the real agent as systemd would start a
// Type=notify service with WatchdogSec=: $NOTIFY_SOCKET points at a socket
// the test listens on, as systemd's. The agent says READY=1 once it has
// loaded the manifests, pings the watchdog, says RELOADING=1 (with
// MONOTONIC_USEC) and READY=1 again around a SIGHUP, and STOPPING=1 on
// SIGTERM (with --stop-pods-on-exit, so that the pod goes too).
func TestAgentSystemdNotify(t *testing.T) {
	e := newAgentEnv(t, "--stop-pods-on-exit")
	path := filepath.Join(t.TempDir(), "notify.sock")
	sd, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	e.env = []string{"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=400000"}
	e.write("rev1", "web.yaml", podYAML("web", "web", "one"))
	e.start()

	// next returns the next message; the bound only stops a hang.
	next := func() string {
		t.Helper()
		b := make([]byte, 4096)
		sd.SetReadDeadline(time.Now().Add(2 * time.Minute))
		n, err := sd.Read(b)
		if err != nil {
			t.Fatal("no message from the agent:", err)
		}
		return string(b[:n])
	}
	// until skips watchdog pings up to the next other message.
	until := func() string {
		t.Helper()
		for {
			if m := next(); m != "WATCHDOG=1" {
				return m
			}
		}
	}

	if m := next(); m != "READY=1\nSTATUS=watching "+e.current {
		t.Fatalf("first message %q, want READY=1 with the status", m)
	}
	for range 3 {
		if m := next(); m != "WATCHDOG=1" {
			t.Fatalf("%q while idle; want watchdog pings", m)
		}
	}

	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m := until()
	if !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") || !strings.HasSuffix(m, "\n") {
		t.Errorf("after SIGHUP %q, want RELOADING=1 and MONOTONIC_USEC", m)
	}
	if m := until(); m != "READY=1\nSTATUS=watching "+e.current {
		t.Errorf("after the reload %q, want READY=1", m)
	}
	e.running("web") // the reload kept the pod as it was

	e.stop(syscall.SIGTERM)
	if m := until(); m != "STOPPING=1" {
		t.Errorf("on SIGTERM %q, want STOPPING=1", m)
	}
	e.census().Check(t, 10*time.Second)
}
