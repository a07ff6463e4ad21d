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
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/helperbin"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nsinit"
)

// Exec implements runtime.Runtime. The process joins every namespace of
// the container's main process (UTS, network, IPC and PID on the thread
// that forks it, the mount namespace itself before it execs) and its
// cgroup, and gets the container's user, capabilities, no_new_privs and
// seccomp filter. The namespaces are reached through a pidfd checked
// against the recorded start time, so a reused PID is never joined.
func (r *Runtime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return -1, fmt.Errorf("exec in container %s: empty command: %w", id, runtime.ErrInvalidConfig)
	}
	if opts.TTY {
		return -1, fmt.Errorf("exec in container %s: a TTY is not supported: %w", id, runtime.ErrInvalidConfig)
	}
	rec, err := r.containerRecord(id)
	if err != nil {
		return -1, fmt.Errorf("exec in container: %w", err)
	}
	st, err := rec.State()
	if err != nil || !st.Init.Alive() {
		return -1, fmt.Errorf("exec in container %s: not running", id)
	}
	if _, err := rec.Exit(); err == nil {
		return -1, fmt.Errorf("exec in container %s: not running", id)
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
		err = ip.Configure(spec, func(pid int) error { return cg.Join(rec.CgroupRel, pid) })
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
		code := -1
		if p != nil {
			// A reported failure means the init has exited already: the
			// kill is for the other cases, and the status tells which.
			p.Kill()
			if ps, werr := p.Wait(); werr == nil {
				code = ps.ExitCode()
			}
		}
		wg.Wait()
		if code == 126 || code == 127 {
			// The command could not be found or run: its status, with the
			// reason on stderr, as a shell gives them.
			if opts.Stderr != nil {
				fmt.Fprintf(opts.Stderr, "%v\n", err)
			}
			return code, nil
		}
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
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
		// Children of the exec'd process may hold the pipes: do not wait
		// for them past the deadline.
		outR.SetReadDeadline(time.Now())
		errR.SetReadDeadline(time.Now())
		wg.Wait()
		return -1, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	}
	wg.Wait()
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
