package linux

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	rt "github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// Volume tests take their subnets from 10.205.0.0/16, the range reserved
// for the pod-lifecycle tests.
var volSubnetSeq = atomic.Int64{}
var volSubnetBase = rand.IntN(250)

func newVolumeEnv(t *testing.T) *testEnv {
	t.Helper()
	linuxtest.RequireRoot(t)
	tag := linuxtest.RandomName("pv8", 4)
	n := (volSubnetBase+int(volSubnetSeq.Add(1)))%250 + 1
	cfg := Config{
		StateRoot:    t.TempDir(),
		RunRoot:      t.TempDir(),
		Bridge:       tag,
		Subnet:       fmt.Sprintf("10.205.%d.0/24", n),
		NetNSPrefix:  tag + "-",
		NFTable:      tag,
		CgroupParent: "pelagos-test-" + tag,
	}
	e := &testEnv{cfg: cfg, census: linuxtest.Census{
		NetNSPrefix: cfg.NetNSPrefix,
		Bridge:      cfg.Bridge,
		ProcessArg:  cfg.RunRoot,
		MountDirs:   []string{cfg.StateRoot, cfg.RunRoot},
		EmptyDirs:   []string{cfg.RunRoot, cfg.StateRoot + "/volumes"},
		Owners:      cfg.RunRoot,
	}}
	t.Cleanup(func() {
		e.cleanup(t)
		// Never let TempDir's RemoveAll cross a leaked mount.
		for _, root := range []string{cfg.StateRoot, cfg.RunRoot} {
			for _, mp := range linuxtest.MountsUnder(root) {
				unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
	})
	return e
}

func TestSandboxVolumesLifecycle(t *testing.T) {
	e := newVolumeEnv(t)
	r := e.open(t)
	ctx := context.Background()
	host := t.TempDir()
	cfg := podConfig("vols")
	cfg.Volumes = []rt.VolumeConfig{
		{Name: "scratch", EmptyDir: &rt.EmptyDirVolume{}},
		{Name: "cache", EmptyDir: &rt.EmptyDirVolume{Medium: "Memory", SizeLimit: 2 << 20}},
		{Name: "logs", HostPath: &rt.HostPathVolume{Path: filepath.Join(host, "logs"), Type: "DirectoryOrCreate"}},
		{Name: "cfg", Files: &rt.ProjectedVolume{Files: []rt.ProjectedFile{{Path: "app.conf", Data: []byte("v1"), Mode: 0o644}}}},
		{Name: "sec", Files: &rt.ProjectedVolume{Sensitive: true, Files: []rt.ProjectedFile{{Path: "token", Data: []byte("s3cr3t-value"), Mode: 0o600}}}},
	}
	sb, err := r.CreateSandbox(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	vm := r.volumes()
	for _, name := range []string{"scratch", "cache", "cfg", "sec"} {
		if _, err := os.Stat(vm.Dir(sb.ID, name)); err != nil {
			t.Fatalf("volume %s not made: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(host, "logs")); err != nil || !fi.IsDir() {
		t.Fatalf("hostPath DirectoryOrCreate not made: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(vm.Dir(sb.ID, "cfg"), "app.conf")); err != nil || string(b) != "v1" {
		t.Fatalf("projected file: %q %v", b, err)
	}
	// Secrets never reach the record on disk.
	recBytes, err := os.ReadFile(filepath.Join(r.sandboxDir(sb.ID), "sandbox.json"))
	if err != nil {
		ents, _ := os.ReadDir(r.sandboxDir(sb.ID))
		for _, en := range ents {
			b, _ := os.ReadFile(filepath.Join(r.sandboxDir(sb.ID), en.Name()))
			recBytes = append(recBytes, b...)
		}
	}
	if len(recBytes) == 0 || strings.Contains(string(recBytes), "s3cr3t") {
		t.Fatalf("sandbox state empty or holds the secret (%d bytes)", len(recBytes))
	}

	// A ConfigMap edit reaches the running sandbox.
	upd := rt.VolumeConfig{Name: "cfg", Files: &rt.ProjectedVolume{Files: []rt.ProjectedFile{{Path: "app.conf", Data: []byte("v2"), Mode: 0o644}}}}
	if err := r.UpdateVolume(ctx, sb.ID, &upd); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(vm.Dir(sb.ID, "cfg"), "app.conf")); string(b) != "v2" {
		t.Fatalf("after update: %q", b)
	}
	if err := r.UpdateVolume(ctx, sb.ID, &rt.VolumeConfig{Name: "nope", Files: &rt.ProjectedVolume{}}); !errors.Is(err, rt.ErrNotFound) {
		t.Fatalf("update of an unknown volume: %v", err)
	}
	if err := r.UpdateVolume(ctx, "no-such-sandbox", &upd); !errors.Is(err, rt.ErrNotFound) {
		t.Fatalf("update in an unknown sandbox: %v", err)
	}

	if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(vm.Dir(sb.ID, "")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("volumes left after RemoveSandbox: %v", err)
	}
	if _, err := os.Stat(filepath.Join(host, "logs")); err != nil {
		t.Fatalf("RemoveSandbox removed a hostPath: %v", err)
	}
	e.census.Check(t, 10*time.Second)
}

func TestSandboxVolumeErrorUndoesCreate(t *testing.T) {
	e := newVolumeEnv(t)
	r := e.open(t)
	cfg := podConfig("badvol")
	cfg.Volumes = []rt.VolumeConfig{
		{Name: "ok", EmptyDir: &rt.EmptyDirVolume{Medium: "Memory"}},
		{Name: "bad", HostPath: &rt.HostPathVolume{Path: "/nonexistent-pelagos-test/x", Type: "Directory"}},
	}
	_, err := r.CreateSandbox(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), `volume "bad"`) {
		t.Fatalf("create with a failing hostPath check: %v", err)
	}
	if sbs := must(r.ListSandboxes(context.Background())); len(sbs) != 0 {
		t.Fatalf("sandboxes left: %v", sbs)
	}
	e.census.Check(t, 10*time.Second)
}

func TestGCRemovesOrphanVolumes(t *testing.T) {
	e := newVolumeEnv(t)
	r := e.open(t)
	vm := r.volumes()
	if _, err := vm.Setup("orphan1", []rt.VolumeConfig{{Name: "m", EmptyDir: &rt.EmptyDirVolume{Medium: "Memory"}}}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range rep.Removed {
		found = found || strings.Contains(l, "volumes of unrecorded sandbox orphan1")
	}
	if !found {
		t.Fatalf("GC report %v does not name the orphan volumes", rep.Removed)
	}
	e.census.Check(t, 10*time.Second)
}
