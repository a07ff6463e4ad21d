package kubeapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog/follow"
)

// DefaultContainerAnnotation names the container kubectl (and this API)
// picks when a request names none.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// containerNames lists a pod's app and init containers: from its spec, or
// for a pod whose manifest is gone, from what the runtime still has.
func containerNames(pod *corev1.Pod, obs reconcile.ObservedPod) (apps, inits []string) {
	for _, c := range pod.Spec.Containers {
		apps = append(apps, c.Name)
	}
	for _, c := range pod.Spec.InitContainers {
		inits = append(inits, c.Name)
	}
	if len(apps) > 0 {
		return apps, inits
	}
	for _, c := range obs.Containers {
		list := &apps
		if c.Annotations[reconcile.AnnotationInit] != "" {
			list = &inits
		}
		if !slices.Contains(*list, c.Name) {
			*list = append(*list, c.Name)
		}
	}
	return apps, inits
}

// resolveContainerName picks the container a request means, as the API
// server validates it: the one named, else the only one (or the pod's
// default-container annotation); anything else is a 400 that lists the
// choices.
func resolveContainerName(pod *corev1.Pod, obs reconcile.ObservedPod, name string) (string, bool, error) {
	apps, inits := containerNames(pod, obs)
	if name == "" {
		if d := pod.Annotations[DefaultContainerAnnotation]; slices.Contains(apps, d) {
			return d, false, nil
		}
		if len(apps) == 1 {
			return apps[0], false, nil
		}
		msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", pod.Name, apps)
		if len(inits) > 0 {
			msg += fmt.Sprintf(" or one of the init containers: %v", inits)
		}
		return "", false, errBadRequest("%s", msg)
	}
	switch {
	case slices.Contains(apps, name):
		return name, false, nil
	case slices.Contains(inits, name):
		return name, true, nil
	}
	return "", false, errBadRequest("container %s is not valid for pod %s", name, pod.Name)
}

// findContainer returns the runtime container of a pod's newest sandbox
// with the given name: the current attempt, or with previous the one
// before it.
func findContainer(obs reconcile.ObservedPod, name string, previous bool) *runtime.Container {
	var box *runtime.Sandbox
	for _, sb := range obs.Sandboxes {
		if box == nil || sb.CreatedAt.After(box.CreatedAt) {
			box = sb
		}
	}
	var list []*runtime.Container
	for _, c := range obs.Containers {
		if c.Name == name && (box == nil || c.SandboxID == box.ID) && c.State != runtime.ContainerCreated {
			list = append(list, c)
		}
	}
	slices.SortFunc(list, func(a, b *runtime.Container) int { return b.Attempt - a.Attempt })
	idx := 0
	if previous {
		idx = 1
	}
	if len(list) <= idx {
		return nil
	}
	return list[idx]
}

// logOptions are pods/log's query parameters, validated as the API server
// does.
type logOptions struct {
	container        string
	follow, previous bool
	timestamps       bool
	tail             int64 // < 0: all
	since            time.Time
	limit            int64 // < 0: no limit
}

func parseLogOptions(r *http.Request, now time.Time) (logOptions, error) {
	q := r.URL.Query()
	o := logOptions{container: q.Get("container"), follow: isTrue(q.Get("follow")), previous: isTrue(q.Get("previous")),
		timestamps: isTrue(q.Get("timestamps")), tail: -1, limit: -1}
	if n, set, err := queryInt(r, "tailLines"); err != nil {
		return o, err
	} else if set {
		if n < 0 {
			return o, errBadRequest("tailLines: must be greater than or equal to 0")
		}
		o.tail = n
	}
	if n, set, err := queryInt(r, "limitBytes"); err != nil {
		return o, err
	} else if set {
		if n < 1 {
			return o, errBadRequest("limitBytes: must be greater than 0")
		}
		o.limit = n
	}
	secs, secsSet, err := queryInt(r, "sinceSeconds")
	if err != nil {
		return o, err
	}
	st := q.Get("sinceTime")
	switch {
	case secsSet && st != "":
		return o, errBadRequest("at most one of sinceTime or sinceSeconds may be specified")
	case secsSet:
		if secs < 1 {
			return o, errBadRequest("sinceSeconds: must be greater than 0")
		}
		o.since = now.Add(-time.Duration(secs) * time.Second)
	case st != "":
		t, err := time.Parse(time.RFC3339, st)
		if err != nil {
			return o, errBadRequest("sinceTime: %q is not an RFC 3339 time", st)
		}
		o.since = t
	}
	return o, nil
}

