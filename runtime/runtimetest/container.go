package runtimetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

func init() { groups = append(groups, containerCases) }

// RunContainers runs only the container cases, for a harness whose
// sandbox cases already run elsewhere.
func RunContainers(t *testing.T, h Harness) { containerCases(t, h) }

// containerCases run only for implementations whose Env offers images:
// containers cannot exist without one.
func containerCases(t *testing.T, h Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness, env *Env)
	}{
		{"ContainerStartGetList", testContainerStartGetList},
		{"ContainerStartIdempotent", testContainerStartIdempotent},
		{"ContainerStopRemoveIdempotent", testContainerStopRemoveIdempotent},
		{"ContainerNotFoundAndInvalid", testContainerNotFoundAndInvalid},
		{"ContainerListAfterRestart", testContainerListAfterRestart},
		{"ContainerGoesWithSandbox", testContainerGoesWithSandbox},
		{"ContainerExitWatch", testContainerExitWatch},
		{"PortForward", testPortForward},
		{"ContainerCallerPaths", testContainerCallerPaths},
		{"ContainerImageMount", testContainerImageMount},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := h.NewEnv(t)
			if env.Images == nil {
				// Without an image source there is nothing to run; such an
				// environment only claims the sandbox half of the contract.
				return
			}
			c.fn(t, h, env)
			if env.Census != nil {
				env.Census(t)
			}
		})
	}
}

// containerSandbox makes a sandbox and ensures the test image.
func containerSandbox(t *testing.T, env *Env, rt runtime.Runtime, name string) *runtime.Sandbox {
	t.Helper()
	if _, err := env.Images.EnsureImage(context.Background(), env.TestImage, runtime.PullOptions{Policy: runtime.PullIfNotPresent}); err != nil {
		t.Fatalf("EnsureImage(%s): %v", env.TestImage, err)
	}
	return mustCreate(t, rt, sandboxConfig(name))
}

func containerConfig(env *Env, sb *runtime.Sandbox, name string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		SandboxID:   sb.ID,
		Name:        name,
		Image:       env.TestImage,
		Command:     []string{"/bin/sleep", "1000"},
		Labels:      map[string]string{"app": name},
		Annotations: map[string]string{runtime.AnnotationContainerHash: "v1-" + name},
	}
}

func mustStart(t *testing.T, rt runtime.Runtime, cfg *runtime.ContainerConfig) *runtime.Container {
	t.Helper()
	c, err := rt.StartContainer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("StartContainer(%s): %v", cfg.Name, err)
	}
	return c
}

func testContainerStartGetList(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	sb := containerSandbox(t, env, rt, "ctr-list")
	other := mustCreate(t, rt, sandboxConfig("ctr-other"))
	c := mustStart(t, rt, containerConfig(env, sb, "app"))
	mustStart(t, rt, containerConfig(env, other, "side"))
	if c.ID == "" || c.State != runtime.ContainerRunning || c.PID <= 0 || c.SandboxID != sb.ID || c.Pod != sb.Pod {
		t.Fatalf("started container = %+v; want running with a PID in %s", c, sb.ID)
	}
	if c.Hash() != "v1-app" || c.Labels["app"] != "app" || c.Image != env.TestImage || c.Name != "app" {
		t.Errorf("labels/annotations/image not kept: %+v", c)
	}
	if c.CreatedAt.IsZero() || c.StartedAt.IsZero() || c.LogPath == "" {
		t.Errorf("times or log path missing: %+v", c)
	}
	got, err := rt.GetContainer(ctx, c.ID)
	if err != nil || got.ID != c.ID || got.State != runtime.ContainerRunning || got.PID != c.PID {
		t.Errorf("GetContainer = %+v, %v; want %+v", got, err, c)
	}
	list, err := rt.ListContainers(ctx, runtime.ContainerFilter{SandboxID: sb.ID})
	if err != nil || len(list) != 1 || list[0].ID != c.ID {
		t.Errorf("ListContainers(sandbox) = %d, %v; want exactly %s", len(list), err, c.ID)
	}
	all, err := rt.ListContainers(ctx, runtime.ContainerFilter{})
	if err != nil || len(all) != 2 {
		t.Errorf("ListContainers() = %d, %v; want 2", len(all), err)
	}
	mustRemove(t, rt, sb.ID)
	mustRemove(t, rt, other.ID)
}

