package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// logSample writes the kinds of lines the agent writes: a decision with a
// duration, a failure with an error, a debug line.
func logSample(l zerolog.Logger) {
	l.Info().Str("pod", "default/web").Str("action", "StartContainer").Str("reason", "missing").
		Dur("duration", 14040*time.Microsecond).Msg("action applied")
	l.Warn().Str("pod", "default/web").Err(errors.New("pull busybox:1.36: connection refused")).
		Dur("duration", 1500*time.Millisecond).Msg("reconcile failed")
	l.Debug().Str("reason", "event").Int("pods", 3).Msg("manifests loaded")
}

// fixedClock makes the timestamps of the lines logged during the test
// known: 2025-03-14 21:24:05.123 in a zone east of UTC, which the logs
// must show in UTC.
func fixedClock(t *testing.T) {
	t.Helper()
	at := time.Date(2025, 3, 14, 22, 24, 5, 123456789, time.FixedZone("CET", 3600))
	zerolog.TimestampFunc = func() time.Time { return at.UTC() }
	t.Cleanup(func() { zerolog.TimestampFunc = time.Now })
}

func TestLogLinesGolden(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			g := &globalOptions{stderr: &buf, LogLevel: "debug", LogFormat: format}
			if err := g.setupLogging(); err != nil {
				t.Fatal(err)
			}
			fixedClock(t)
			logSample(g.log)
			golden(t, "log-"+format+".golden", buf.String())
		})
	}
}

// openPTY returns a pseudo-terminal pair: what is written to the second is
// read from the first.
func openPTY(t *testing.T) (master, terminal *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal("unlockpt:", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal("ptsname:", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestLogFormatAndColour: console with colours only on a terminal and
// without NO_COLOR; JSON off a terminal; a console forced onto a pipe or
// file has no escape sequences.
func TestLogFormatAndColour(t *testing.T) {
	const esc = "\x1b["
	for _, tc := range []struct {
		name, format, noColor string
		tty                   bool
		wantJSON, wantColour  bool
	}{
		{name: "terminal", tty: true, wantColour: true},
		{name: "terminal with NO_COLOR", tty: true, noColor: "1"},
		{name: "terminal asked for json", tty: true, format: "json", wantJSON: true},
		{name: "pipe", wantJSON: true},
		{name: "pipe asked for console", format: "console"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NO_COLOR", tc.noColor)
			var out string
			if tc.tty {
				m, s := openPTY(t)
				g := &globalOptions{stderr: s, LogLevel: "info", LogFormat: tc.format}
				if err := g.setupLogging(); err != nil {
					t.Fatal(err)
				}
				g.log.Info().Dur("duration", time.Second).Msg("hello")
				if err := m.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 4096)
				n, err := m.Read(b)
				if err != nil {
					t.Fatal(err)
				}
				out = string(b[:n])
			} else {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				g := &globalOptions{stderr: w, LogLevel: "info", LogFormat: tc.format}
				if err := g.setupLogging(); err != nil {
					t.Fatal(err)
				}
				g.log.Info().Dur("duration", time.Second).Msg("hello")
				w.Close()
				b := make([]byte, 4096)
				n, _ := r.Read(b)
				r.Close()
				out = string(b[:n])
			}
			if got := strings.HasPrefix(out, "{"); got != tc.wantJSON {
				t.Errorf("JSON = %v, want %v: %q", got, tc.wantJSON, out)
			}
			if got := strings.Contains(out, esc); got != tc.wantColour {
				t.Errorf("colours = %v, want %v: %q", got, tc.wantColour, out)
			}
			if !strings.Contains(out, "1s") {
				t.Errorf("duration without its unit: %q", out)
			}
		})
	}
}
