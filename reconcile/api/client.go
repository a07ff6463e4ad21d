package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/streaming"
)

// ErrAgentNotRunning is returned when nothing listens on the socket.
var ErrAgentNotRunning = errors.New("the agent is not running")

// Client talks to a running agent over its unix socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	c := &Client{Socket: socket}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
	}}
	return c
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (no agent listens on %s; start it with `pelagos-agent run`)", ErrAgentNotRunning, c.Socket)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("cannot open the agent's socket %s: permission denied (the API is root-only)", c.Socket)
		}
		return nil, fmt.Errorf("connect to the agent at %s: %w", c.Socket, err)
	}
	return conn, nil
}

func (c *Client) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	u := "http://agent" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var st Status
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return errors.New(st.Message)
	}
	return fmt.Errorf("agent answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	resp, err := c.get(ctx, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	// A pod's spec is decoded into `any`; without UseNumber every number
	// would pass through float64, and an int64 such as 9223372036854775807
	// would come out as 9223372036854776000.
	dec.UseNumber()
	return dec.Decode(v)
}

// podFromKube reads a served Pod into the reconciler's shape, which
// follows core/v1's field names; the agent's own status block comes back
// from its annotations.
func podFromKube(raw []byte) (reconcile.Pod, error) {
	var p reconcile.Pod
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("decode pod: %w", err)
	}
	p.Status.Pelagos = kubeapi.AgentStatus(p.Metadata.Annotations)
	for k := range p.Metadata.Annotations {
		if kubeapi.IsAgentAnnotation(k) {
			delete(p.Metadata.Annotations, k)
		}
	}
	if len(p.Metadata.Annotations) == 0 {
		p.Metadata.Annotations = nil
	}
	return p, nil
}

func podsPath(namespace string) string {
	if namespace == "" {
		return "/api/v1/pods"
	}
	return "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods"
}

