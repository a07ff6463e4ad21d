package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// fakeAgent is the agent's API over the fake runtime, on a socket of the
// test's, with one running pod "web" (container "app").
func fakeAgent(t *testing.T) (string, *fake.Runtime, string) {
	t.Helper()
	f := fake.New()
	f.OnExec(func(_ string, opts runtime.ExecOptions) int {
		switch opts.Cmd[0] {
		case "echo":
			fmt.Fprintln(opts.Stdout, strings.Join(opts.Cmd[1:], " "))
		case "exit":
			code, _ := strconv.Atoi(opts.Cmd[1])
			return code
		case "cat":
			io.Copy(opts.Stdout, opts.Stdin)
		case "lines": // answers each line of input; 5 at its end
			buf := make([]byte, 256)
			for {
				n, err := opts.Stdin.Read(buf)
				for _, l := range strings.SplitAfter(string(buf[:n]), "\n") {
					if strings.HasSuffix(l, "\n") {
						fmt.Fprintf(opts.Stdout, "got %s", l)
					}
				}
				if err != nil {
					return 5
				}
			}
		default:
			fmt.Fprintf(opts.Stderr, "exec %q: executable file not found in $PATH\n", opts.Cmd[0])
			return 127
		}
		return 0
	})
	rec := reconcile.New(reconcile.Config{Runtime: f, Images: f, Log: zerolog.Nop(), Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); rec.Run(ctx) }()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	kube := kubeapi.New(kubeapi.Config{Backend: rec, Runtime: f, NodeName: "node", Log: zerolog.Nop()})
	kube.SetStreams(kube.RuntimeStreams())
	srv := &api.Server{Backend: rec, Runtime: f, Kube: kube, Log: zerolog.Nop()}
	go func() { defer wg.Done(); srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	rec.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{{
		Key: runtime.PodKey{Namespace: "default", Name: "web"}, Source: "/m/web.yaml", SandboxHash: "s",
		Restart: reconcile.RestartAlways, Grace: time.Second,
		Containers: []reconcile.DesiredContainer{{Name: "app", Hash: "h", PullPolicy: runtime.PullIfNotPresent,
			Config: runtime.ContainerConfig{Image: "busybox:1"}}},
	}}})
	client := api.NewClient(sock)
	var id string
	for deadline := time.Now().Add(30 * time.Second); id == ""; time.Sleep(5 * time.Millisecond) {
		if p, err := client.Pod(ctx, "default", "web"); err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
			id = strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "pelagos://")
		}
		if time.Now().After(deadline) {
			t.Fatal("pod web never ran")
		}
	}
	return sock, f, id
}

// TestExecCLI runs `pelagos-agent exec` as a user does, against the
// agent's API: the command's output and exit status, stdin to its end,
// and -it in a terminal (raw mode, the size and its changes, ^D, the
// terminal restored after).
func TestExecCLI(t *testing.T) {
	bin := buildAgentBinary(t)
	sock, f, id := fakeAgent(t)
	cli := func(stdin io.Reader, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--socket", sock, "exec"}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}
	for _, tc := range []struct {
		args           []string
		stdin          string
		stdout, stderr string
		code           int
	}{
		{[]string{"web", "--", "echo", "hi"}, "", "hi\n", "", 0},
		{[]string{"web", "--", "exit", "3"}, "", "", "", 3},
		{[]string{"web", "--", "nope"}, "", "", "exec \"nope\": executable file not found in $PATH\n", 127},
		{[]string{"-i", "web", "--", "cat"}, "to the end\n", "to the end\n", "", 0},
		{[]string{"-t", "web", "--", "echo", "plain"}, "", "plain\n", "Unable to use a TTY - input is not a terminal or the right kind of file\n", 0},
		{[]string{"ghost", "--", "echo"}, "", "", "Error: exec in default/ghost: pods \"ghost\" not found\n", 1},
	} {
		out, errOut, code := cli(strings.NewReader(tc.stdin), tc.args...)
		if out != tc.stdout || errOut != tc.stderr || code != tc.code {
			t.Errorf("exec %v: stdout %q stderr %q code %d; want %q %q %d", tc.args, out, errOut, code, tc.stdout, tc.stderr, tc.code)
		}
	}

	// -it: the user's terminal is a pty of the test's.
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 20, Cols: 70}); err != nil {
		t.Fatal(err)
	}
	before, err := term.GetState(int(tty.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--socket", sock, "exec", "-it", "web", "--", "lines")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var screen syncBuf
	go io.Copy(&screen, ptmx)
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; screen %q", what, screen.String())
			}
		}
	}
	eventually("the initial size", func() bool { s, ok := f.TermSize(id); return ok && s == runtime.TermSize{Width: 70, Height: 20} })
	io.WriteString(ptmx, "one\r")
	// Raw mode: the local terminal neither echoes nor maps; what shows is
	// the remote terminal's echo and the answer.
	eventually("the remote echo and answer", func() bool { return screen.String() == "one\r\ngot one\r\n" })
	pty.Setsize(ptmx, &pty.Winsize{Rows: 44, Cols: 132})
	eventually("the new size", func() bool { s, _ := f.TermSize(id); return s == runtime.TermSize{Width: 132, Height: 44} })
	io.WriteString(ptmx, "\x04")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("exec -it did not end at ^D; screen %q", screen.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 5 {
		t.Errorf("exec -it exit code %d, want 5; screen %q", code, screen.String())
	}
	after, err := term.GetState(int(tty.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("the terminal was not restored:\nbefore %+v\nafter  %+v", before, after)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
