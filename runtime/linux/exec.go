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

// ExecOutputLimit bounds what Exec copies from each of stdout and stderr;
// the rest is read and discarded, so a chatty probe cannot exhaust the
// agent's memory nor block on a full pipe.
const ExecOutputLimit = 16 << 20

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
		io.Copy(&limitWriter{w: w, n: ExecOutputLimit}, rd)
	}
	wg.Add(2)
	go drain(outR, opts.Stdout)
	go drain(errR, opts.Stderr)
	if stdinW != nil {
		go func() { io.Copy(stdinW, opts.Stdin); stdinW.Close() }()
	}
	if err != nil {
		if p != nil {
			p.Kill()
			p.Wait()
		}
		wg.Wait()
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

// limitWriter passes on the first n bytes and swallows the rest.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(b []byte) (int, error) {
	total := len(b)
	if l.n <= 0 {
		return total, nil
	}
	if int64(len(b)) > l.n {
		b = b[:l.n]
	}
	n, err := l.w.Write(b)
	l.n -= int64(n)
	if err != nil {
		return n, err
	}
	return total, nil
}
