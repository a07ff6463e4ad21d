package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/attach"
	"github.com/pelagos-containers/pelagos-agent/runtime/runtimetest"
)

// waitOutput waits until what was written to b matches re.
func waitOutput(t *testing.T, what string, b *runtimetest.Buffer, re string) {
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
	out    runtimetest.Buffer
	errOut runtimetest.Buffer
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
	// As in the agent, a spare shim is waiting: its pre-started init has
	// no terminal, so it starts a fresh one.
	e.rt.EnableSpareShim()
	defer e.rt.DisableSpareShim() // before the census too, below
	for ok, _ := e.rt.spareReady(); !ok; ok, _ = e.rt.spareReady() {
		time.Sleep(5 * time.Millisecond)
	}
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
	e.rt.DisableSpareShim()
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
	if errors.Is(err, fs.ErrNotExist) {
		return // exited since it was listed (a command the shell ran)
	}
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

// TestStdinContainer: stdin without a terminal is a pipe the shim holds
// open, so `cat` waits for input with nobody attached; each client's
// input reaches it and a client's end of input ends its session only. With
// stdinOnce the first client's end of input closes the container's stdin
// for good (cat then exits), and the client sees the output to the end.
func TestStdinContainer(t *testing.T) {
	e := newCtrEnv(t, nil)
	cfg := e.config("cat", "/bin/sh", "-c", "cat; echo stdin-closed >&2; exit 4")
	cfg.Stdin = true
	c := e.start(t, cfg)

	a := attachTo(t, e.rt, c.ID, false, true)
	a.send(t, "one\n")
	waitOutput(t, "first client", &a.out, "^one\n$")
	a.in.Close()
	if err := a.wait(t); err != nil {
		t.Errorf("attach ended by its input: %v", err)
	}
	b := attachTo(t, e.rt, c.ID, false, true)
	b.send(t, "two\n")
	waitOutput(t, "second client", &b.out, "^two\n$")
	if got, _ := e.rt.GetContainer(context.Background(), c.ID); got.State != runtime.ContainerRunning {
		t.Fatalf("cat is %s after two sessions, want running (its stdin open)", got.State)
	}
	b.cancel()
	b.wait(t)

	once := e.config("cat-once", "/bin/sh", "-c", "cat; echo stdin-closed >&2; exit 4")
	once.Stdin, once.StdinOnce = true, true
	c2 := e.start(t, once)
	a = attachTo(t, e.rt, c2.ID, false, true)
	a.send(t, "only\n")
	waitOutput(t, "stdinOnce client", &a.out, "^only\n$")
	a.in.Close()
	// The session follows the output to the container's exit.
	if err := a.wait(t); err != nil {
		t.Errorf("stdinOnce attach: %v", err)
	}
	if got := a.errOut.String(); got != "stdin-closed\n" {
		t.Errorf("stderr of the session: %q, want stdin-closed", got)
	}
	if got := e.waitExit(t, c2.ID); got.ExitCode != 4 {
		t.Errorf("stdinOnce container: exit %d, want 4 (cat saw the end of its input)", got.ExitCode)
	}
	// Input for a container without stdin is refused, as is a terminal it
	// does not have.
	plain := e.startSleeper(t, "plain", nil)
	if err := e.rt.Attach(context.Background(), plain.ID, runtime.AttachOptions{Stdin: strings.NewReader("x"), Stdout: io.Discard}); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("input to a container without stdin: %v, want ErrInvalidConfig", err)
	}
	if err := e.rt.Attach(context.Background(), plain.ID, runtime.AttachOptions{TTY: true, Stdout: io.Discard}); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("a terminal of a container without one: %v, want ErrInvalidConfig", err)
	}
	if err := e.rt.Attach(context.Background(), c2.ID, runtime.AttachOptions{Stdout: io.Discard}); !errors.Is(err, runtime.ErrConflict) {
		t.Errorf("attach to an exited container: %v, want ErrConflict", err)
	}
	if err := e.rt.Attach(context.Background(), "nope", runtime.AttachOptions{Stdout: io.Discard}); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("attach to a missing container: %v, want ErrNotFound", err)
	}
	e.check(t)
}

