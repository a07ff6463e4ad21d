package nsinit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"syscall"
)

// Proc is a started init waiting for its spec.
type Proc struct {
	Process *os.Process
	specW   *os.File
	errR    *os.File
	// Stdout and Stderr are the read ends of its output, and Stdin the
	// write end of its input, when the caller made pipes for them.
	Stdout, Stderr, Stdin *os.File
	// Console is the caller's end of the socket the init sends its
	// terminal's master on (ConsoleFD), when the caller made one.
	Console *os.File
}

// Spawn starts the init (the binary at exe) with stdio as its 0, 1, 2 and
// extra from MountFD on, on a new OS thread that first runs enter (joining
// namespaces; nil for none), cloned with cloneFlags. The thread is never
// unlocked: it dies with its goroutine, so no other goroutine ever runs in
// the namespaces it joined.
func Spawn(exe string, enter func() error, cloneFlags uintptr, stdio []*os.File, extra ...*os.File) (*Proc, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer specR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		specW.Close()
		return nil, err
	}
	defer errW.Close()
	type started struct {
		proc *os.Process
		err  error
	}
	ch := make(chan started, 1)
	go func() {
		goruntime.LockOSThread()
		// Deliberately no UnlockOSThread: see above.
		if enter != nil {
			if err := enter(); err != nil {
				ch <- started{err: err}
				return
			}
		}
		files := append(append(append([]*os.File{}, stdio...), specR, errW), extra...)
		p, err := os.StartProcess(exe, []string{Name}, &os.ProcAttr{
			Dir:   "/",
			Env:   Env,
			Files: files,
			Sys:   &syscall.SysProcAttr{Cloneflags: cloneFlags},
		})
		ch <- started{proc: p, err: err}
	}()
	s := <-ch
	if s.err != nil {
		specW.Close()
		errR.Close()
		return nil, fmt.Errorf("start container init: %w", s.err)
	}
	return &Proc{Process: s.proc, specW: specW, errR: errR}, nil
}

// Configure runs before (which puts the init in its cgroups), sends the
// spec and waits for the execve (EOF on the error pipe) or the failure the
// init reports.
func (p *Proc) Configure(spec *Spec, before func(pid int) error) error {
	defer p.errR.Close()
	defer p.specW.Close()
	if before != nil {
		if err := before(p.Process.Pid); err != nil {
			return err
		}
	}
	if err := json.NewEncoder(p.specW).Encode(spec); err != nil {
		return fmt.Errorf("send spec to container init: %w", err)
	}
	p.specW.Close()
	msg, _ := io.ReadAll(p.errR)
	if len(msg) > 0 {
		return fmt.Errorf("container init: %s", msg)
	}
	return nil
}

// Discard ends an init that will not be used.
func (p *Proc) Discard() {
	if p == nil {
		return
	}
	p.Process.Kill()
	p.Process.Wait()
	for _, f := range []*os.File{p.specW, p.errR, p.Stdout, p.Stderr, p.Stdin, p.Console} {
		if f != nil {
			f.Close()
		}
	}
}
