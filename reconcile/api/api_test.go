package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

func desired(name string) *reconcile.DesiredPod {
	return &reconcile.DesiredPod{Key: runtime.PodKey{Namespace: "default", Name: name}, Source: "/m/" + name + ".yaml",
		SandboxHash: "s", Restart: reconcile.RestartAlways, Grace: time.Second,
		Containers: []reconcile.DesiredContainer{{Name: "app", Hash: "h", PullPolicy: runtime.PullIfNotPresent,
			Config: runtime.ContainerConfig{Image: "busybox:1"}}}}
}

// logBackend points container logs at real files, which the fake runtime
// does not write.
type logBackend struct {
	*reconcile.Reconciler
	logDir string
}

func (b logBackend) Observe(ctx context.Context, key runtime.PodKey) (reconcile.ObservedPod, error) {
	obs, err := b.Reconciler.Observe(ctx, key)
	for _, c := range obs.Containers {
		c.LogPath = filepath.Join(b.logDir, c.ID+".log")
	}
	return obs, err
}

func startAPI(t *testing.T) (*Client, *fake.Runtime, *reconcile.Reconciler, string) {
	t.Helper()
	f := fake.New()
	rec := reconcile.New(reconcile.Config{Runtime: f, Images: f, Log: zerolog.Nop(), Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Run(ctx) }()
	logDir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	kube := kubeapi.New(kubeapi.Config{Backend: logBackend{rec, logDir}, Runtime: f, NodeName: "node", Log: zerolog.Nop()})
	kube.SetStreams(kube.RuntimeStreams())
	kubeDone := make(chan struct{})
	go func() { kube.Run(ctx); close(kubeDone) }()
	srv := &Server{Kube: kube, Backend: rec, Runtime: f, Log: zerolog.Nop()}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-recDone; <-srvDone; <-kubeDone })
	return NewClient(sock), f, rec, logDir
}

func waitRunning(t *testing.T, c *Client, name string) *reconcile.Pod {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p, err := c.Pod(context.Background(), "default", name)
		if err == nil && p.Status.Phase == reconcile.PhaseRunning && len(p.Status.ContainerStatuses) > 0 &&
			p.Status.ContainerStatuses[0].State.Running != nil {
			return p
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pod %s never ran", name)
	return nil
}

func TestSocketIsRootOnly(t *testing.T) {
	_, _, _, _ = startAPI(t)
	sock := filepath.Join(t.TempDir(), "x.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", st.Mode().Perm())
	}
}

func TestPodsEventsAndErrors(t *testing.T) {
	c, _, rec, _ := startAPI(t)
	ctx := context.Background()
	rec.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{desired("web"), desired("db")}})
	waitRunning(t, c, "web")
	waitRunning(t, c, "db")
	list, err := c.Pods(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if list.Kind != "PodList" || list.APIVersion != "v1" || len(list.Items) != 2 || list.Items[0].Metadata.Name != "db" ||
		list.Items[0].Kind != "Pod" || list.Items[0].Status.PodIP == "" {
		t.Fatalf("list: %+v", list)
	}
	if _, err := c.Pod(ctx, "default", "nope"); err == nil || !strings.Contains(err.Error(), `"nope" not found`) {
		t.Errorf("missing pod: %v", err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Errorf("readyz: %v", err)
	}
	evs, err := c.Events(ctx, "default", "web")
	if err != nil || len(evs) == 0 || evs[0].Reason != "Started" {
		t.Errorf("events: %v %+v", err, evs)
	}
	// Watch: a new event arrives on the stream.
	wctx, cancel := context.WithCancel(ctx)
	got := make(chan reconcile.Event, 100)
	go func() {
		_ = c.WatchEvents(wctx, func(ev reconcile.Event) error { got <- ev; return nil })
	}()
	defer cancel()
	rec.Events().Record(reconcile.EventWarning, "TestReason", reconcile.ObjectRef{Kind: "Pod", Namespace: "default", Name: "web"}, "hello")
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-got:
			if ev.Reason == "TestReason" {
				return
			}
		case <-deadline:
			t.Fatal("watched event never arrived")
		}
	}
}

