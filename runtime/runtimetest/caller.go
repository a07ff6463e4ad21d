package runtimetest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Cases for what a caller preparing more than the reconciler asks of a
// runtime (the CRI server): a network of its own making, its own log
// path, host paths as mounts, limits changed in place.

func testSandboxExternalNetwork(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	cfg := sandboxConfig("extnet")
	cfg.ExternalNetwork = true
	sb := mustCreate(t, rt, cfg)
	if sb.NetNSPath == "" || sb.IP != "" || sb.VethHost != "" || sb.Namespaces.Network != runtime.NamespacePod {
		t.Errorf("external-network sandbox = %+v; want its own netns, no address, no veth", sb)
	}
	for name, mutate := range map[string]func(*runtime.SandboxConfig){
		"with ports": func(c *runtime.SandboxConfig) {
			c.Ports = []runtime.PortMapping{{Protocol: runtime.ProtocolTCP, ContainerPort: 80, HostPort: 18080}}
		},
		"with host network": func(c *runtime.SandboxConfig) { c.Namespaces.Network = runtime.NamespaceNode },
	} {
		c := sandboxConfig("extnet-bad")
		c.ExternalNetwork = true
		mutate(c)
		if got, err := rt.CreateSandbox(ctx, c); !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("external network %s: %+v, %v; want ErrInvalidConfig", name, got, err)
			if got != nil {
				mustRemove(t, rt, got.ID)
			}
		}
	}
	mustRemove(t, rt, sb.ID)
}

func testContainerCallerPaths(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	sb := containerSandbox(t, env, rt, "caller")
	logPath := filepath.Join(t.TempDir(), "app", "0.log")
	cfg := containerConfig(env, sb, "app")
	cfg.LogPath = logPath
	cfg.Mounts = []runtime.Mount{{HostPath: t.TempDir(), ContainerPath: "/data", ReadOnly: true}}
	c := mustStart(t, rt, cfg)
	if c.LogPath != logPath {
		t.Errorf("LogPath = %q; want the caller's %q", c.LogPath, logPath)
	}
	for name, mutate := range map[string]func(*runtime.ContainerConfig){
		"relative log path": func(c *runtime.ContainerConfig) { c.LogPath = "app/0.log" },
		"relative host path": func(c *runtime.ContainerConfig) {
			c.Mounts = []runtime.Mount{{HostPath: "data", ContainerPath: "/data"}}
		},
		"host path and volume": func(c *runtime.ContainerConfig) {
			c.Mounts = []runtime.Mount{{HostPath: "/tmp", Volume: "v", ContainerPath: "/data"}}
		},
	} {
		bad := containerConfig(env, sb, "bad")
		mutate(bad)
		if got, err := rt.StartContainer(ctx, bad); !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("%s: %+v, %v; want ErrInvalidConfig", name, got, err)
			if got != nil {
				_ = rt.RemoveContainer(ctx, got.ID)
			}
		}
	}
	if u, ok := rt.(runtime.ResourceUpdater); ok {
		if err := u.UpdateContainerResources(ctx, c.ID, runtime.Resources{MemoryLimit: 256 << 20}); err != nil {
			t.Errorf("UpdateContainerResources(running): %v", err)
		}
		if err := rt.StopContainer(ctx, c.ID, 0); err != nil {
			t.Fatal(err)
		}
		if err := u.UpdateContainerResources(ctx, c.ID, runtime.Resources{MemoryLimit: 128 << 20}); !errors.Is(err, runtime.ErrConflict) {
			t.Errorf("UpdateContainerResources(exited): %v; want ErrConflict", err)
		}
		if err := u.UpdateContainerResources(ctx, "no-such-container", runtime.Resources{MemoryLimit: 1 << 20}); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("UpdateContainerResources(missing): %v; want ErrNotFound", err)
		}
	}
	mustRemove(t, rt, sb.ID)
}

// testSandboxOwner: the owner a sandbox was made with is reported by Get
// and List, also by a fresh runtime object (a restarted agent).
func testSandboxOwner(t *testing.T, h Harness, env *Env) {
	ctx := context.Background()
	rt := env.Open()
	cfg := sandboxConfig("owned")
	cfg.Owner = runtime.OwnerCRI
	sb := mustCreate(t, rt, cfg)
	plain := mustCreate(t, rt, sandboxConfig("plain"))
	rt = env.Open()
	if got, err := rt.GetSandbox(ctx, sb.ID); err != nil || got.Owner != runtime.OwnerCRI {
		t.Errorf("GetSandbox: owner %q, %v; want %q", got.Owner, err, runtime.OwnerCRI)
	}
	list, err := rt.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range list {
		if want := map[string]string{sb.ID: runtime.OwnerCRI, plain.ID: ""}[b.ID]; b.Owner != want {
			t.Errorf("ListSandboxes: %s has owner %q, want %q", b.ID, b.Owner, want)
		}
	}
	mustRemove(t, rt, sb.ID)
	mustRemove(t, rt, plain.ID)
}