// TestAttachLiveOutput: attaching to a container without a terminal gives
// its live stdout and stderr apart, not what it wrote before.
func TestAttachLiveOutput(t *testing.T) {
	e := newCtrEnv(t, nil)
	c := e.start(t, e.config("talker", "/bin/sh", "-c",
		"echo early; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo late; echo late-err >&2"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		var b strings.Builder
		crilog.Read(c.LogPath, &b, crilog.ReadOptions{})
		if strings.Contains(b.String(), "early") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no early line in the log")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a := attachTo(t, e.rt, c.ID, false, false)
	waitAttached(t, e, c.ID, 1)
	if code, out := e.sh(t, c.ID, "touch /tmp/go"); code != 0 {
		t.Fatalf("touch: %d %s", code, out)
	}
	if err := a.wait(t); err != nil {
		t.Errorf("attach: %v", err)
	}
	if got := a.out.String(); got != "late\n" {
		t.Errorf("stdout of the session: %q, want only the live line", got)
	}
	if got := a.errOut.String(); got != "late-err\n" {
		t.Errorf("stderr of the session: %q", got)
	}
	e.check(t)
}

// waitAttached waits until the container's shim holds n attach sessions:
// sockets beyond its listening one, counted in its descriptor table.
func waitAttached(t *testing.T, e *ctrEnv, id string, n int) {
	t.Helper()
	rec, err := e.rt.containerRecord(id)
	if err != nil {
		t.Fatal(err)
	}
	st, err := rec.State()
	if err != nil {
		t.Fatal(err)
	}
	dir := fmt.Sprintf("/proc/%d/fd", st.Shim.PID)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ents, _ := os.ReadDir(dir)
		socks := 0
		for _, ent := range ents {
			if l, _ := os.Readlink(filepath.Join(dir, ent.Name())); strings.HasPrefix(l, "socket:") {
				socks++
			}
		}
		if socks == n+1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shim %d holds %d sockets, want the listener and %d sessions", st.Shim.PID, socks, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// execTTY is an Exec with a terminal running in the background.
type execTTY struct {
	in     *io.PipeWriter
	out    runtimetest.Buffer
	resize chan runtime.TermSize
	cancel context.CancelFunc
	done   chan struct{}
	code   int
	err    error
}

func startExecTTY(t *testing.T, rt *Runtime, id string, size runtime.TermSize, cmd ...string) *execTTY {
	t.Helper()
	x := &execTTY{resize: make(chan runtime.TermSize, 1), done: make(chan struct{})}
	r, w := io.Pipe()
	x.in = w
	x.resize <- size
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	go func() {
		defer close(x.done)
		x.code, x.err = rt.Exec(ctx, id, runtime.ExecOptions{Cmd: cmd, TTY: true, Stdin: r, Stdout: &x.out, Resize: x.resize, Timeout: time.Minute})
	}()
	t.Cleanup(func() { cancel(); w.Close() })
	return x
}

func (x *execTTY) wait(t *testing.T) (int, error) {
	t.Helper()
	select {
	case <-x.done:
		return x.code, x.err
	case <-time.After(time.Minute):
		t.Fatalf("exec did not end; terminal:\n%q", x.out.String())
		return -1, nil
	}
}

// promptAfterFalse is busybox sh's prompt once it ran `false` (it may
// end with a query of the cursor's position).
const promptAfterFalse = `(?s)false\r\n.*/ # (\x1b\[[0-9]*[A-Za-z])*$`

// TestExecTTY: exec with a terminal gets a pty of the container's devpts
// as its controlling terminal, sized as the client's and following its
// resizes; ^D ends its input; its status comes back; the master is never
// one of the process's descriptors; a missing command is 127 with the
// reason on the terminal.
func TestExecTTY(t *testing.T) {
	e := newCtrEnv(t, nil)
	c := e.startSleeper(t, "target", nil)
	x := startExecTTY(t, e.rt, c.ID, runtime.TermSize{Width: 100, Height: 30}, "/bin/sh")
	x.in.Write([]byte("tty; stty size\n"))
	waitOutput(t, "exec shell", &x.out, `/dev/pts/0\r\n30 100\r\n`)
	x.resize <- runtime.TermSize{Width: 132, Height: 50}
	for i := 0; !strings.Contains(x.out.String(), "50 132\r\n"); i++ {
		if i > 300 {
			t.Fatalf("resize not applied:\n%q", x.out.String())
		}
		x.in.Write([]byte("stty size\n"))
		time.Sleep(10 * time.Millisecond)
	}
	// The exec'd processes hold the slave only: seen from the host, in the
	// container's cgroup.
	procs, err := e.cg.Procs(ctrCgroup(e.sb.ID, c.ID))
	if err != nil || len(procs) < 2 {
		t.Fatalf("processes of the container: %v %v", procs, err)
	}
	for _, pid := range procs {
		noMaster(t, pid)
	}
	// ^D at the start of a line is the end of the shell's input, once the
	// shell reads its terminal again (typed ahead while a command runs,
	// the terminal is in canonical mode and turns it into a NUL for the
	// line editor).
	x.in.Write([]byte("false\n"))
	waitOutput(t, "the prompt after false", &x.out, promptAfterFalse)
	x.in.Write([]byte("\x04"))
	code, err := x.wait(t)
	if err != nil || code != 1 {
		t.Errorf("shell ended by ^D: code %d err %v, want 1 (its last status); terminal:\n%q", code, err, x.out.String())
	}
	x = startExecTTY(t, e.rt, c.ID, runtime.TermSize{}, "/bin/sh", "-c", "cat; exit 5")
	x.in.Write([]byte("typed\n\x04"))
	if code, err := x.wait(t); err != nil || code != 5 {
		t.Errorf("cat; exit 5: code %d err %v", code, err)
	}
	if !strings.Contains(x.out.String(), "typed\r\ntyped\r\n") {
		t.Errorf("terminal: %q, want the echo and cat's copy", x.out.String())
	}
	x = startExecTTY(t, e.rt, c.ID, runtime.TermSize{}, "no-such-command")
	if code, err := x.wait(t); err != nil || code != 127 || !strings.Contains(x.out.String(), "executable file not found") {
		t.Errorf("missing command: code %d err %v terminal %q", code, err, x.out.String())
	}
	// A child that ignores the hangup and keeps the terminal does not hold
	// the exec past its process's exit.
	x = startExecTTY(t, e.rt, c.ID, runtime.TermSize{}, "/bin/sh", "-c", "trap '' HUP; sleep 1001 & echo started; exit 2")
	if code, err := x.wait(t); err != nil || code != 2 || !strings.Contains(x.out.String(), "started") {
		t.Errorf("exec leaving a child on the terminal: code %d err %v terminal %q", code, err, x.out.String())
	}
	// A client that goes kills its command.
	x = startExecTTY(t, e.rt, c.ID, runtime.TermSize{}, "/bin/sh", "-c", "echo waiting; exec sleep 1002")
	waitOutput(t, "exec", &x.out, "waiting")
	x.cancel()
	if _, err := x.wait(t); !errors.Is(err, context.Canceled) {
		t.Errorf("exec whose client went: %v, want context.Canceled", err)
	}
	for _, pid := range must(e.cg.Procs(ctrCgroup(e.sb.ID, c.ID))) {
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(cmd) == "sleep\x001002\x00" {
			t.Errorf("the command of a gone client still runs: pid %d", pid)
		}
	}
	e.check(t)
}

// TestTerminalsUnreachableFromContainers is written as the attacker: a
// root container of another pod, sharing the host's PID namespace (so the
// shims and the agent are in its /proc), tries to read or write the pty
// master a shim holds for a tty container, to list the shim's descriptors,
// to reach the attach socket through the shim's root, and to find the
// socket in its own mount namespace; the victim container looks for the
// socket too. Every attempt must fail; the master is also held by the
// agent during a TTY exec, which the attacker tries as well. (Listing the
// numbers in /proc/PID/fd is a matter of the directory's mode, which
// CAP_DAC_OVERRIDE passes; resolving or opening one needs ptrace access,
// which a container is denied on a non-dumpable shim and on the agent.)
func TestTerminalsUnreachableFromContainers(t *testing.T) {
	e := newCtrEnv(t, nil)
	victimCfg := e.config("victim", "/bin/sh")
	victimCfg.TTY, victimCfg.Stdin = true, true
	victim := e.start(t, victimCfg)
	rec, err := e.rt.containerRecord(victim.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, err := rec.State()
	if err != nil {
		t.Fatal(err)
	}
	shimPID := st.Shim.PID
	socket := filepath.Join(rec.Dir, attach.SocketName)
	if fi, err := os.Stat(socket); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("attach socket %s: %v %v, want a socket, 0600", socket, fi.Mode(), err)
	}
	masterFD := ""
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", shimPID))
	for _, ent := range ents {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", shimPID, ent.Name())); strings.Contains(l, "ptmx") {
			masterFD = ent.Name()
		}
	}
	if masterFD == "" {
		t.Fatalf("the shim %d holds no pty master", shimPID)
	}
	// A TTY exec keeps its master in the agent (this process) meanwhile.
	x := startExecTTY(t, e.rt, victim.ID, runtime.TermSize{}, "/bin/sh")
	x.in.Write([]byte("echo exec-ready\n"))
	waitOutput(t, "exec", &x.out, "exec-ready\r\n")
	agentMaster := ""
	ents, _ = os.ReadDir("/proc/self/fd")
	for _, ent := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + ent.Name()); strings.Contains(l, "ptmx") {
			agentMaster = ent.Name()
		}
	}
	if agentMaster == "" {
		t.Fatal("the agent holds no pty master during a TTY exec")
	}

	sb2, err := e.rt.CreateSandbox(context.Background(), &runtime.SandboxConfig{
		Pod:        runtime.PodKey{Namespace: "default", Name: "attacker-" + e.sb.ID[:8]},
		Namespaces: runtime.NamespaceOptions{PID: runtime.NamespaceNode},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.rt.RemoveSandbox(context.Background(), sb2.ID)
	att := e.config("attacker", "/bin/sleep", "1000")
	att.SandboxID = sb2.ID
	attacker := e.start(t, att)
	self := os.Getpid()
	for _, probe := range []struct{ what, script string }{
		{"see where the shim's descriptor leads", fmt.Sprintf("readlink /proc/%d/fd/%s", shimPID, masterFD)},
		{"read the shim's master", fmt.Sprintf("cat /proc/%d/fd/%s", shimPID, masterFD)},
		{"write the shim's master", fmt.Sprintf("echo 'echo pwned' > /proc/%d/fd/%s", shimPID, masterFD)},
		{"open the shim's master read-write", fmt.Sprintf("exec 3<>/proc/%d/fd/%s", shimPID, masterFD)},
		{"reach the socket through the shim's root", "ls -l /proc/" + fmt.Sprint(shimPID) + "/root" + socket},
		{"find the socket in its own mount namespace", "ls -l " + socket},
		{"see where the agent's descriptor leads", fmt.Sprintf("readlink /proc/%d/fd/%s", self, agentMaster)},
		{"read the agent's exec master", fmt.Sprintf("cat /proc/%d/fd/%s", self, agentMaster)},
	} {
		code, out := e.sh(t, attacker.ID, probe.script)
		if code == 0 {
			t.Errorf("attacker could %s (%s):\n%s", probe.what, probe.script, out)
		} else {
			t.Logf("%s: exit %d: %s", probe.what, code, strings.TrimSpace(out))
		}
	}
	if code, out := e.sh(t, victim.ID, "ls -l "+socket); code == 0 {
		t.Errorf("the victim sees its attach socket at %s:\n%s", socket, out)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root%s", victim.PID, socket)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket in the victim's mount namespace: %v, want none", err)
	}
	// Nothing the attacker tried reached the victim's terminal.
	a := attachTo(t, e.rt, victim.ID, true, true)
	waitSession(t, a)
	a.send(t, "echo tail-$((6*7))\n")
	waitOutput(t, "victim", &a.out, `tail-42\r\n`)
	var log strings.Builder
	crilog.Read(victim.LogPath, &log, crilog.ReadOptions{})
	if strings.Contains(log.String(), "pwned") {
		t.Errorf("the attacker's input reached the victim:\n%s", log.String())
	}
	x.in.Write([]byte("exit\n"))
	x.wait(t)
	if err := e.rt.RemoveSandbox(context.Background(), sb2.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

// TestTTYNonRoot: a workload running as a user owns its terminal, as a
// user who opens a pty does, and reads and writes it after the
// privileges are dropped; an exec as that user gets a terminal of its own.
func TestTTYNonRoot(t *testing.T) {
	e := newCtrEnv(t, nil)
	uid := int64(1000)
	cfg := e.config("user-tty", "/bin/sh", "-c", "tty; stat -c 'owner=%u mode=%a' /dev/pts/0; echo typed-$(head -c 3)")
	cfg.TTY, cfg.Stdin = true, true
	cfg.Security.RunAsUser = &uid
	c := e.start(t, cfg)
	a := attachTo(t, e.rt, c.ID, true, true)
	waitAttached(t, e, c.ID, 1)
	a.send(t, "abc\n")
	if err := a.wait(t); err != nil {
		t.Fatalf("attach: %v", err)
	}
	got := e.waitExit(t, c.ID)
	if got.ExitCode != 0 {
		t.Errorf("exit %d", got.ExitCode)
	}
	var log strings.Builder
	crilog.Read(c.LogPath, &log, crilog.ReadOptions{})
	for _, want := range []string{"/dev/pts/0", "owner=1000 mode=620", "typed-abc"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("no %q in the log:\n%s", want, log.String())
		}
	}
	sleeper := e.startSleeper(t, "user-sleeper", func(c *runtime.ContainerConfig) { c.Security.RunAsUser = &uid; c.TTY = true })
	x := startExecTTY(t, e.rt, sleeper.ID, runtime.TermSize{}, "/bin/sh", "-c", "tty; id -u; echo hi > /dev/pts/0 && echo wrote-main")
	if code, err := x.wait(t); err != nil || code != 0 {
		t.Errorf("exec: %d %v: %q", code, err, x.out.String())
	}
	if out := x.out.String(); !strings.Contains(out, "/dev/pts/1\r\n1000\r\nwrote-main") {
		t.Errorf("exec as the user: %q, want its own /dev/pts/1, uid 1000, and the main process's terminal (the user's too) writable", out)
	}
	e.check(t)
}
