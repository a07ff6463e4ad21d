package streaming_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/runtimetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/streaming"
)

// env is a fake runtime behind the streaming handlers, mounted on the
// paths of the Kubernetes API with just enough of the rest (discovery, a
// Pod GET) for kubectl.
type env struct {
	t    *testing.T
	f    *fake.Runtime
	srv  *httptest.Server
	home string

	mu       sync.Mutex
	pods     map[runtime.PodKey]*testPod
	upgrades []string // "exec websocket v5.channel.k8s.io", "portforward SPDY/3.1 portforward.k8s.io", ...
}

type testPod struct {
	sandbox    *runtime.Sandbox
	containers []*runtime.Container
	configs    []runtime.ContainerConfig
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, f: fake.New(), home: t.TempDir(), pods: map[runtime.PodKey]*testPod{}}
	e.f.AddImage("busybox:1", runtime.ImageConfig{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	e.f.OnExec(func(id string, opts runtime.ExecOptions) int {
		if len(opts.Cmd) > 0 && opts.Cmd[0] == "hang" { // runs until the test ends, whatever its streams do
			<-release
			return 0
		}
		return program(id, opts)
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []any{map[string]string{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}}})
	})
	mux.HandleFunc("GET /apis", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{}})
	})
	mux.HandleFunc("GET /api/v1", func(w http.ResponseWriter, _ *http.Request) {
		res := func(name, kind string, verbs ...string) map[string]any {
			return map[string]any{"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": verbs}
		}
		pods := res("pods", "Pod", "get", "list")
		pods["singularName"], pods["shortNames"] = "pod", []string{"po"}
		writeJSON(w, map[string]any{"kind": "APIResourceList", "groupVersion": "v1", "resources": []any{pods,
			res("pods/exec", "PodExecOptions", "create", "get"), res("pods/attach", "PodAttachOptions", "create", "get"),
			res("pods/portforward", "PodPortForwardOptions", "create", "get")}})
	})
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{name}", e.getPod)
	for _, h := range []struct {
		sub     string
		handler http.Handler
	}{
		{"exec", streaming.ExecHandler(e.f, e.resolve)},
		{"attach", streaming.AttachHandler(e.f, e.resolve)},
		{"portforward", streaming.PortForwardHandler(e.f, e.resolve)},
	} {
		h := h
		// What each session used: a SPDY server names the protocol it chose
		// in the response header; a WebSocket one answers on the hijacked
		// connection, so its client's offer is recorded.
		record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.handler.ServeHTTP(w, r)
			proto := w.Header().Get("X-Stream-Protocol-Version")
			if proto == "" {
				proto = r.Header.Get("Sec-Websocket-Protocol")
			}
			e.mu.Lock()
			e.upgrades = append(e.upgrades, strings.Join([]string{h.sub, r.Header.Get("Upgrade"), proto}, " "))
			e.mu.Unlock()
		})
		for _, method := range []string{"GET", "POST"} {
			mux.Handle(method+" /api/v1/namespaces/{ns}/pods/{name}/"+h.sub, record)
		}
	}
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// addPod starts a pod with one container per config in the fake.
func (e *env) addPod(name string, cfgs ...runtime.ContainerConfig) *testPod {
	e.t.Helper()
	ctx := context.Background()
	key := runtime.PodKey{Namespace: "default", Name: name}
	sb, err := e.f.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: key})
	if err != nil {
		e.t.Fatal(err)
	}
	p := &testPod{sandbox: sb, configs: cfgs}
	for _, cfg := range cfgs {
		cfg.SandboxID, cfg.Image = sb.ID, "busybox:1"
		c, err := e.f.StartContainer(ctx, &cfg)
		if err != nil {
			e.t.Fatal(err)
		}
		p.containers = append(p.containers, c)
	}
	e.mu.Lock()
	e.pods[key] = p
	e.mu.Unlock()
	return p
}

func (e *env) pod(key runtime.PodKey) (*testPod, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pods[key]
	return p, ok
}

// resolve is the Resolver the API would give: the pod's container by name
// (the first by default), refused unless running.
func (e *env) resolve(ctx context.Context, key runtime.PodKey, container string) (streaming.Target, error) {
	p, ok := e.pod(key)
	if !ok {
		return streaming.Target{}, fmt.Errorf("pods %q not found: %w", key.Name, runtime.ErrNotFound)
	}
	for i, c := range p.containers {
		if container == "" || c.Name == container {
			cur, err := e.f.GetContainer(ctx, c.ID)
			if err != nil {
				return streaming.Target{}, err
			}
			if cur.State != runtime.ContainerRunning {
				return streaming.Target{}, fmt.Errorf("container %s is not running: %w", c.Name, runtime.ErrConflict)
			}
			return streaming.Target{ContainerID: c.ID, SandboxID: p.sandbox.ID, TTY: p.configs[i].TTY, Stdin: p.configs[i].Stdin}, nil
		}
	}
	if container == "" {
		return streaming.Target{SandboxID: p.sandbox.ID}, nil
	}
	return streaming.Target{}, fmt.Errorf("container %s is not valid for pod %s: %w", container, key.Name, runtime.ErrNotFound)
}