func testContainerStartIdempotent(t *testing.T, h Harness, env *Env) {
	rt := env.Open()
	sb := containerSandbox(t, env, rt, "ctr-idem")
	cfg := containerConfig(env, sb, "idem")
	cfg.ID = uniqueID("ctridem")
	a := mustStart(t, rt, cfg)
	b := mustStart(t, rt, cfg)
	if a.ID != cfg.ID || b.ID != a.ID || b.PID != a.PID {
		t.Errorf("second start = %+v; want the first %+v", b, a)
	}
	intruder := containerConfig(env, sb, "intruder")
	intruder.ID = cfg.ID
	if _, err := rt.StartContainer(context.Background(), intruder); !errors.Is(err, runtime.ErrAlreadyExists) {
		t.Errorf("start with an ID held by another container: %v; want ErrAlreadyExists", err)
	}
	again := containerConfig(env, sb, "idem") // same name and attempt, new ID
	if _, err := rt.StartContainer(context.Background(), again); !errors.Is(err, runtime.ErrAlreadyExists) {
		t.Errorf("second container with the same name and attempt: %v; want ErrAlreadyExists", err)
	}
	mustRemove(t, rt, sb.ID)
}

func testContainerStopRemoveIdempotent(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	sb := containerSandbox(t, env, rt, "ctr-stop")
	c := mustStart(t, rt, containerConfig(env, sb, "stopme"))
	if err := rt.StopContainer(ctx, c.ID, time.Second); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	got, err := rt.GetContainer(ctx, c.ID)
	if err != nil || got.State != runtime.ContainerExited || got.FinishedAt.IsZero() || got.ExitCode == 0 {
		t.Errorf("after stop: %+v, %v; want exited with a non-zero code and a finish time", got, err)
	}
	if err := rt.StopContainer(ctx, c.ID, time.Second); err != nil {
		t.Errorf("second StopContainer: %v", err)
	}
	if err := rt.RemoveContainer(ctx, c.ID); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	if err := rt.RemoveContainer(ctx, c.ID); err != nil {
		t.Errorf("second RemoveContainer: %v", err)
	}
	if _, err := rt.GetContainer(ctx, c.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("GetContainer after remove: %v; want ErrNotFound", err)
	}
	// A running container is removed too (killed first).
	r := mustStart(t, rt, containerConfig(env, sb, "running"))
	if err := rt.RemoveContainer(ctx, r.ID); err != nil {
		t.Fatalf("RemoveContainer(running): %v", err)
	}
	if list, _ := rt.ListContainers(ctx, runtime.ContainerFilter{}); len(list) != 0 {
		t.Errorf("%d containers left after removal", len(list))
	}
	mustRemove(t, rt, sb.ID)
}

func testContainerNotFoundAndInvalid(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	sb := containerSandbox(t, env, rt, "ctr-nf")
	if _, err := rt.GetContainer(ctx, "no-such-container"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("GetContainer(missing): %v; want ErrNotFound", err)
	}
	if _, err := rt.Exec(ctx, "no-such-container", runtime.ExecOptions{Cmd: []string{"true"}}); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Exec(missing): %v; want ErrNotFound", err)
	}
	// Idempotent removal: stopping and removing what is gone succeed.
	if err := rt.StopContainer(ctx, "no-such-container", 0); err != nil {
		t.Errorf("StopContainer(missing): %v; want success", err)
	}
	if err := rt.RemoveContainer(ctx, "no-such-container"); err != nil {
		t.Errorf("RemoveContainer(missing): %v; want success", err)
	}
	cfg := containerConfig(env, sb, "lost")
	cfg.SandboxID = "no-such-sandbox"
	if _, err := rt.StartContainer(ctx, cfg); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("StartContainer in a missing sandbox: %v; want ErrNotFound", err)
	}
	cfg = containerConfig(env, sb, "noimage")
	cfg.Image = "example.test/never-pulled:0"
	if _, err := rt.StartContainer(ctx, cfg); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("StartContainer with a missing image: %v; want ErrNotFound", err)
	}
	for name, mutate := range map[string]func(*runtime.ContainerConfig){
		"no name":  func(c *runtime.ContainerConfig) { c.Name = "" },
		"no image": func(c *runtime.ContainerConfig) { c.Image = "" },
	} {
		cfg := containerConfig(env, sb, "invalid")
		mutate(cfg)
		if _, err := rt.StartContainer(ctx, cfg); !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("%s: %v; want ErrInvalidConfig", name, err)
		}
	}
	c := mustStart(t, rt, containerConfig(env, sb, "exited"))
	if err := rt.StopContainer(ctx, c.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Exec(ctx, c.ID, runtime.ExecOptions{Cmd: []string{"true"}}); err == nil {
		t.Error("Exec in an exited container succeeded")
	}
	mustRemove(t, rt, sb.ID)
}

