package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

const shellPodYAML = `apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: busybox:1.36
    command: ["sh"]
    tty: true
    stdin: true
  - name: plain
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
`

// terminal is a command running with a pty of the test's as its
// controlling terminal and stdio, as in a user's shell.
type terminal struct {
	t      *testing.T
	what   string
	ptmx   *os.File
	cmd    *exec.Cmd
	screen syncBuf
	done   chan struct{}
}

func startTerminal(t *testing.T, cmd *exec.Cmd, rows, cols uint16) *terminal {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	term := &terminal{t: t, what: strings.Join(cmd.Args, " "), ptmx: ptmx, cmd: cmd, done: make(chan struct{})}
	go io.Copy(&term.screen, ptmx) // ends with EIO once the command is gone
	go func() { cmd.Wait(); close(term.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-term.done
		ptmx.Close()
	})
	return term
}

func (term *terminal) typeText(s string) {
	term.t.Helper()
	if _, err := io.WriteString(term.ptmx, s); err != nil {
		term.t.Fatal(err)
	}
}

// resize changes the window; the kernel tells the command (SIGWINCH).
func (term *terminal) resize(rows, cols uint16) {
	term.t.Helper()
	if err := pty.Setsize(term.ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		term.t.Fatal(err)
	}
}

// waitScreen waits until the screen matches re.
func (term *terminal) waitScreen(what, re string) {
	term.t.Helper()
	rx := regexp.MustCompile(re)
	for deadline := time.Now().Add(2 * time.Minute); !rx.MatchString(term.screen.String()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			term.t.Fatalf("%s: %s: no %q on the screen:\n%q", term.what, what, re, term.screen.String())
		}
	}
}

// untilScreen types s until the screen matches re: a resize travels apart
// from the input, so the first try may see the old size.
func (term *terminal) untilScreen(what, s, re string) {
	term.t.Helper()
	rx := regexp.MustCompile(re)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if rx.MatchString(term.screen.String()) {
			return
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("%s: %s: no %q on the screen:\n%q", term.what, what, re, term.screen.String())
		}
		term.typeText(s)
	}
}

func (term *terminal) wait() int {
	term.t.Helper()
	select {
	case <-term.done:
	case <-time.After(2 * time.Minute):
		term.t.Fatalf("%s did not end; screen:\n%q", term.what, term.screen.String())
	}
	return term.cmd.ProcessState.ExitCode()
}

