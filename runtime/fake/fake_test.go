package fake_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/runtime/runtimetest"
)

func TestConformance(t *testing.T) {
	runtimetest.Run(t, runtimetest.Harness{NewEnv: func(t *testing.T) *runtimetest.Env {
		f := fake.New()
		return &runtimetest.Env{
			Open: func() runtime.Runtime { return f },
			HalfCreate: func(t *testing.T, rt runtime.Runtime, cfg *runtime.SandboxConfig) {
				f.Inject(fake.Failure{Op: fake.OpCreateSandbox, Times: 1, HalfDone: true, Err: errors.New("injected crash")})
				if _, err := rt.CreateSandbox(context.Background(), cfg); err == nil {
					t.Fatal("half-create: injected failure did not fire")
				}
			},
			KillPause: func(t *testing.T, rt runtime.Runtime, id string) {
				if err := f.KillSandbox(id); err != nil {
					t.Fatal(err)
				}
			},
			Census: func(t *testing.T) {
				if l, _ := f.ListSandboxes(context.Background()); len(l) != 0 {
					t.Errorf("census: %d sandboxes left", len(l))
				}
				if l, _ := f.ListContainers(context.Background(), runtime.ContainerFilter{}); len(l) != 0 {
					t.Errorf("census: %d containers left", len(l))
				}
			},
			Images:    f,
			TestImage: "example.test/busybox:1",
			ServeHTTP: func(t *testing.T, _ runtime.Runtime, sb *runtime.Sandbox, port int32) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }))
				t.Cleanup(srv.Close)
				f.ServePort(sb.ID, port, strings.TrimPrefix(srv.URL, "http://"))
			},
		}
	}})
}

func TestInjectedFailures(t *testing.T) {
	ctx := context.Background()
	f := fake.New()
	boom := errors.New("boom")
	f.Inject(fake.Failure{Op: fake.OpCreateSandbox, Match: func(arg string) bool { return arg == "default/bad" }, Times: 2, Err: boom})
	for range 2 {
		if _, err := f.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "bad"}}); !errors.Is(err, boom) {
			t.Fatalf("matching create: err = %v; want boom", err)
		}
	}
	if _, err := f.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "good"}}); err != nil {
		t.Fatalf("non-matching create failed: %v", err)
	}
	if _, err := f.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "bad"}}); err != nil {
		t.Fatalf("third create should succeed once Times is used up: %v", err)
	}
	if got := f.Calls(fake.OpCreateSandbox); got != 4 {
		t.Errorf("Calls(CreateSandbox) = %d; want 4", got)
	}
	f.FailNext(fake.OpListSandboxes, boom)
	if _, err := f.ListSandboxes(ctx); !errors.Is(err, boom) {
		t.Errorf("FailNext: err = %v", err)
	}
	if _, err := f.ListSandboxes(ctx); err != nil {
		t.Errorf("FailNext fired twice: %v", err)
	}
}

