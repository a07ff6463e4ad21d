package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

func init() { groups = append(groups, sandboxCases) }

var seq atomic.Int64

// uniqueID returns an ID no other case of this process uses.
func uniqueID(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, seq.Add(1))
}

func sandboxConfig(name string) *runtime.SandboxConfig {
	return &runtime.SandboxConfig{
		Pod:      runtime.PodKey{Namespace: "default", Name: name},
		UID:      "uid-" + name,
		Hostname: name,
		Labels:   map[string]string{"app": name},
		Annotations: map[string]string{
			runtime.AnnotationSandboxHash: "v1-" + name,
		},
	}
}

func sandboxCases(t *testing.T, h Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness, env *Env)
	}{
		{"SandboxCreateGetList", testSandboxCreateGetList},
		{"SandboxCreateIdempotent", testSandboxCreateIdempotent},
		{"SandboxIDHeldByOtherPod", testSandboxIDHeldByOtherPod},
		{"SandboxRemoveIdempotent", testSandboxRemoveIdempotent},
		{"SandboxNotFound", testSandboxNotFound},
		{"SandboxInvalidConfig", testSandboxInvalidConfig},
		{"SandboxListAfterRestart", testSandboxListAfterRestart},
		{"SandboxHalfCreatedRemove", testSandboxHalfCreatedRemove},
		{"SandboxHalfCreatedGC", testSandboxHalfCreatedGC},
		{"SandboxPauseDeath", testSandboxPauseDeath},
		{"SandboxHostNetwork", testSandboxHostNetwork},
		{"SandboxDistinctIPs", testSandboxDistinctIPs},
		{"SandboxExternalNetwork", testSandboxExternalNetwork},
		{"SandboxOwner", testSandboxOwner},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := h.NewEnv(t)
			c.fn(t, h, env)
			if env.Census != nil {
				env.Census(t)
			}
		})
	}
}

func mustCreate(t *testing.T, rt runtime.Runtime, cfg *runtime.SandboxConfig) *runtime.Sandbox {
	t.Helper()
	sb, err := rt.CreateSandbox(context.Background(), cfg)
	if err != nil {
		t.Fatalf("CreateSandbox(%s): %v", cfg.Pod, err)
	}
	return sb
}

func mustRemove(t *testing.T, rt runtime.Runtime, id string) {
	t.Helper()
	if err := rt.RemoveSandbox(context.Background(), id); err != nil {
		t.Fatalf("RemoveSandbox(%s): %v", id, err)
	}
}

func testSandboxCreateGetList(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	cfg := sandboxConfig("web")
	sb := mustCreate(t, rt, cfg)
	if sb.ID == "" || sb.State != runtime.SandboxReady || sb.Pod != cfg.Pod {
		t.Fatalf("created sandbox = %+v; want an ID, ready, pod %s", sb, cfg.Pod)
	}
	if sb.Hash() != "v1-web" || sb.Labels["app"] != "web" || sb.UID != cfg.UID {
		t.Errorf("labels/annotations/uid not kept: %+v", sb)
	}
	if sb.PausePID <= 0 {
		t.Errorf("pause PID = %d, want > 0", sb.PausePID)
	}
	if !h.NoNetwork && (sb.IP == "" || sb.NetNSPath == "") {
		t.Errorf("pod network sandbox has IP %q netns %q; want both", sb.IP, sb.NetNSPath)
	}
	if sb.CreatedAt.IsZero() {
		t.Error("created time is zero")
	}
	got, err := rt.GetSandbox(ctx, sb.ID)
	if err != nil {
		t.Fatalf("GetSandbox: %v", err)
	}
	if got.ID != sb.ID || got.IP != sb.IP || got.State != runtime.SandboxReady || got.PausePID != sb.PausePID {
		t.Errorf("GetSandbox = %+v; want %+v", got, sb)
	}
	list, err := rt.ListSandboxes(ctx)
	if err != nil {
		t.Fatalf("ListSandboxes: %v", err)
	}
	if len(list) != 1 || list[0].ID != sb.ID {
		t.Errorf("ListSandboxes = %d sandboxes; want exactly %s", len(list), sb.ID)
	}
	mustRemove(t, rt, sb.ID)
}

