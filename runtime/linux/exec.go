package linux

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/console"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/helperbin"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nsinit"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
)

// ttyDrain bounds how long a terminal's last output is waited for once
// the exec'd process exited: a background child that kept the terminal
// (a shell's `sleep 100 &`) must not hold the session open.
const ttyDrain = 2 * time.Second

// initialSizeWait bounds the wait for a terminal's first size before the
// process starts: kubectl sends it as the session opens, so a program that
// reads its size at once (stty size, top) sees the client's window.
const initialSizeWait = 50 * time.Millisecond

// runningState returns the start record of a container whose workload
// runs, or an error wrapping runtime.ErrConflict.
func runningState(rec *record.Container) (*record.State, error) {
	st, err := rec.State()
	if err != nil || !st.Init.Alive() {
		return nil, fmt.Errorf("not running: %w", runtime.ErrConflict)
	}
	if _, err := rec.Exit(); err == nil {
		return nil, fmt.Errorf("not running: %w", runtime.ErrConflict)
	}
	return st, nil
}

// Exec implements runtime.Runtime. The process joins every namespace of
// the container's main process (UTS, network, IPC and PID on the thread
// that forks it, the mount namespace itself before it execs) and its
// cgroup, and gets the container's user, capabilities, no_new_privs and
// seccomp filter. The namespaces are reached through a pidfd checked
// against the recorded start time, so a reused PID is never joined. With
// TTY the init makes a pty of the container's devpts its controlling
// terminal and sends the master back; Exec relays it and applies resizes.
func (r *Runtime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return -1, fmt.Errorf("exec in container %s: empty command: %w", id, runtime.ErrInvalidConfig)
	}
	rec, err := r.containerRecord(id)
	if err != nil {
		return -1, fmt.Errorf("exec in container: %w", err)
	}
	st, err := runningState(rec)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	cg, err := r.cgroupManager(rec.CgroupParent)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	proc := rec.Process
	proc.Args = opts.Cmd
	extra := make([]runtime.EnvVar, 0, len(opts.Env))
	extra = append(extra, opts.Env...)
	envVars := make([]runtime.EnvVar, 0, len(proc.Env))
	for _, kv := range proc.Env {
		k, v, _ := strings.Cut(kv, "=")
		envVars = append(envVars, runtime.EnvVar{Name: k, Value: v})
	}
	proc.Env = mergeEnv(nil, append(envVars, extra...), "", "")
	prog, err := rec.Seccomp()
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	spec := &nsinit.Spec{Exec: true, Process: proc, Seccomp: prog}
	exe, err := helperbin.Path(helperbin.Helper)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	pidfd, err := st.Init.OpenFile()
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	defer pidfd.Close()
	// The thread that forks the exec init joins the PID namespace (which
	// only children enter) and the others with it, in one setns through
	// the pidfd; the init joins the mount namespace itself.
	enter := func() error {
		err := unix.Setns(int(pidfd.Fd()), unix.CLONE_NEWUTS|unix.CLONE_NEWNET|unix.CLONE_NEWIPC|unix.CLONE_NEWPID)
		return os.NewSyscallError("setns", err)
	}
	join := func(pid int) error { return cg.Join(rec.CgroupRel, pid) }
	if opts.TTY {
		return r.execTTY(ctx, id, opts, exe, enter, join, spec, pidfd)
	}

	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return -1, err
	}
	defer stdin.Close()
	var stdinW *os.File
	if opts.Stdin != nil {
		var rd *os.File
		if rd, stdinW, err = os.Pipe(); err != nil {
			return -1, err
		}
		stdin.Close()
		stdin = rd
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return -1, err
	}
	var p *os.Process
	ip, err := nsinit.Spawn(exe, enter, 0, []*os.File{stdin, outW, errW}, pidfd)
	if err == nil {
		p = ip.Process
		err = ip.Configure(spec, join)
		if err != nil {
			p.Kill()
		}
	}
	outW.Close()
	errW.Close()
	stdin.Close()
	var wg sync.WaitGroup
	drain := func(rd *os.File, w io.Writer) {
		defer wg.Done()
		defer rd.Close()
		if w == nil {
			w = io.Discard
		}
		io.Copy(w, rd)
	}
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout != nil && sameWriter(stdout, stderr) {
		// One writer for both streams (a caller collecting all output):
		// one write at a time, as os/exec does.
		w := &lockedWriter{w: stdout}
		stdout, stderr = w, w
	}
	wg.Add(2)
	go drain(outR, stdout)
	go drain(errR, stderr)
	if stdinW != nil {
		go func() { io.Copy(stdinW, opts.Stdin); stdinW.Close() }()
	}
	if err != nil {
		return startFailure(id, p, err, wg.Wait, opts.Stderr, "\n")
	}
	return waitExec(ctx, id, p, opts.Timeout, func(killed bool) {
		if killed {
			// Children of the exec'd process may hold the pipes: do not
			// wait for them past the deadline.
			outR.SetReadDeadline(time.Now())
			errR.SetReadDeadline(time.Now())
		}
		wg.Wait()
	})
}

