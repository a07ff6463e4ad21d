package linux

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/shim"
)

// wipeRunRoot does to the run root what a reboot does: every helper and
// workload dies, every mount below it goes, and so does every record.
func wipeRunRoot(t *testing.T, e *ctrEnv, rt *Runtime) {
	t.Helper()
	ctx := context.Background()
	ctrs, err := rt.ListContainers(ctx, runtime.ContainerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ctrs {
		if err := shim.KillCgroup(e.cg, ctrCgroup(c.SandboxID, c.ID)); err != nil {
			t.Fatal(err)
		}
	}
	for _, pid := range linuxtest.ProcessesWithArg(e.cfg.RunRoot) {
		if p, err := procid.Of(pid); err == nil {
			if err := p.Stop(unix.SIGKILL, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	mps := linuxtest.MountsUnder(e.cfg.RunRoot)
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			t.Fatalf("unmount %s: %v", mp, err)
		}
	}
	ents, err := os.ReadDir(e.cfg.RunRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range ents {
		if err := os.RemoveAll(filepath.Join(e.cfg.RunRoot, en.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGCAfterRunRootWiped runs pods with a volume, a subPath mount, logs
// and write layers, then loses the run root as a reboot would, and starts
// again with another subnet (issue 12): a new runtime's GC leaves the
// state root with the images and what the live records name, nothing of
// the pods that were lost.
func TestGCAfterRunRootWiped(t *testing.T) {
	e := newCtrEnv(t, &runtime.SandboxConfig{Volumes: []runtime.VolumeConfig{{Name: "data", EmptyDir: &runtime.EmptyDirVolume{}}}})
	ctx := context.Background()
	e.startSleeper(t, "sub", func(c *runtime.ContainerConfig) {
		c.Command = []string{"/bin/sh", "-c", "echo layer > /layer; echo logged; exec sleep 1000"}
		c.Mounts = []runtime.Mount{{Volume: "data", ContainerPath: "/sub", SubPath: "a/b"}}
	})
	e.run(t, e.config("done", "/bin/sh", "-c", "echo done > /data-less; echo bye"))
	other, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "other"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: other.ID, Name: "app", Image: testImage, Command: []string{"/bin/sleep", "1000"}}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"containers", "logs", "volumes"} {
		if ents, _ := os.ReadDir(filepath.Join(e.cfg.StateRoot, dir)); len(ents) == 0 {
			t.Fatalf("nothing in %s to lose", dir)
		}
	}
	if len(linuxtest.MountsUnder(filepath.Join(e.cfg.RunRoot, "volume-subpaths"))) == 0 {
		t.Fatal("no subPath mount to lose")
	}
	oldPool := filepath.Join(e.cfg.StateRoot, "ipam", strings.ReplaceAll(e.cfg.Subnet, "/", "_"))

	wipeRunRoot(t, e, e.rt)

	// The agent starts again, on another subnet, and runs a pod before its
	// GC: what that pod's records name stays.
	cfg := e.cfg
	cfg.Subnet = strings.Replace(cfg.Subnet, "10.202.", "10.206.", 1)
	rt := openRuntime(t, &cfg)
	rt.SetImageStore(e.store)
	live, err := rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "live"}})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := rt.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: live.ID, Name: "app", Image: testImage, Command: []string{"/bin/sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rt.GC(ctx)
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	t.Logf("GC after the run root was wiped:\n  %s", strings.Join(rep.Removed, "\n  "))

	// The census of the state root.
	want := map[string][]string{
		"containers": {lc.ID},
		"logs":       {live.ID},
		"volumes":    nil,
		"ipam":       {filepath.Base(rt.pool.Dir())},
	}
	ents, err := os.ReadDir(e.cfg.StateRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range ents {
		w, ok := want[en.Name()]
		if en.Name() == "images" {
			continue
		}
		if !ok {
			t.Errorf("state root holds %s", en.Name())
			continue
		}
		got := entryNames(filepath.Join(e.cfg.StateRoot, en.Name()))
		if !slices.Equal(got, w) {
			t.Errorf("%s/%s holds %v, want %v", e.cfg.StateRoot, en.Name(), got, w)
		}
	}
	if leases := linuxtest.Leases(e.cfg.StateRoot); len(leases) != 1 || !strings.HasSuffix(leases[0], "/"+live.IP) {
		t.Errorf("leases %v, want only the live pod's (%s)", leases, live.IP)
	}
	if _, err := os.Stat(oldPool); err == nil {
		t.Errorf("the old subnet's pool %s is left", oldPool)
	}
	// A second pass finds nothing more.
	if rep, err := rt.GC(ctx); err != nil || len(rep.Removed) != 0 {
		t.Errorf("second GC: %v %v", rep.Removed, err)
	}
	if err := rt.RemoveSandbox(ctx, live.ID); err != nil {
		t.Fatal(err)
	}
	e.census.StateRoot = e.cfg.StateRoot
	e.check(t)
	for _, dir := range []string{"containers", "logs", "volumes"} {
		if got := entryNames(filepath.Join(e.cfg.StateRoot, dir)); len(got) != 0 {
			t.Errorf("census: %s/%s holds %v", e.cfg.StateRoot, dir, got)
		}
	}
}

// entryNames lists the names in dir, sorted; none when it is missing.
func entryNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, en := range ents {
		out = append(out, en.Name())
	}
	return out
}