// RawPods returns the served Pods (core/v1 JSON); namespace "" means all.
func (c *Client) RawPods(ctx context.Context, namespace string) ([]json.RawMessage, error) {
	var l struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := c.getJSON(ctx, podsPath(namespace), nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// RawPod returns one served Pod (core/v1 JSON).
func (c *Client) RawPod(ctx context.Context, namespace, name string) (json.RawMessage, error) {
	var raw json.RawMessage
	return raw, c.getJSON(ctx, podPath(namespace, name), nil, &raw)
}

// KubePods returns the served Pods as core/v1 objects; namespace "" means
// all.
func (c *Client) KubePods(ctx context.Context, namespace string) ([]corev1.Pod, error) {
	var l corev1.PodList
	if err := c.getJSON(ctx, podsPath(namespace), nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// KubePod returns one served Pod as a core/v1 object.
func (c *Client) KubePod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var p corev1.Pod
	if err := c.getJSON(ctx, podPath(namespace, name), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// KubeEvents returns the served core/v1 Events, optionally about one pod,
// in the order the server lists them.
func (c *Client) KubeEvents(ctx context.Context, namespace, name string) ([]corev1.Event, error) {
	path, q := eventsQuery(namespace, name)
	var l corev1.EventList
	if err := c.getJSON(ctx, path, q, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Namespaces returns the names of the served namespaces.
func (c *Client) Namespaces(ctx context.Context) ([]string, error) {
	var l corev1.NamespaceList
	if err := c.getJSON(ctx, "/api/v1/namespaces", nil, &l); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(l.Items))
	for _, ns := range l.Items {
		names = append(names, ns.Name)
	}
	return names, nil
}

// Pods lists pods; namespace "" means all.
func (c *Client) Pods(ctx context.Context, namespace string) (*reconcile.PodList, error) {
	items, err := c.RawPods(ctx, namespace)
	if err != nil {
		return nil, err
	}
	l := &reconcile.PodList{APIVersion: "v1", Kind: "PodList", Items: []reconcile.Pod{}}
	for _, raw := range items {
		p, err := podFromKube(raw)
		if err != nil {
			return nil, err
		}
		l.Items = append(l.Items, p)
	}
	return l, nil
}

// Pod gets one pod.
func (c *Client) Pod(ctx context.Context, namespace, name string) (*reconcile.Pod, error) {
	raw, err := c.RawPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	p, err := podFromKube(raw)
	return &p, err
}

func podPath(ns, name string) string {
	return "/api/v1/namespaces/" + url.PathEscape(ns) + "/pods/" + url.PathEscape(name)
}

// Workloads lists the Deployments, StatefulSets, DaemonSets and Jobs with
// their status, each as the JSON the agent serves (apps/v1 or batch/v1
// shaped).
func (c *Client) Workloads(ctx context.Context) ([]json.RawMessage, error) {
	var l struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := c.getJSON(ctx, "/pelagos/v1/workloads", nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// eventsQuery lists (or watches) events, optionally about one pod.
func eventsQuery(namespace, name string) (string, url.Values) {
	path := "/api/v1/events"
	q := url.Values{}
	if namespace != "" {
		path = "/api/v1/namespaces/" + url.PathEscape(namespace) + "/events"
	}
	if name != "" {
		q.Set("fieldSelector", "involvedObject.kind=Pod,involvedObject.name="+name)
	}
	return path, q
}

// Events lists the kept events, optionally about one pod, oldest first.
func (c *Client) Events(ctx context.Context, namespace, name string) ([]reconcile.Event, error) {
	path, q := eventsQuery(namespace, name)
	var l struct {
		Items []reconcile.Event `json:"items"`
	}
	if err := c.getJSON(ctx, path, q, &l); err != nil {
		return nil, err
	}
	sort.SliceStable(l.Items, func(i, j int) bool { return l.Items[i].FirstTimestamp.Before(l.Items[j].FirstTimestamp) })
	return l.Items, nil
}

// WatchEvents calls fn for the kept events and then each new or repeated
// one until ctx ends or fn returns an error.
func (c *Client) WatchEvents(ctx context.Context, fn func(reconcile.Event) error) error {
	return c.WatchNamespaceEvents(ctx, "", fn)
}

// WatchNamespaceEvents is WatchEvents for the events of one namespace
// ("" for all). When the agent ends the watch (its timeout, or the watch
// fell behind), it is resumed from the last resource version seen, as
// client-go's RetryWatcher does; when that version is too old (410 Gone),
// from now, after a list, so events in between may be missed but none is
// delivered twice.
func (c *Client) WatchNamespaceEvents(ctx context.Context, namespace string, fn func(reconcile.Event) error) error {
	path, q := eventsQuery(namespace, "")
	q.Set("watch", "true")
	for {
		began := time.Now()
		rv, err := c.watchEventsOnce(ctx, path, q, fn)
		if err != nil || ctx.Err() != nil {
			return err
		}
		if time.Since(began) < time.Second {
			// Ended at once: do not spin against the agent.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		if rv == "" {
			// Gone: resume from the current version.
			var l struct {
				Metadata struct {
					ResourceVersion string `json:"resourceVersion"`
				} `json:"metadata"`
			}
			if err := c.getJSON(ctx, path, nil, &l); err != nil {
				return err
			}
			rv = l.Metadata.ResourceVersion
		}
		q.Set("resourceVersion", rv)
	}
}

// watchEventsOnce follows one watch until the agent ends it, and returns
// the last resource version seen ("" after a 410 Gone).
func (c *Client) watchEventsOnce(ctx context.Context, path string, q url.Values, fn func(reconcile.Event) error) (string, error) {
	last := q.Get("resourceVersion")
	resp, err := c.get(ctx, path, q)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		// One decoding serves the event, its version, and a Status's code.
		var ev struct {
			Type   string `json:"type"`
			Object struct {
				reconcile.Event
				Code     int `json:"code"`
				Metadata struct {
					ResourceVersion string `json:"resourceVersion"`
				} `json:"metadata"`
			} `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return last, nil
			}
			return "", fmt.Errorf("event stream: %w", err)
		}
		if rv := ev.Object.Metadata.ResourceVersion; rv != "" {
			last = rv
		}
		switch ev.Type {
		case "ERROR":
			if ev.Object.Code == http.StatusGone {
				return "", nil
			}
			return "", fmt.Errorf("event stream: status %d: %s", ev.Object.Code, ev.Object.Message)
		case "ADDED", "MODIFIED":
			if err := fn(ev.Object.Event); err != nil {
				return "", err
			}
		}
	}
}

// FileErrors returns manifest problems that belong to no pod, and the
// directory's own error.
func (c *Client) FileErrors(ctx context.Context) (dir string, files []reconcile.FileError, err error) {
	var out struct {
		Directory string `json:"directory"`
		Files     []struct {
			File, Field, Pod, Message string
		} `json:"files"`
	}
	if err := c.getJSON(ctx, "/pelagos/v1/errors", nil, &out); err != nil {
		return "", nil, err
	}
	for _, f := range out.Files {
		files = append(files, reconcile.FileError{File: f.File, Field: f.Field, Message: f.Message})
	}
	return out.Directory, files, nil
}

// LogOptions select what Logs prints.
type LogOptions struct {
	Container  string
	Follow     bool
	TailLines  int // < 0: all
	Previous   bool
	Timestamps bool
}

// Logs copies a container's log to w.
func (c *Client) Logs(ctx context.Context, namespace, name string, opts LogOptions, w io.Writer) error {
	q := url.Values{}
	if opts.Container != "" {
		q.Set("container", opts.Container)
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.TailLines >= 0 {
		q.Set("tailLines", strconv.Itoa(opts.TailLines))
	}
	if opts.Previous {
		q.Set("previous", "true")
	}
	if opts.Timestamps {
		q.Set("timestamps", "true")
	}
	resp, err := c.get(ctx, podPath(namespace, name)+"/log", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Ready asks /readyz.
func (c *Client) Ready(ctx context.Context) error {
	resp, err := c.get(ctx, "/readyz", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// ExecOptions describe a command to run in a container.
type ExecOptions struct {
	Container string
	Cmd       []string
	TTY       bool
	Stdin     io.Reader // nil: no input
	Stdout    io.Writer
	Stderr    io.Writer // unused with TTY
	// Resize, with TTY, sends the terminal's size; the first is the
	// initial one.
	Resize <-chan runtime.TermSize
}

// Exec runs a command in a pod's container over the Kubernetes streaming
// protocol (v5.channel.k8s.io, as kubectl) and returns its exit code.
func (c *Client) Exec(ctx context.Context, namespace, name string, opts ExecOptions) (int, error) {
	want := streaming.Streams{Stdin: opts.Stdin != nil, Stdout: true, Stderr: !opts.TTY, TTY: opts.TTY}
	u := "ws://agent" + podPath(namespace, name) + "/exec?" + streaming.Query(opts.Container, opts.Cmd, want).Encode()
	code, err := streaming.Stream(ctx, c.dial, u, streaming.ClientOptions{
		Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr, TTY: opts.TTY, Resize: opts.Resize})
	if err != nil {
		return -1, fmt.Errorf("exec in %s/%s: %w", namespace, name, err)
	}
	return code, nil
}