// execTTY runs the exec init with a terminal: it gets only the console
// socket (its stdio becomes the pty it makes in the container), and the
// master it sends back is relayed to the caller's streams.
func (r *Runtime) execTTY(ctx context.Context, id string, opts runtime.ExecOptions, exe string, enter func() error,
	join func(int) error, spec *nsinit.Spec, pidfd *os.File) (int, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return -1, err
	}
	defer devnull.Close()
	sock, child, err := console.Pair()
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	defer sock.Close()
	spec.Console = &nsinit.Console{}
	ip, err := nsinit.Spawn(exe, enter, 0, []*os.File{devnull, devnull, devnull}, pidfd, child)
	child.Close()
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	p := ip.Process
	err = ip.Configure(spec, func(pid int) error {
		spec.Console.Size = initialSize(opts.Resize)
		return join(pid)
	})
	var master *os.File
	if err == nil {
		// Sent before the execve that Configure saw succeed.
		if master, err = console.Receive(sock); err != nil {
			err = fmt.Errorf("terminal: %w", err)
		}
	}
	if err != nil {
		// The terminal is all the output there is: the reason goes there.
		return startFailure(id, p, err, func() {}, opts.Stdout, "\r\n")
	}
	defer master.Close()
	done := make(chan struct{})
	defer close(done)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w := opts.Stdout
		if w == nil {
			w = io.Discard
		}
		// Ends with EIO once every holder of the terminal has closed it.
		io.Copy(w, master)
	}()
	if opts.Stdin != nil {
		// A terminal has no end of input: the client's ^D is a character
		// the line discipline turns into one. The copy ends when the
		// master closes.
		go io.Copy(master, opts.Stdin)
	}
	go forwardSizes(opts.Resize, done, func(size runtime.TermSize) error { return console.Resize(master, size) })
	return waitExec(ctx, id, p, opts.Timeout, func(killed bool) {
		grace := ttyDrain
		if killed {
			grace = 0
		}
		master.SetReadDeadline(time.Now().Add(grace))
		wg.Wait()
	})
}

// initialSize takes the terminal's first size when the client sent it
// already or sends it within initialSizeWait; zero otherwise.
func initialSize(resize <-chan runtime.TermSize) runtime.TermSize {
	if resize == nil {
		return runtime.TermSize{}
	}
	t := time.NewTimer(initialSizeWait)
	defer t.Stop()
	select {
	case s := <-resize:
		return s
	case <-t.C:
		return runtime.TermSize{}
	}
}

// startFailure reports an exec init that failed before its command ran. A
// reported failure means the init has exited already: the kill is for the
// other cases, and the status tells which. Once drain has waited for its
// output, a command that could not be found or run gets a shell's status
// (127, 126) with the reason on w.
func startFailure(id string, p *os.Process, err error, drain func(), w io.Writer, eol string) (int, error) {
	code := -1
	if p != nil {
		p.Kill()
		if ps, werr := p.Wait(); werr == nil {
			code = ps.ExitCode()
		}
	}
	drain()
	if code == 126 || code == 127 {
		if w != nil {
			fmt.Fprintf(w, "%v%s", err, eol)
		}
		return code, nil
	}
	return -1, fmt.Errorf("exec in container %s: %w", id, err)
}

// waitExec waits for the exec'd process, or kills it when ctx ends or the
// timeout passes; drain then waits for its output (killed: only for what
// is there already), and the process's status is returned as a shell
// gives it.
func waitExec(ctx context.Context, id string, p *os.Process, timeout time.Duration, drain func(killed bool)) (int, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	done := make(chan struct{})
	var ps *os.ProcessState
	var werr error
	go func() { ps, werr = p.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		p.Signal(syscall.SIGKILL)
		<-done
		drain(true)
		return -1, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	}
	drain(false)
	if werr != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, werr)
	}
	ws := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// sameWriter reports whether a and b are the same writer; writers of
// types that cannot be compared are taken as different.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() { _ = recover() }()
	return a == b
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
