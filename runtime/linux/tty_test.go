package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/attach"
)

// waitOutput waits until what was written to b matches re.
func waitOutput(t *testing.T, what string, b *syncBuffer, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(30 * time.Second)
	for !rx.MatchString(b.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q in the output:\n%q", what, re, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// attachment is an Attach running in the background.
type attachment struct {
	in     *io.PipeWriter
	out    syncBuffer
	errOut syncBuffer
	resize chan runtime.TermSize
	cancel context.CancelFunc
	done   chan error
}

// attachTo attaches to container id with the given streams; input and
// resizes are the test's to send.
func attachTo(t *testing.T, rt *Runtime, id string, tty, stdin bool) *attachment {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &attachment{cancel: cancel, done: make(chan error, 1), resize: make(chan runtime.TermSize, 1)}
	opts := runtime.AttachOptions{TTY: tty, Stdout: &a.out, Resize: a.resize}
	if !tty {
		opts.Stderr = &a.errOut
	}
	if stdin {
		var r *io.PipeReader
		r, a.in = io.Pipe()
		opts.Stdin = r
	}
	go func() { a.done <- rt.Attach(ctx, id, opts) }()
	t.Cleanup(func() {
		cancel()
		if a.in != nil {
			a.in.Close()
		}
	})
	return a
}

func (a *attachment) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(a.in, s); err != nil {
		t.Fatalf("input %q: %v", s, err)
	}
}

// wait returns what Attach returned.
func (a *attachment) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-a.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("attach did not return")
		return nil
	}
}

// TestTTYContainer is issue 14's case: a shell with tty and stdin keeps
// running with nobody attached (its terminal is held by the shim, not
// closed), and attach gives a terminal: echo, input, resizes, several
// clients seeing the same output, detach and re-attach, and the exit.
func TestTTYContainer(t *testing.T) {
	e := newCtrEnv(t, nil)
	cfg := e.config("shell", "/bin/sh")
	cfg.TTY, cfg.Stdin = true, true
	c := e.start(t, cfg)
	// The shell printed its prompt into the log (through the terminal,
	// hence as stdout) and waits for input instead of exiting.
	waitLog := func(re string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var b strings.Builder
			crilog.Read(c.LogPath, &b, crilog.ReadOptions{})
			if regexp.MustCompile(re).MatchString(b.String()) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", re, b.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLog(`built-in shell`)
	if got, _ := e.rt.GetContainer(context.Background(), c.ID); got.State != runtime.ContainerRunning {
		t.Fatalf("the shell is %s with nobody attached, want running", got.State)
	}
	// Its stdio is the terminal, and no descriptor of the master reached it.
	for _, fd := range []string{"0", "1", "2"} {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", c.PID, fd))
		if err != nil || l != "/dev/pts/0" {
			t.Errorf("workload fd %s -> %q (%v), want /dev/pts/0", fd, l, err)
		}
	}
	noMaster(t, c.PID)

	a := attachTo(t, e.rt, c.ID, true, true)
	b := attachTo(t, e.rt, c.ID, true, false)
	// Sizes and input only mean something once the session is open: the
	// shim's terminal echoes a marker once the input got through.
	a.resize <- runtime.TermSize{Width: 123, Height: 45}
	waitSession(t, a, b)
	a.send(t, "echo hi-$((40+2)); stty size; tty\n")
	waitOutput(t, "first client", &a.out, `hi-42\r\n45 123\r\n/dev/pts/0\r\n`)
	waitOutput(t, "second client (output goes to all)", &b.out, `hi-42\r\n45 123\r\n`)
	a.resize <- runtime.TermSize{Width: 80, Height: 24}
	// The new size reaches the terminal before later input does? Not
	// ordered across frames: wait until stty sees it.
	for i := 0; ; i++ {
		a.send(t, "stty size\n")
		if strings.Contains(a.out.String(), "24 80\r\n") {
			break
		}
		if i > 300 {
			t.Fatalf("resize not applied:\n%q", a.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Detach the first client: the shell keeps running.
	a.cancel()
	if err := a.wait(t); !errors.Is(err, context.Canceled) {
		t.Errorf("detached attach returned %v, want context.Canceled", err)
	}
	b.cancel()
	b.wait(t)
	if got, _ := e.rt.GetContainer(context.Background(), c.ID); got.State != runtime.ContainerRunning {
		t.Fatalf("after detaching: %s, want running", got.State)
	}
	// Attach again: the same shell, and /dev/console is its terminal.
	a2 := attachTo(t, e.rt, c.ID, true, true)
	waitSession(t, a2)
	a2.send(t, "echo again-$((2+3)) $(stat -c %t:%T /dev/console /dev/pts/0)\n")
	waitOutput(t, "re-attached client", &a2.out, `again-5 88:0 88:0`)
	// The container's exit ends the session, without an error.
	a2.send(t, "exit 7\n")
	if err := a2.wait(t); err != nil {
		t.Errorf("attach ended by the exit: %v", err)
	}
	got := e.waitExit(t, c.ID)
	if got.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", got.ExitCode)
	}
	// What the clients saw is logged, as stdout.
	waitLog(`again-5`)
	raw, _ := os.ReadFile(c.LogPath)
	if strings.Contains(string(raw), " stderr ") {
		t.Errorf("a terminal's output logged as stderr:\n%s", raw)
	}
	// The socket went with the shim.
	if _, err := os.Stat(filepath.Join(e.cfg.RunRoot, "containers", c.ID, attach.SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("attach socket after the exit: %v", err)
	}
	e.check(t)
}

// waitSession waits until each attachment's session is open: a marker
// typed into the first comes back (echoed by the terminal) on all.
func waitSession(t *testing.T, as ...*attachment) {
	t.Helper()
	marker := fmt.Sprintf(": ready-%d", time.Now().UnixNano())
	deadline := time.Now().Add(30 * time.Second)
	for {
		as[0].send(t, marker+"\n")
		time.Sleep(20 * time.Millisecond)
		ok := true
		for _, a := range as {
			ok = ok && strings.Contains(a.out.String(), marker)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions did not open: %q", as[0].out.String())
		}
	}
}

// noMaster checks that no descriptor of pid is a pty master.
func noMaster(t *testing.T, pid int) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		l, _ := os.Readlink(filepath.Join(dir, ent.Name()))
		if strings.Contains(l, "ptmx") {
			t.Errorf("process %d holds a pty master on fd %s (%s)", pid, ent.Name(), l)
		}
	}
}