func TestLogs(t *testing.T) {
	c, _, rec, logDir := startAPI(t)
	rec.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{desired("web")}})
	p := waitRunning(t, c, "web")
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "pelagos://")
	lines := "2026-01-01T00:00:00.000000001Z stdout F one\n2026-01-01T00:00:01Z stderr F two\n2026-01-01T00:00:02Z stdout P thr\n2026-01-01T00:00:02Z stdout F ee\n"
	if err := os.WriteFile(filepath.Join(logDir, id+".log"), []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Logs(context.Background(), "default", "web", LogOptions{TailLines: -1}, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "one\ntwo\nthree\n" {
		t.Errorf("logs: %q", buf.String())
	}
	buf.Reset()
	if err := c.Logs(context.Background(), "default", "web", LogOptions{TailLines: 1, Timestamps: true}, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "2026-01-01T00:00:02Z three\n" {
		t.Errorf("tail 1 with timestamps: %q", buf.String())
	}
	err := c.Logs(context.Background(), "default", "web", LogOptions{TailLines: -1, Previous: true}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "previous terminated container") {
		t.Errorf("--previous without one: %v", err)
	}
}

func TestExec(t *testing.T) {
	c, f, rec, _ := startAPI(t)
	f.OnExec(func(id string, opts runtime.ExecOptions) int {
		if opts.TTY {
			line, _ := bufio.NewReader(opts.Stdin).ReadString('\n')
			fmt.Fprintf(opts.Stdout, "tty got %q\n", line)
			return 0
		}
		in, _ := io.ReadAll(opts.Stdin)
		opts.Stdout.Write([]byte("out:" + strings.Join(opts.Cmd, " ") + ":" + string(in)))
		opts.Stderr.Write([]byte("err"))
		return 7
	})
	d := desired("web")
	d.Containers[0].Config.TTY = true // exec's terminal is the client's choice, not the container's
	rec.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{d}})
	p := waitRunning(t, c, "web")
	var out, errb bytes.Buffer
	code, err := c.Exec(context.Background(), "default", "web", ExecOptions{Cmd: []string{"cat", "-"},
		Stdin: strings.NewReader("input"), Stdout: &out, Stderr: &errb})
	if err != nil || code != 7 || out.String() != "out:cat -:input" || errb.String() != "err" {
		t.Errorf("exec: code=%d err=%v out=%q stderr=%q", code, err, out.String(), errb.String())
	}

	out.Reset()
	resize := make(chan runtime.TermSize, 1)
	resize <- runtime.TermSize{Width: 70, Height: 20}
	code, err = c.Exec(context.Background(), "default", "web", ExecOptions{Cmd: []string{"sh"}, TTY: true,
		Stdin: strings.NewReader("hi\r"), Stdout: &out, Resize: resize})
	if err != nil || code != 0 || out.String() != "hi\r\ntty got \"hi\\n\"\r\n" {
		t.Errorf("exec with a terminal: code=%d err=%v out=%q", code, err, out.String())
	}
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "pelagos://")
	deadline := time.Now().Add(10 * time.Second)
	for s, _ := f.TermSize(id); s != (runtime.TermSize{Width: 70, Height: 20}); s, _ = f.TermSize(id) {
		if time.Now().After(deadline) {
			t.Fatalf("the terminal size never reached the runtime: %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}

	if _, err := c.Exec(context.Background(), "default", "nope", ExecOptions{Cmd: []string{"true"}}); err == nil || !strings.Contains(err.Error(), `pods "nope" not found`) {
		t.Errorf("exec in a missing pod: %v", err)
	}
	if _, err := c.Exec(context.Background(), "default", "web", ExecOptions{Container: "side", Cmd: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "container side is not valid for pod web") {
		t.Errorf("exec in a missing container: %v", err)
	}
}

func TestAgentNotRunning(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "none.sock"))
	_, err := c.Pods(context.Background(), "")
	if !errors.Is(err, ErrAgentNotRunning) {
		t.Errorf("want ErrAgentNotRunning, got %v", err)
	}
}

// TestServeTLSRequiresClientCertificates: the TCP listener refuses to
// start unless every client must show a verified certificate.
func TestServeTLSRequiresClientCertificates(t *testing.T) {
	srv := &Server{Log: zerolog.Nop()}
	for _, auth := range []tls.ClientAuthType{tls.NoClientCert, tls.RequestClientCert, tls.RequireAnyClientCert, tls.VerifyClientCertIfGiven} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = srv.ServeTLS(context.Background(), l, &tls.Config{ClientAuth: auth})
		l.Close()
		if err == nil {
			t.Errorf("ServeTLS with %v served", auth)
		}
	}
}