func testContainerListAfterRestart(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	sb := containerSandbox(t, env, rt, "ctr-restart")
	c := mustStart(t, rt, containerConfig(env, sb, "survivor"))
	rt2 := env.Open() // a restarted agent
	got, err := rt2.GetContainer(ctx, c.ID)
	if err != nil || got.State != runtime.ContainerRunning || got.PID != c.PID || got.Hash() != c.Hash() {
		t.Errorf("after restart: %+v, %v; want the same running container %+v", got, err, c)
	}
	list, err := rt2.ListContainers(ctx, runtime.ContainerFilter{})
	if err != nil || len(list) != 1 {
		t.Errorf("ListContainers after restart = %d, %v; want 1", len(list), err)
	}
	mustRemove(t, rt2, sb.ID)
}

func testContainerGoesWithSandbox(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	sb := containerSandbox(t, env, rt, "ctr-with-sb")
	a := mustStart(t, rt, containerConfig(env, sb, "a"))
	mustStart(t, rt, containerConfig(env, sb, "b"))
	if err := rt.StopContainer(ctx, a.ID, 0); err != nil {
		t.Fatal(err)
	}
	mustRemove(t, rt, sb.ID)
	if list, err := rt.ListContainers(ctx, runtime.ContainerFilter{}); err != nil || len(list) != 0 {
		t.Errorf("after RemoveSandbox: %d containers, %v; want none", len(list), err)
	}
	if _, err := rt.GetContainer(ctx, a.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("GetContainer after RemoveSandbox: %v; want ErrNotFound", err)
	}
}

func testContainerExitWatch(t *testing.T, h Harness, env *Env) {
	rt := env.Open()
	w, ok := rt.(runtime.ExitWatcher)
	if !ok {
		return // optional ability
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb := containerSandbox(t, env, rt, "ctr-watch")
	exits, err := w.WatchExits(ctx)
	if err != nil {
		t.Fatalf("WatchExits: %v", err)
	}
	c := mustStart(t, rt, containerConfig(env, sb, "watched"))
	if err := rt.StopContainer(ctx, c.ID, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-exits:
		if ev.ContainerID != c.ID || ev.SandboxID != sb.ID || ev.Pod != sb.Pod {
			t.Errorf("exit event = %+v; want %s in %s", ev, c.ID, sb.ID)
		}
	case <-ctx.Done():
		t.Fatal("no exit event after StopContainer")
	}
	mustRemove(t, rt, sb.ID)
	cancel()
	// The channel closes once ctx ends.
	for range exits {
	}
}

// testContainerImageMount: an image mount names an image of the store
// (ErrNotFound otherwise), and the container reports the images it mounts,
// after a restart too, so that they stay in use.
func testContainerImageMount(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	sb := containerSandbox(t, env, rt, "ctr-imgmount")
	img, err := env.Images.GetImage(ctx, env.TestImage)
	if err != nil {
		t.Fatal(err)
	}
	cfg := containerConfig(env, sb, "absent")
	cfg.Mounts = []runtime.Mount{{Image: "example.test/never-pulled:0", ContainerPath: "/art"}}
	if _, err := rt.StartContainer(ctx, cfg); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("mount of a missing image: %v; want ErrNotFound", err)
	}
	for name, m := range map[string]runtime.Mount{
		"image and hostPath":   {Image: env.TestImage, HostPath: "/tmp", ContainerPath: "/art"},
		"image and volume":     {Image: env.TestImage, Volume: "v", ContainerPath: "/art"},
		"subPath climbing out": {Image: env.TestImage, ContainerPath: "/art", SubPath: "../etc"},
	} {
		cfg := containerConfig(env, sb, "invalid")
		cfg.Mounts = []runtime.Mount{m}
		if _, err := rt.StartContainer(ctx, cfg); !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("%s: %v; want ErrInvalidConfig", name, err)
		}
	}
	cfg = containerConfig(env, sb, "mounter")
	cfg.Mounts = []runtime.Mount{{Image: env.TestImage, ContainerPath: "/art"}}
	c := mustStart(t, rt, cfg)
	if len(c.MountImageIDs) != 1 || c.MountImageIDs[0] != img.ID || !c.UsesImage(img.ID) {
		t.Errorf("MountImageIDs = %v, want [%s]", c.MountImageIDs, img.ID)
	}
	got, err := env.Open().GetContainer(ctx, c.ID)
	if err != nil || len(got.MountImageIDs) != 1 || got.MountImageIDs[0] != img.ID {
		t.Errorf("after restart: MountImageIDs = %v, %v; want [%s]", got.MountImageIDs, err, img.ID)
	}
	mustRemove(t, rt, sb.ID)
}