func testSandboxCreateIdempotent(t *testing.T, h Harness, env *Env) {
	rt := env.Open()
	cfg := sandboxConfig("idem")
	cfg.ID = uniqueID("idem")
	a := mustCreate(t, rt, cfg)
	b := mustCreate(t, rt, cfg)
	if a.ID != cfg.ID || b.ID != a.ID || b.PausePID != a.PausePID || b.IP != a.IP {
		t.Errorf("second create = %+v; want the first %+v", b, a)
	}
	list, err := rt.ListSandboxes(context.Background())
	if err != nil || len(list) != 1 {
		t.Errorf("ListSandboxes = %d, %v; want 1 sandbox", len(list), err)
	}
	mustRemove(t, rt, a.ID)
}

func testSandboxIDHeldByOtherPod(t *testing.T, h Harness, env *Env) {
	rt := env.Open()
	cfg := sandboxConfig("holder")
	cfg.ID = uniqueID("held")
	mustCreate(t, rt, cfg)
	other := sandboxConfig("intruder")
	other.ID = cfg.ID
	if _, err := rt.CreateSandbox(context.Background(), other); !errors.Is(err, runtime.ErrAlreadyExists) {
		t.Errorf("create with an ID held by another pod: err = %v; want ErrAlreadyExists", err)
	}
	mustRemove(t, rt, cfg.ID)
}

func testSandboxRemoveIdempotent(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	sb := mustCreate(t, rt, sandboxConfig("twice"))
	mustRemove(t, rt, sb.ID)
	mustRemove(t, rt, sb.ID)
	if _, err := rt.GetSandbox(ctx, sb.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("GetSandbox after remove: err = %v; want ErrNotFound", err)
	}
	mustRemove(t, rt, uniqueID("never"))
}

func testSandboxNotFound(t *testing.T, h Harness, env *Env) {
	rt := env.Open()
	if _, err := rt.GetSandbox(context.Background(), uniqueID("missing")); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("GetSandbox(missing): err = %v; want ErrNotFound", err)
	}
	list, err := rt.ListSandboxes(context.Background())
	if err != nil || len(list) != 0 {
		t.Errorf("ListSandboxes on an empty runtime = %d, %v; want none", len(list), err)
	}
}

func testSandboxInvalidConfig(t *testing.T, h Harness, env *Env) {
	rt := env.Open()
	bad := map[string]*runtime.SandboxConfig{
		"no pod name":  {Pod: runtime.PodKey{Namespace: "default"}},
		"path-like ID": {ID: "../x", Pod: runtime.PodKey{Namespace: "default", Name: "p"}},
		"per-container network": {Pod: runtime.PodKey{Namespace: "default", Name: "p"},
			Namespaces: runtime.NamespaceOptions{Network: runtime.NamespaceContainer}},
		"negative pod memory limit": {Pod: runtime.PodKey{Namespace: "default", Name: "p"},
			Resources: runtime.Resources{MemoryLimit: -1}},
		"negative pod CPU limit": {Pod: runtime.PodKey{Namespace: "default", Name: "p"},
			Resources: runtime.Resources{CPULimitMilli: -100}},
	}
	for what, cfg := range bad {
		if _, err := rt.CreateSandbox(context.Background(), cfg); !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("%s: err = %v; want ErrInvalidConfig", what, err)
		}
	}
	list, _ := rt.ListSandboxes(context.Background())
	if len(list) != 0 {
		t.Errorf("invalid configs left %d sandboxes", len(list))
	}
}

func testSandboxListAfterRestart(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	first := env.Open()
	a := mustCreate(t, first, sandboxConfig("alpha"))
	b := mustCreate(t, first, sandboxConfig("beta"))

	second := env.Open()
	list, err := second.ListSandboxes(ctx)
	if err != nil {
		t.Fatalf("ListSandboxes after restart: %v", err)
	}
	var ids []string
	for _, sb := range list {
		ids = append(ids, sb.ID)
		want := a
		if sb.ID == b.ID {
			want = b
		}
		if sb.State != runtime.SandboxReady || sb.PausePID != want.PausePID || sb.IP != want.IP || sb.Hash() != want.Hash() {
			t.Errorf("after restart %s = %+v; want as created %+v", sb.ID, sb, want)
		}
	}
	slices.Sort(ids)
	want := []string{a.ID, b.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("after restart listed %v; want %v", ids, want)
	}
	// Creating again through the new object adopts, never duplicates.
	cfg := sandboxConfig("alpha")
	cfg.ID = a.ID
	again := mustCreate(t, second, cfg)
	if again.PausePID != a.PausePID {
		t.Errorf("re-create after restart made a new pause (%d, was %d)", again.PausePID, a.PausePID)
	}
	mustRemove(t, second, a.ID)
	mustRemove(t, second, b.ID)
}