// TestTerminalsEndToEnd drives the real kubectl and our own CLI through a
// pty against a real agent: a tty: true shell pod keeps running (issue
// 14), `kubectl attach -it` gets its terminal (resize, detach, re-attach,
// an agent restart under a session), `kubectl exec -it` and
// `pelagos-agent exec -it` get a terminal of their own in the container.
func TestTerminalsEndToEnd(t *testing.T) {
	e := newAgentEnv(t, "--backoff-initial", "400ms", "--backoff-max", "2s", "--resync", "2s")
	e.start()
	k := newKubectl(t, e)
	e.write("rev1", "shell.yaml", shellPodYAML)
	e.running("shell")
	restarts := func() string {
		return k.ok("get", "pod", "shell", "-o", `jsonpath={range .status.containerStatuses[*]}{.name}={.restartCount} {end}`)
	}
	kubectl := func(args ...string) *exec.Cmd {
		return k.cmd(context.Background(), args...)
	}

	t.Run("kubectl attach -it to a tty: true shell", func(t *testing.T) {
		term := startTerminal(t, kubectl("attach", "-it", "shell", "-c", "sh"), 24, 80)
		term.waitScreen("kubectl's hint", `If you don't see a command prompt, try pressing enter`)
		term.typeText("echo hi-$((40+2)); tty\r")
		term.waitScreen("the shell's answer", `hi-42\r\n/dev/pts/0\r\n`)
		term.untilScreen("the initial size", "stty size\r", `24 80\r\n`)
		term.resize(50, 132)
		term.untilScreen("the new size", "stty size\r", `50 132\r\n`)
		term.typeText("echo $$ > /tmp/shell-pid; echo saved-$((1+1))\r")
		term.waitScreen("the shell's PID saved", `saved-2\r\n`)
		// Detach: kubectl goes, the shell stays.
		term.cmd.Process.Signal(syscall.SIGTERM)
		term.wait()
		if got := restarts(); got != "sh=0 plain=0 " {
			t.Errorf("after detaching: restarts %q", got)
		}
		if out := k.ok("get", "pod", "shell", "-o", "jsonpath={.status.phase}"); out != "Running" {
			t.Errorf("after detaching: phase %q", out)
		}
	})

	// The agent restarts under an attached session: the session ends, the
	// shim and its shell do not.
	term := startTerminal(t, kubectl("attach", "-it", "shell", "-c", "sh"), 24, 80)
	term.waitScreen("kubectl's hint", `If you don't see a command prompt`)
	term.typeText("echo before-$((1+1))\r")
	term.waitScreen("the shell's answer", `before-2\r\n`)
	e.stop(syscall.SIGKILL)
	term.wait()
	e.start()
	k = newKubectl(t, e) // the API listens on a new port
	term = startTerminal(t, kubectl("attach", "-it", "shell", "-c", "sh"), 24, 80)
	term.waitScreen("kubectl's hint", `If you don't see a command prompt`)
	// The same shell: the PID it wrote before, and nothing restarted.
	term.typeText(`[ "$(cat /tmp/shell-pid)" = $$ ] && echo same-$((2+3))` + "\r")
	term.waitScreen("the same shell after an agent restart", `same-5\r\n`)
	term.cmd.Process.Signal(syscall.SIGTERM)
	term.wait()
	if got := restarts(); got != "sh=0 plain=0 " {
		t.Errorf("after an agent restart: restarts %q", got)
	}

	t.Run("kubectl exec -it", func(t *testing.T) {
		term := startTerminal(t, kubectl("exec", "-it", "shell", "-c", "plain", "--", "sh"), 30, 100)
		term.typeText("tty; stty size\r")
		term.waitScreen("a terminal of its own, sized as the client's", `/dev/pts/0\r\n30 100\r\n`)
		term.resize(40, 120)
		term.untilScreen("the new size", "stty size\r", `40 120\r\n`)
		term.typeText("exit 3\r")
		if code := term.wait(); code != 3 {
			t.Errorf("kubectl exec -it ... exit 3: exit %d; screen:\n%q", code, term.screen.String())
		}
	})

	t.Run("pelagos-agent exec -it", func(t *testing.T) {
		cmd := exec.Command(e.bin, "--socket", e.sock, "exec", "-it", "shell", "-c", "plain", "--", "sh")
		term := startTerminal(t, cmd, 20, 70)
		term.untilScreen("the size", "stty size\r", `20 70\r\n`)
		term.resize(44, 132)
		term.untilScreen("the new size", "stty size\r", `44 132\r\n`)
		// ^D ends the shell's input (once it reads its terminal again);
		// its status is the last command's.
		term.typeText("false\r")
		term.waitScreen("the prompt after false", `(?s)false\r\n.*/ # (\x1b\[[0-9]*[A-Za-z])*$`)
		term.typeText("\x04")
		if code := term.wait(); code != 1 {
			t.Errorf("pelagos-agent exec -it: exit %d, want 1; screen:\n%q", code, term.screen.String())
		}
	})

	if got := restarts(); got != "sh=0 plain=0 " {
		t.Errorf("restarts %q, want none: a shell with a terminal runs until it exits", got)
	}
	// Each container has a devpts of its own, and the execs' terminals
	// went with them.
	if ls := e.exec("shell", "plain", "ls", "/dev/pts"); ls != "ptmx" {
		t.Errorf("/dev/pts of the plain container after its execs: %q, want only ptmx", ls)
	}
	e.removeAll()
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
	if procs := e.podProcesses(); len(procs) != 0 {
		t.Errorf("census: processes left in pod cgroups: %v", procs)
	}
}
