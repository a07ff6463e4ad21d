package linux

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// Container root tests use 10.202.0.0/16: a /24 per environment.
var ctrSubnetBase = rand.IntN(250)
var ctrSubnetSeq sync.Mutex
var ctrSubnetN int

const testImage = "pelagos.test/busybox-probe:1"

// ctrEnv is one container test's private world: bridge, netns prefix,
// subnet, roots, nftables table and cgroup parent of its own, one sandbox
// and the busybox image with the probe.
type ctrEnv struct {
	cfg    Config
	rt     *Runtime
	store  *image.Store
	sb     *runtime.Sandbox
	census linuxtest.Census
	cg     *cgroups.Manager
}

var (
	probeOnce sync.Once
	probePath string
	probeErr  error
)

// buildProbe compiles testdata/ctrprobe statically, once per test binary.
func buildProbe(t testing.TB) string {
	probeOnce.Do(func() {
		// One path per version of the probe's source, replaced atomically:
		// concurrent test binaries of one tree share it, a tree with
		// another probe (another worktree) never gets this one, and only
		// one file per version accumulates in the temporary directory.
		sum := sha256.New()
		srcs, _ := filepath.Glob("testdata/ctrprobe/*.go")
		for _, f := range srcs {
			b, err := os.ReadFile(f)
			if err != nil {
				probeErr = err
				return
			}
			fmt.Fprintf(sum, "%s %d\n", f, len(b))
			sum.Write(b)
		}
		probePath = filepath.Join(os.TempDir(), "pelagos-ctrprobe-"+hex.EncodeToString(sum.Sum(nil))[:12])
		tmp := fmt.Sprintf("%s.%d", probePath, os.Getpid())
		cmd := exec.Command("go", "build", "-o", tmp, "./testdata/ctrprobe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			probeErr = fmt.Errorf("build probe: %v\n%s", err, out)
			return
		}
		probeErr = os.Rename(tmp, probePath)
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	return probePath
}

func newCtrEnv(t testing.TB, sbCfg *runtime.SandboxConfig) *ctrEnv {
	t.Helper()
	linuxtest.RequireRoot(t)
	tag := linuxtest.RandomName("pc", 4)
	ctrSubnetSeq.Lock()
	ctrSubnetN++
	n := (ctrSubnetBase+ctrSubnetN)%250 + 1
	ctrSubnetSeq.Unlock()
	cfg := Config{
		StateRoot:    t.TempDir(),
		RunRoot:      t.TempDir(),
		Bridge:       tag,
		Subnet:       fmt.Sprintf("10.202.%d.0/24", n),
		NetNSPrefix:  tag + "-",
		NFTable:      tag,
		CgroupParent: "pelagos-test-" + tag,
		LogMaxSize:   1 << 20,
		LogMaxFiles:  3,
	}
	rt := openRuntime(t, &cfg)
	store, err := image.Open(image.Options{Root: cfg.StateRoot})
	if err != nil {
		t.Fatal(err)
	}
	rt.SetImageStore(store)
	img := imagetest.WithFiles(t, imagetest.Busybox(t),
		imagetest.HostFile{Path: "/usr/local/bin/ctrprobe", From: buildProbe(t)},
		imagetest.HostFile{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		imagetest.HostFile{Path: "/etc/group", Data: []byte("root:x:0:\napp:x:1000:\nextra:x:3000:app\nnogroup:x:65534:\n")},
	)
	imagetest.ImportInto(t, store, testImage, img)
	cg, err := cgroups.New(cfg.CgroupParent)
	if err != nil {
		t.Fatal(err)
	}
	e := &ctrEnv{cfg: cfg, rt: rt, store: store, cg: cg, census: linuxtest.Census{
		NetNSPrefix: cfg.NetNSPrefix,
		Bridge:      cfg.Bridge,
		ProcessArg:  cfg.RunRoot,
		MountDirs:   []string{cfg.RunRoot, cfg.StateRoot + "/containers"},
		EmptyDirs:   []string{cfg.RunRoot, cfg.StateRoot + "/containers"},
		Owners:      cfg.RunRoot,
	}}
	t.Cleanup(func() {
		ctx := context.Background()
		if rt, err := New(cfg); err == nil {
			for _, sb := range must(rt.ListSandboxes(ctx)) {
				rt.RemoveSandbox(ctx, sb.ID)
			}
			rt.GC(ctx)
			rt.net.nft.Teardown()
			rt.Close()
		}
		if l, err := netlink.LinkByName(cfg.Bridge); err == nil {
			netlink.LinkDel(l)
		}
		if err := cg.RemoveParent(); err != nil {
			t.Errorf("census: cgroup parent %s: %v", cg.Parent(), err)
		}
	})
	if sbCfg == nil {
		sbCfg = &runtime.SandboxConfig{}
	}
	if sbCfg.Pod.Name == "" {
		sbCfg.Pod = runtime.PodKey{Namespace: "default", Name: "ctr-" + tag}
	}
	e.sb, err = rt.CreateSandbox(context.Background(), sbCfg)
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	return e
}

// check removes the sandbox and runs the census: no netns, processes,
// mounts, records, upper dirs or cgroups may be left.
func (e *ctrEnv) check(t testing.TB) {
	t.Helper()
	if err := e.rt.RemoveSandbox(context.Background(), e.sb.ID); err != nil {
		t.Errorf("remove sandbox: %v", err)
	}
	e.census.Check(t, 10*time.Second)
	if kids, _ := e.cg.Children(); len(kids) != 0 {
		t.Errorf("census: cgroups left below %s: %v", e.cg.Parent(), kids)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.cfg.StateRoot, "logs")); len(ents) != 0 {
		t.Errorf("census: log directories left: %d", len(ents))
	}
}

func (e *ctrEnv) config(name string, cmd ...string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{SandboxID: e.sb.ID, Name: name, Image: testImage, Command: cmd}
}

// waitExit waits for the container to exit, through the exit watcher.
func (e *ctrEnv) waitExit(t testing.TB, id string) *runtime.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := e.rt.WatchExits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, err := e.rt.GetContainer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == runtime.ContainerExited {
			return c
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("container %s did not exit", id)
		}
	}
}

// run starts a container and returns its exit and its log content.
func (e *ctrEnv) run(t testing.TB, cfg *runtime.ContainerConfig) (*runtime.Container, string) {
	t.Helper()
	c, err := e.rt.StartContainer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	c = e.waitExit(t, c.ID)
	var out bytes.Buffer
	if err := crilog.Read(c.LogPath, &out, crilog.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	return c, out.String()
}

// keyValues parses "k=v" lines.
func keyValues(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}