func TestContainerLifecycle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := fake.New()
	events, _ := f.WatchExits(ctx)
	sb, err := f.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "ns", Name: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &runtime.ContainerConfig{SandboxID: sb.ID, Name: "app", Image: "img:1"}
	if _, err := f.StartContainer(ctx, cfg); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("start without the image: err = %v; want ErrNotFound", err)
	}
	if _, err := f.EnsureImage(ctx, "img:1", runtime.PullOptions{Policy: runtime.PullIfNotPresent}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.EnsureImage(ctx, "img:1", runtime.PullOptions{Policy: runtime.PullIfNotPresent}); err != nil || f.Pulls("img:1") != 1 {
		t.Fatalf("IfNotPresent pulled again: pulls=%d err=%v", f.Pulls("img:1"), err)
	}
	c, err := f.StartContainer(ctx, cfg)
	if err != nil || c.State != runtime.ContainerRunning || c.Pod != sb.Pod {
		t.Fatalf("start = %+v, %v", c, err)
	}
	if _, err := f.StartContainer(ctx, cfg); !errors.Is(err, runtime.ErrAlreadyExists) {
		t.Errorf("same name and attempt twice: err = %v; want ErrAlreadyExists", err)
	}
	if err := f.Exit(c.ID, 3); err != nil {
		t.Fatal(err)
	}
	ev := <-events
	if ev.ContainerID != c.ID || ev.SandboxID != sb.ID {
		t.Errorf("exit event = %+v", ev)
	}
	got, _ := f.GetContainer(ctx, c.ID)
	if got.State != runtime.ContainerExited || got.ExitCode != 3 || got.Reason != runtime.ReasonError || !got.FinishedAt.After(got.StartedAt) {
		t.Errorf("after exit = %+v", got)
	}
	if _, err := f.Exec(ctx, c.ID, runtime.ExecOptions{}); !errors.Is(err, runtime.ErrConflict) {
		t.Errorf("exec in an exited container: err = %v; want ErrConflict", err)
	}

	f.OnStart(func(cfg *runtime.ContainerConfig) (bool, int) { return cfg.Name == "job", 0 })
	job, err := f.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: sb.ID, Name: "job", Image: "img:1"})
	if err != nil || job.State != runtime.ContainerExited || job.Reason != runtime.ReasonCompleted {
		t.Errorf("exit-at-once container = %+v, %v", job, err)
	}
	c2, _ := f.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: sb.ID, Name: "app", Attempt: 1, Image: "img:1"})
	if err := f.StopContainer(ctx, c2.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.GetContainer(ctx, c2.ID); got.ExitCode != fake.StopExitCode {
		t.Errorf("stopped container exit code = %d", got.ExitCode)
	}
	if err := f.RemoveImage(ctx, "img:1", false); !errors.Is(err, runtime.ErrConflict) {
		t.Errorf("remove an image in use: err = %v; want ErrConflict", err)
	}
	list, _ := f.ListContainers(ctx, runtime.ContainerFilter{SandboxID: sb.ID})
	if len(list) != 3 {
		t.Errorf("listed %d containers; want 3", len(list))
	}
	if err := f.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := f.ListContainers(ctx, runtime.ContainerFilter{}); len(list) != 0 {
		t.Errorf("containers outlived their sandbox: %d", len(list))
	}
	if err := f.RemoveContainer(ctx, c.ID); err != nil {
		t.Errorf("removing a gone container: %v", err)
	}
}

// A corrupt record is found by the next read that meets it: set aside,
// reported once through TakeProblems, and gone from the runtime's view
// with everything it named.
func TestCorruptRecordSetAside(t *testing.T) {
	ctx := context.Background()
	f := fake.New()
	f.AddImage("img", runtime.ImageConfig{})
	pod := runtime.PodKey{Namespace: "default", Name: "web"}
	sb, err := f.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: sb.ID, Name: "app", Image: "img"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := f.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "other"}})
	if err := f.CorruptRecord("sandbox", sb.ID, "unexpected end of JSON input", true); err != nil {
		t.Fatal(err)
	}
	if err := f.CorruptRecord("sandbox", other.ID, "garbage", false); err != nil {
		t.Fatal(err)
	}
	if p := f.TakeProblems(); len(p) != 0 {
		t.Fatalf("problems reported before any read: %+v", p)
	}
	boxes, err := f.ListSandboxes(ctx)
	if err != nil || len(boxes) != 0 {
		t.Fatalf("listing after corruption: %v %v; want both set aside", boxes, err)
	}
	if _, err := f.GetContainer(ctx, c.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("container of a set-aside sandbox: %v; want not found", err)
	}
	probs := f.TakeProblems()
	if len(probs) != 2 {
		t.Fatalf("problems %+v; want 2", probs)
	}
	for _, p := range probs {
		switch p.ID {
		case sb.ID:
			if p.Kind != "sandbox" || p.Pod == nil || *p.Pod != pod || p.Path == "" || p.Reason != "unexpected end of JSON input" {
				t.Errorf("problem %+v", p)
			}
		case other.ID:
			if p.Pod != nil {
				t.Errorf("pod named though unknown: %+v", p)
			}
		default:
			t.Errorf("unexpected problem %+v", p)
		}
	}
	if p := f.TakeProblems(); len(p) != 0 {
		t.Errorf("problems reported twice: %+v", p)
	}
}

func TestReadsCountObjectsHandedOut(t *testing.T) {
	ctx := context.Background()
	f := fake.New()
	for _, n := range []string{"a", "b", "c"} {
		if _, err := f.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	before := f.Reads()
	boxes, _ := f.ListSandboxes(ctx)
	_, _ = f.GetSandbox(ctx, boxes[0].ID)
	_, _ = f.GetSandbox(ctx, "missing")
	if got := f.Reads() - before; got != 4 {
		t.Errorf("reads %d; want 3 listed + 1 got", got)
	}
}