func testSandboxHalfCreatedRemove(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	cfg := sandboxConfig("half")
	cfg.ID = uniqueID("half")
	env.HalfCreate(t, rt, cfg)
	if sb, err := rt.GetSandbox(ctx, cfg.ID); err == nil && sb.State == runtime.SandboxReady {
		t.Errorf("half-created sandbox reported ready: %+v", sb)
	}
	mustRemove(t, env.Open(), cfg.ID)
	if _, err := rt.GetSandbox(ctx, cfg.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("GetSandbox after removing a half-created sandbox: err = %v; want ErrNotFound", err)
	}
}

func testSandboxHalfCreatedGC(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	keep := mustCreate(t, rt, sandboxConfig("keep"))
	cfg := sandboxConfig("crashed")
	cfg.ID = uniqueID("crash")
	env.HalfCreate(t, rt, cfg)

	rep, err := env.Open().GC(ctx)
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if len(rep.Removed) == 0 {
		t.Error("GC after a crash mid-create removed nothing")
	}
	if _, err := rt.GetSandbox(ctx, cfg.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("half-created sandbox after GC: err = %v; want ErrNotFound", err)
	}
	if sb, err := rt.GetSandbox(ctx, keep.ID); err != nil || sb.State != runtime.SandboxReady {
		t.Errorf("GC touched a healthy sandbox: %+v, %v", sb, err)
	}
	rep, err = rt.GC(ctx)
	if err != nil || len(rep.Removed) != 0 {
		t.Errorf("second GC = %v, %v; want nothing removed", rep, err)
	}
	mustRemove(t, rt, keep.ID)
}

func testSandboxPauseDeath(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	sb := mustCreate(t, rt, sandboxConfig("victim"))
	env.KillPause(t, rt, sb.ID)
	got, err := env.Open().GetSandbox(ctx, sb.ID)
	if err != nil {
		t.Fatalf("GetSandbox after pause death: %v", err)
	}
	if got.State != runtime.SandboxNotReady || got.Reason == "" {
		t.Errorf("after pause death state = %s reason %q; want notready with a reason", got.State, got.Reason)
	}
	// Creating again with the same ID does not pretend a dead sandbox is fine.
	cfg := sandboxConfig("victim")
	cfg.ID = sb.ID
	if again, err := rt.CreateSandbox(ctx, cfg); err == nil && again.State == runtime.SandboxReady && again.PausePID == sb.PausePID {
		t.Errorf("re-create of a dead sandbox reported the dead pause %d as ready", sb.PausePID)
	}
	mustRemove(t, rt, sb.ID)
	if _, err := rt.GetSandbox(ctx, sb.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("after remove: err = %v; want ErrNotFound", err)
	}
}

func testSandboxHostNetwork(t *testing.T, h Harness, env *Env) {
	rt := env.Open()
	cfg := sandboxConfig("hostnet")
	cfg.Namespaces.Network = runtime.NamespaceNode
	sb := mustCreate(t, rt, cfg)
	if sb.NetNSPath != "" || sb.VethHost != "" || sb.Namespaces.Network != runtime.NamespaceNode {
		t.Errorf("host-network sandbox = %+v; want no netns, no veth, network Node", sb)
	}
	mustRemove(t, rt, sb.ID)
}

func testSandboxDistinctIPs(t *testing.T, h Harness, env *Env) {
	if h.NoNetwork {
		t.Skip("implementation has no pod network")
	}
	rt := env.Open()
	seen := map[string]string{}
	var ids []string
	for i := range 5 {
		sb := mustCreate(t, rt, sandboxConfig(fmt.Sprintf("ip%d", i)))
		ids = append(ids, sb.ID)
		if other, dup := seen[sb.IP]; dup {
			t.Errorf("IP %s given to %s and %s", sb.IP, other, sb.ID)
		}
		seen[sb.IP] = sb.ID
	}
	for _, id := range ids {
		mustRemove(t, rt, id)
	}
}