func (e *env) getPod(w http.ResponseWriter, r *http.Request) {
	key := runtime.PodKey{Namespace: r.PathValue("ns"), Name: r.PathValue("name")}
	p, ok := e.pod(key)
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		writeJSON(w, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
			"code": 404, "message": fmt.Sprintf("pods %q not found", key.Name)})
		return
	}
	var specs, statuses []any
	for i, c := range p.containers {
		specs = append(specs, map[string]any{"name": c.Name, "image": c.Image, "tty": p.configs[i].TTY, "stdin": p.configs[i].Stdin})
		statuses = append(statuses, map[string]any{"name": c.Name, "ready": true, "restartCount": 0, "image": c.Image,
			"imageID": "", "containerID": "pelagos://" + c.ID, "state": map[string]any{"running": map[string]any{"startedAt": "2026-01-01T00:00:00Z"}}})
	}
	writeJSON(w, map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": key.Name, "namespace": key.Namespace, "uid": "uid-" + p.sandbox.ID},
		"spec":     map[string]any{"containers": specs, "restartPolicy": "Always"},
		"status":   map[string]any{"phase": "Running", "podIP": p.sandbox.IP, "containerStatuses": statuses}})
}

// takeUpgrades returns and forgets the upgrade requests seen so far.
func (e *env) takeUpgrades() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.upgrades
	e.upgrades = nil
	return u
}

// program plays the processes exec starts in the fake's containers.
func program(id string, opts runtime.ExecOptions) int {
	arg := func(i int) string {
		if i < len(opts.Cmd) {
			return opts.Cmd[i]
		}
		return ""
	}
	switch arg(0) {
	case "echo":
		fmt.Fprintln(opts.Stdout, strings.Join(opts.Cmd[1:], " "))
	case "warn":
		fmt.Fprintln(opts.Stderr, strings.Join(opts.Cmd[1:], " "))
	case "exit":
		code, _ := strconv.Atoi(arg(1))
		return code
	case "cat":
		if opts.Stdin != nil {
			io.Copy(opts.Stdout, opts.Stdin)
		}
	case "blob": // blob N: N MiB of a known pattern
		n, _ := strconv.Atoi(arg(1))
		chunk := blobChunk()
		for range n * (1 << 20) / len(chunk) {
			if _, err := opts.Stdout.Write(chunk); err != nil {
				return 141 // SIGPIPE, as a shell would see it
			}
		}
	case "repl": // answers each line; exits 5 at the end of its input
		buf := make([]byte, 1024)
		var line []byte
		for {
			n, err := opts.Stdin.Read(buf)
			for _, b := range buf[:n] {
				if b == '\n' {
					fmt.Fprintf(opts.Stdout, "you said: %s\n", line)
					line = line[:0]
					continue
				}
				line = append(line, b)
			}
			if err != nil {
				return 5
			}
		}
	case "wait": // reads its input until it ends
		if opts.Stdin != nil {
			io.Copy(io.Discard, opts.Stdin)
		}
	default:
		fmt.Fprintf(opts.Stderr, "exec: %q: executable file not found in $PATH\n", arg(0))
		return 127
	}
	return 0
}

func blobChunk() []byte {
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = byte('a' + i%26)
	}
	return chunk
}

// blobSum is the SHA-256 of `blob mib`'s output.
func blobSum(mib int) [32]byte {
	h := sha256.New()
	chunk := blobChunk()
	for range mib * (1 << 20) / len(chunk) {
		h.Write(chunk)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// kubectl is the real client, as a user runs it, against the test server.
type kubectl struct {
	path, server, home string
	websockets         bool
}

func findKubectl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		p = "/usr/bin/kubectl"
	}
	_, err = os.Stat(p)
	linuxtest.Require(t, err == nil, "kubectl (v1.32 at /usr/bin/kubectl): "+fmt.Sprint(err))
	return p
}

func (e *env) kubectl(path string, websockets bool) kubectl {
	return kubectl{path: path, server: e.srv.URL, home: e.home, websockets: websockets}
}

func (k kubectl) command(ctx context.Context, args ...string) *exec.Cmd {
	kubeconfig := filepath.Join(k.home, "kubeconfig")
	_ = os.WriteFile(kubeconfig, nil, 0o600)
	global := []string{"--server", k.server, "--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(k.home, "cache"), "-n", "default"}
	cmd := exec.CommandContext(ctx, k.path, append(global, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "KUBECONFIG", "HOME", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY":
			continue
		}
		env = append(env, kv)
	}
	ws := strconv.FormatBool(k.websockets)
	cmd.Env = append(env, "HOME="+k.home, "NO_PROXY=127.0.0.1", "KUBECTL_REMOTE_COMMAND_WEBSOCKETS="+ws, "KUBECTL_PORT_FORWARD_WEBSOCKETS="+ws)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs kubectl to its end with stdin and returns its output and exit
// code. The deadline only bounds a hang.
func (k kubectl) run(t *testing.T, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := k.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("kubectl %v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

// start starts kubectl with its output on a pipe and its errors
// collected; the deadline only bounds a hang.
func (k kubectl) start(t *testing.T, args ...string) (*exec.Cmd, io.Reader, *runtimetest.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	cmd := k.command(ctx, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errb := &runtimetest.Buffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout, errb
}

// eventually polls cond; the deadline only bounds a broken test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