func (s *Server) serveLog(w http.ResponseWriter, r *http.Request, ri requestInfo) error {
	opts, err := parseLogOptions(r, s.now())
	if err != nil {
		return err
	}
	key := podKey(ri.namespace, ri.name)
	s.pods.refresh(key)
	o, ok := s.pods.coll.get(ri.namespace, ri.name)
	if !ok {
		return errNotFound("pods", ri.name)
	}
	pod := o.(*corev1.Pod)
	obs, err := s.cfg.Backend.Observe(r.Context(), key)
	if err != nil {
		return errInternal("observe pod %s: %v", key, err)
	}
	name, _, err := resolveContainerName(pod, obs, opts.container)
	if err != nil {
		return err
	}
	c := findContainer(obs, name, opts.previous)
	if c == nil {
		if opts.previous {
			return errBadRequest("previous terminated container %q in pod %q not found", name, pod.Name)
		}
		reason := "ContainerCreating"
		for _, cs := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
			if cs.Name == name && cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
				reason = cs.State.Waiting.Reason
			}
		}
		return errBadRequest("container %q in pod %q is waiting to start: %s", name, pod.Name, reason)
	}
	if c.LogPath == "" {
		return errBadRequest("container %q in pod %q has no log", name, pod.Name)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	var out io.Writer = w
	if f, ok := w.(http.Flusher); ok {
		out = flushWriter{w: w, f: f}
	}
	filter := &logFilter{w: out, since: opts.since, timestamps: opts.timestamps, limit: opts.limit}
	read := crilog.ReadOptions{Timestamps: true}
	if opts.tail >= 0 {
		count := &logFilter{w: io.Discard, since: opts.since, limit: -1, countOnly: true}
		if err := crilog.Read(c.LogPath, count, read); err != nil && !errors.Is(err, os.ErrNotExist) {
			return errInternal("read log of %s/%s: %v", key, name, err)
		}
		filter.skip = max(0, count.lines-opts.tail)
	}
	if !opts.follow || c.State != runtime.ContainerRunning {
		if err := crilog.Read(c.LogPath, filter, read); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errLimit) {
			s.cfg.Log.Warn().Err(err).Str("pod", key.String()).Str("container", name).Msg("read log")
		}
		filter.flush()
		return nil
	}
	// Follow until the container exits: its state is looked at only while
	// someone follows.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				cur, err := s.cfg.Runtime.GetContainer(ctx, c.ID)
				if err != nil || cur.State != runtime.ContainerRunning {
					return
				}
			}
		}
	}()
	if err := follow.Follow(ctx, c.LogPath, filter, read, done); err != nil && !errors.Is(err, errLimit) {
		s.cfg.Log.Warn().Err(err).Str("pod", key.String()).Str("container", name).Msg("follow log")
	}
	filter.flush()
	return nil
}

type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (fw flushWriter) Write(b []byte) (int, error) {
	n, err := fw.w.Write(b)
	fw.f.Flush()
	return n, err
}

var errLimit = errors.New("limitBytes reached")

// logFilter takes the log printed with timestamps, whole lines at a time,
// and applies sinceTime, the tail (skip the first lines), the timestamps
// option and limitBytes.
type logFilter struct {
	w          io.Writer
	since      time.Time
	timestamps bool
	skip       int64
	limit      int64 // bytes left; < 0: none
	countOnly  bool
	lines      int64
	buf        []byte
}

func (f *logFilter) Write(p []byte) (int, error) {
	n := len(p)
	f.buf = append(f.buf, p...)
	for {
		i := bytes.IndexByte(f.buf, '\n')
		if i < 0 {
			return n, nil
		}
		line := f.buf[:i+1]
		if err := f.line(line); err != nil {
			return n, err
		}
		f.buf = f.buf[i+1:]
	}
}

// flush writes a last line that has no newline yet.
func (f *logFilter) flush() {
	if len(f.buf) > 0 {
		_ = f.line(f.buf)
		f.buf = nil
	}
}

func (f *logFilter) line(line []byte) error {
	ts, rest, _ := bytes.Cut(line, []byte{' '})
	if !f.since.IsZero() {
		if t, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil && t.Before(f.since) {
			return nil
		}
	}
	f.lines++
	if f.countOnly {
		return nil
	}
	if f.skip > 0 {
		f.skip--
		return nil
	}
	out := rest
	if f.timestamps {
		out = line
	}
	if f.limit >= 0 {
		if int64(len(out)) >= f.limit {
			_, _ = f.w.Write(out[:f.limit])
			f.limit = 0
			return errLimit
		}
		f.limit -= int64(len(out))
	}
	_, err := f.w.Write(out)
	return err
}
