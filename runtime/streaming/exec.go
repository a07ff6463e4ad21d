package streaming

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// ExecHandler serves pods/exec (GET for WebSocket, POST for SPDY) at
// /api/v1/namespaces/{namespace}/pods/{name}/exec with the query of a
// PodExecOptions: command (repeated), container, stdin, stdout, stderr,
// tty.
func ExecHandler(rt runtime.Runtime, resolve Resolver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cmd := r.URL.Query()["command"]
		if len(cmd) == 0 {
			refuse(w, http.StatusBadRequest, "BadRequest", "exec: you must specify at least one command for the container")
			return
		}
		if t, want, ok := remoteCommand(w, r, resolve, "exec"); ok {
			ServeExec(w, r, rt, t.ContainerID, cmd, want)
		}
	})
}

// remoteCommand reads what exec and attach requests share, the pod, the
// streams and the container, and answers the request itself when it
// cannot be served.
func remoteCommand(w http.ResponseWriter, r *http.Request, resolve Resolver, op string) (Target, Streams, bool) {
	pod, err := podFromPath(r.URL.Path)
	if err != nil {
		refuse(w, http.StatusBadRequest, "BadRequest", "%v", err)
		return Target{}, Streams{}, false
	}
	q := r.URL.Query()
	want, err := streamsFromQuery(q)
	if err != nil {
		refuse(w, http.StatusBadRequest, "BadRequest", "%s in pod %s: %v", op, pod, err)
		return Target{}, Streams{}, false
	}
	t, err := resolve(r.Context(), pod, q.Get("container"))
	if err == nil && t.ContainerID == "" {
		err = fmt.Errorf("pod %s has no container for %s: %w", pod, op, runtime.ErrNotFound)
	}
	if err != nil {
		refuseErr(w, err)
		return Target{}, Streams{}, false
	}
	return t, want, true
}

// ServeExec upgrades r and runs cmd in the container with the streams
// want, ending the session with the command's exit status. A client that
// goes away ends the command (the runtime kills it). It is the part of
// ExecHandler a caller that already knows the container uses (the CRI's
// streaming server).
func ServeExec(w http.ResponseWriter, r *http.Request, rt runtime.Runtime, containerID string, cmd []string, want Streams) {
	ctx, s, ok := upgrade(w, r, want)
	if !ok {
		return
	}
	defer s.close()
	opts := runtime.ExecOptions{Cmd: cmd, TTY: want.TTY, Stdin: s.stdin, Stdout: s.stdout, Resize: s.sizes(want.TTY)}
	if !want.TTY {
		opts.Stderr = s.stderr
	}
	code, err := rt.Exec(ctx, containerID, opts)
	_ = s.writeStatus(exitStatus(code, err))
}

// AttachHandler serves pods/attach at
// /api/v1/namespaces/{namespace}/pods/{name}/attach with the query of a
// PodAttachOptions: container, stdin, stdout, stderr, tty.
func AttachHandler(rt runtime.Runtime, resolve Resolver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t, want, ok := remoteCommand(w, r, resolve, "attach"); ok {
			ServeAttach(w, r, rt, t, want)
		}
	})
}

// ServeAttach upgrades r and attaches the client to the container's main
// process until the container exits or the client goes. The terminal is
// the container's (t.TTY) whatever the client asked, and the client's
// input reaches the process only if it was started with stdin (t.Stdin);
// otherwise it is read and dropped.
func ServeAttach(w http.ResponseWriter, r *http.Request, rt runtime.Runtime, t Target, want Streams) {
	a, ok := rt.(runtime.Attacher)
	if !ok {
		refuse(w, http.StatusNotImplemented, "NotImplemented", "attach to container %s: the runtime cannot attach", t.ContainerID)
		return
	}
	ctx, s, ok := upgrade(w, r, want)
	if !ok {
		return
	}
	defer s.close()
	opts := runtime.AttachOptions{TTY: t.TTY, Stdout: s.stdout, Resize: s.sizes(t.TTY)}
	if !t.TTY {
		opts.Stderr = s.stderr
	}
	if s.stdin != nil {
		if t.Stdin {
			opts.Stdin = s.stdin
		} else {
			go io.Copy(io.Discard, s.stdin)
		}
	}
	err := a.Attach(ctx, t.ContainerID, opts)
	if errors.Is(err, ctx.Err()) && ctx.Err() != nil {
		return // the client went away: nobody to tell
	}
	st := &Status{Status: StatusSuccess}
	if err != nil {
		st = internalError(fmt.Errorf("error attaching to container: %w", err))
	}
	_ = s.writeStatus(st)
}
