package streaming

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Target is what a request acts on.
type Target struct {
	ContainerID string
	SandboxID   string
	// TTY and Stdin are the container's own settings (spec tty and stdin).
	// Attach follows them, as kubelet does: whether the main process has a
	// terminal was decided when it started.
	TTY   bool
	Stdin bool
}

// Resolver maps a request's pod and container query parameter (empty: the
// pod's default container; always empty for port-forward) to its target.
// It refuses what cannot be streamed, so that the client gets an HTTP
// error before any upgrade: an error wrapping runtime.ErrNotFound answers
// 404, runtime.ErrInvalidConfig or runtime.ErrConflict (say, a container
// that is not running) 400, anything else 500. Its message is shown to the
// user as is.
type Resolver func(ctx context.Context, pod runtime.PodKey, container string) (Target, error)

// Streams says which streams a remote command client asked for.
type Streams struct {
	Stdin, Stdout, Stderr, TTY bool
}

// podFromPath finds the pod in /…/namespaces/{namespace}/pods/{name}/{sub}.
func podFromPath(path string) (runtime.PodKey, error) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := len(parts) - 5; i >= 0; i-- {
		if parts[i] == "namespaces" && parts[i+2] == "pods" && parts[i+1] != "" && parts[i+3] != "" {
			return runtime.PodKey{Namespace: parts[i+1], Name: parts[i+3]}, nil
		}
	}
	return runtime.PodKey{}, fmt.Errorf("path %s does not name a pod (/api/v1/namespaces/NAMESPACE/pods/NAME/...)", path)
}

// boolParam reads a boolean query parameter as the API server does.
func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("query parameter %q: %q is not a boolean", name, v)
	}
	return b, nil
}

// streamsFromQuery reads the stdin, stdout, stderr and tty parameters of
// an exec or attach request. With a terminal there is no separate stderr.
func streamsFromQuery(q url.Values) (Streams, error) {
	var s Streams
	for _, p := range []struct {
		name string
		v    *bool
	}{{"stdin", &s.Stdin}, {"stdout", &s.Stdout}, {"stderr", &s.Stderr}, {"tty", &s.TTY}} {
		b, err := boolParam(q, p.name)
		if err != nil {
			return s, err
		}
		*p.v = b
	}
	if s.TTY {
		s.Stderr = false
	}
	if !s.Stdin && !s.Stdout && !s.Stderr {
		return s, fmt.Errorf("you must specify at least one of stdin, stdout, stderr")
	}
	return s, nil
}

// Query is the query of an exec (cmd set) or attach request for container
// ("" for the pod's default) with the given streams.
func Query(container string, cmd []string, s Streams) url.Values {
	q := url.Values{}
	if container != "" {
		q.Set("container", container)
	}
	for _, arg := range cmd {
		q.Add("command", arg)
	}
	set := func(name string, on bool) {
		if on {
			q.Set(name, "true")
		}
	}
	set("stdin", s.Stdin)
	set("stdout", s.Stdout)
	set("stderr", s.Stderr && !s.TTY)
	set("tty", s.TTY)
	return q
}
