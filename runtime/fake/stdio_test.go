package fake_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/runtime/runtimetest"
)

// eventually polls cond; the deadline only bounds a broken test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func startOne(t *testing.T, f *fake.Runtime, cfg runtime.ContainerConfig) (*runtime.Sandbox, *runtime.Container) {
	t.Helper()
	ctx := context.Background()
	sb, err := f.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "ns", Name: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	f.AddImage("img:1", runtime.ImageConfig{})
	cfg.SandboxID, cfg.Image = sb.ID, "img:1"
	if cfg.Name == "" {
		cfg.Name = "app"
	}
	c, err := f.StartContainer(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sb, c
}

func TestExecTerminal(t *testing.T) {
	f := fake.New()
	_, c := startOne(t, f, runtime.ContainerConfig{})
	// A line-echoing program: what it reads, it answers with.
	f.OnExec(func(id string, opts runtime.ExecOptions) int {
		got, _ := io.ReadAll(opts.Stdin)
		io.WriteString(opts.Stdout, "read: "+strings.ReplaceAll(string(got), "\n", "|")+"\n")
		return 3
	})
	inR, inW := io.Pipe()
	resize := make(chan runtime.TermSize)
	var out runtimetest.Buffer
	done := make(chan int)
	go func() {
		code, err := f.Exec(context.Background(), c.ID, runtime.ExecOptions{Cmd: []string{"sh"}, TTY: true, Stdin: inR, Stdout: &out, Resize: resize})
		if err != nil {
			t.Error(err)
		}
		done <- code
	}()
	resize <- runtime.TermSize{Width: 80, Height: 24}
	resize <- runtime.TermSize{Width: 120, Height: 40}
	eventually(t, "the last size recorded", func() bool {
		s, ok := f.TermSize(c.ID)
		return ok && s == runtime.TermSize{Width: 120, Height: 40}
	})
	io.WriteString(inW, "ab\rcd\x04") // ^D after "cd" only hands "cd" over
	io.WriteString(inW, "\x04")       // the second one ends the input
	if code := <-done; code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	// Echo (CR shown as CR LF), then the answer with ONLCR.
	if want := "ab\r\ncdread: ab|cd\r\n"; out.String() != want {
		t.Errorf("terminal output %q, want %q", out.String(), want)
	}
	close(resize)
	inW.Close()
}

func TestAttach(t *testing.T) {
	ctx := context.Background()
	f := fake.New()
	_, plain := startOne(t, f, runtime.ContainerConfig{Stdin: true, StdinOnce: true})
	var out, errb runtimetest.Buffer
	inR, inW := io.Pipe()
	ended := make(chan error, 1)
	go func() {
		ended <- f.Attach(ctx, plain.ID, runtime.AttachOptions{Stdin: inR, Stdout: &out, Stderr: &errb})
	}()
	eventually(t, "the client attached", func() bool { return f.Attached(plain.ID) == 1 })
	f.Output(plain.ID, false, []byte("to stdout\n"))
	f.Output(plain.ID, true, []byte("to stderr\n"))
	io.WriteString(inW, "typed\n")
	eventually(t, "input kept", func() bool { return f.Input(plain.ID) == "typed\n" })
	inW.Close()
	// stdinOnce: the first client's end of input closes stdin for good.
	inR2, inW2 := io.Pipe()
	go f.Attach(ctx, plain.ID, runtime.AttachOptions{Stdin: inR2, Stdout: io.Discard})
	eventually(t, "the second client attached", func() bool { return f.Attached(plain.ID) == 2 })
	go io.WriteString(inW2, "late\n")
	time.Sleep(20 * time.Millisecond)
	if err := f.Exit(plain.ID, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-ended; err != nil {
		t.Errorf("attach ended with %v at the container's exit", err)
	}
	if out.String() != "to stdout\n" || errb.String() != "to stderr\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
	if got := f.Input(plain.ID); got != "typed\n" {
		t.Errorf("input after stdinOnce closed it: %q", got)
	}
	inW2.Close()
	if err := f.Attach(ctx, plain.ID, runtime.AttachOptions{Stdout: io.Discard}); !errors.Is(err, runtime.ErrConflict) {
		t.Errorf("attach to an exited container: %v, want ErrConflict", err)
	}

	f2 := fake.New()
	_, tty := startOne(t, f2, runtime.ContainerConfig{TTY: true, Stdin: true})
	if err := f2.Attach(ctx, tty.ID, runtime.AttachOptions{Stdout: io.Discard}); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("attach without the container's tty: %v, want ErrInvalidConfig", err)
	}
	var a, b runtimetest.Buffer
	in, typist := io.Pipe()
	resize := make(chan runtime.TermSize, 1)
	actx, cancel := context.WithCancel(ctx)
	go f2.Attach(actx, tty.ID, runtime.AttachOptions{TTY: true, Stdin: in, Stdout: &a, Resize: resize})
	go f2.Attach(actx, tty.ID, runtime.AttachOptions{TTY: true, Stdout: &b})
	eventually(t, "two clients attached", func() bool { return f2.Attached(tty.ID) == 2 })
	resize <- runtime.TermSize{Width: 99, Height: 33}
	io.WriteString(typist, "hi\r")
	// The echo is the terminal's output: every client sees it. It is
	// waited for before the container writes, since the input's copy may
	// run after a write made at once.
	for _, buf := range []*runtimetest.Buffer{&a, &b} {
		eventually(t, "the echo on every client", func() bool { return buf.String() == "hi\r\n" })
	}
	f2.Output(tty.ID, false, []byte("ok\n"))
	for _, buf := range []*runtimetest.Buffer{&a, &b} {
		eventually(t, "echo and output on every client", func() bool { return buf.String() == "hi\r\nok\r\n" })
	}
	eventually(t, "size recorded", func() bool { s, _ := f2.TermSize(tty.ID); return s.Width == 99 })
	cancel()
	eventually(t, "clients detached", func() bool { return f2.Attached(tty.ID) == 0 })
	typist.Close()
	close(resize)
}
