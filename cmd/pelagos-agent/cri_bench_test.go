package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/vishvananda/netlink"

	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// BenchmarkCRIStart measures what kubelet waits for when it starts a pod:
// `crictl runp`, `create` and `start` of one busybox container, against
// `pelagos-agent cri` and, in the same run with rounds interleaved, a
// private containerd (the Debian package's, on its own socket, root,
// state, CNI bridge and subnet; the CNI plugins from /usr/lib/cni). Both
// pull from one loopback registry beforehand; teardown is not timed.
// Medians per step and of the total, and the ratio containerd/pelagos,
// are reported. crictl's own start-up is in every figure on both sides;
// `crictl version` measures it.
//
//	go test -run '^$' -bench BenchmarkCRIStart -benchtime 20x ./cmd/pelagos-agent
func BenchmarkCRIStart(b *testing.B) {
	linuxtest.RequireRoot(b)
	imagetest.RequireBusybox(b)
	reg := imagetest.ServeRegistry(b, imagetest.RegistryOptions{})
	bb := imagetest.Busybox(b)
	ref := reg.Push(b, "library/busybox:1.36", bb)
	// containerd's sandbox image: anything that sleeps.
	pauseImg, err := mutate.Config(bb, v1.Config{Entrypoint: []string{"/bin/sleep", "infinity"}, Env: []string{imagetest.DefaultPath}})
	if err != nil {
		b.Fatal(err)
	}
	pause := reg.Push(b, "pause:3.9", pauseImg)

	ours := newCRIEnv(b)
	ours.start()
	cd := startContainerd(b, reg.Host, pause)
	sides := []*criClient{
		{name: "pelagos", env: ours, sock: ours.sock},
		{name: "containerd", env: ours, sock: cd.sock, cgroupParent: "/" + cd.tag},
	}
	for _, s := range sides {
		s.run(b, "pull", ref)
		s.round(b, ref) // warm: bridge, tables, caches
	}
	floor := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, s := range sides {
			s.round(b, ref)
		}
		t0 := time.Now()
		sides[0].run(b, "version")
		floor = append(floor, time.Since(t0))
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	var line []string
	for _, s := range sides {
		r, c, st := median(s.runp), median(s.create), median(s.start)
		tot := median(s.total)
		b.ReportMetric(ms(tot), s.name+"-ms")
		line = append(line, fmt.Sprintf("%s: runp %.1f ms, create %.1f ms, start %.1f ms, total %.1f ms", s.name, ms(r), ms(c), ms(st), ms(tot)))
	}
	ratio := float64(median(sides[1].total)) / float64(median(sides[0].total))
	b.ReportMetric(ratio, "containerd/pelagos")
	b.ReportMetric(ms(median(floor)), "crictl-floor-ms")
	b.Logf("rounds=%d; %s; crictl version alone %.1f ms; containerd/pelagos %.2fx", b.N, strings.Join(line, "; "), ms(median(floor)), ratio)
}

// criClient is one side of the benchmark: a CRI socket driven by crictl.
type criClient struct {
	name, sock, cgroupParent string
	env                      *criEnv
	runp, create, start      []time.Duration
	total                    []time.Duration
	n                        int
}

func (c *criClient) run(b *testing.B, args ...string) string {
	b.Helper()
	full := append([]string{"--config", c.env.crictlCfg, "--runtime-endpoint", "unix://" + c.sock,
		"--image-endpoint", "unix://" + c.sock, "--timeout", "2m"}, args...)
	cmd := exec.Command(criTool(b, "crictl"), full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: crictl %s: %v\n%s%s", c.name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return strings.TrimSpace(out.String())
}

// round times runp, create and start of one pod, then removes it.
func (c *criClient) round(b *testing.B, image string) {
	b.Helper()
	c.n++
	linux := map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": 1}}}
	if c.cgroupParent != "" {
		linux["cgroup_parent"] = c.cgroupParent
	}
	pod := criConfigFile(b, map[string]any{
		"metadata": map[string]any{"name": fmt.Sprintf("bench-%d", c.n), "namespace": "bench", "uid": fmt.Sprintf("%s-%d", c.name, c.n)},
		"linux":    linux,
	})
	ctr := criConfigFile(b, map[string]any{
		"metadata": map[string]any{"name": "c"}, "image": map[string]any{"image": image},
		"command": []string{"sleep", "3600"},
		"linux":   map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": 1}}},
	})
	t0 := time.Now()
	podID := c.run(b, "runp", pod)
	t1 := time.Now()
	ctrID := c.run(b, "create", podID, ctr, pod)
	t2 := time.Now()
	c.run(b, "start", ctrID)
	t3 := time.Now()
	c.runp, c.create, c.start = append(c.runp, t1.Sub(t0)), append(c.create, t2.Sub(t1)), append(c.start, t3.Sub(t2))
	c.total = append(c.total, t3.Sub(t0))
	c.run(b, "stopp", podID)
	c.run(b, "rmp", podID)
}

// containerdEnv is a private containerd: its own socket, root and state
// under a temporary directory, its own CNI configuration (a bridge named
// after tag on a subnet of this area's range), and the loopback registry
// as a plain-HTTP mirror of itself for the sandbox image.
type containerdEnv struct {
	tag, dir, sock string
	cmd            *exec.Cmd
}

func startContainerd(b *testing.B, registry, pause string) *containerdEnv {
	b.Helper()
	if _, err := exec.LookPath("containerd"); err != nil {
		linuxtest.Require(b, false, "containerd (apt-get install containerd)")
	}
	e := &containerdEnv{tag: linuxtest.RandomName("pcd", 5), dir: b.TempDir()}
	e.sock = filepath.Join(e.dir, "containerd.sock")
	subnet := fmt.Sprintf("10.217.%d.0/24", 251+rand.IntN(4))
	netd := filepath.Join(e.dir, "net.d")
	if err := os.MkdirAll(netd, 0o755); err != nil {
		b.Fatal(err)
	}
	conflist := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "subnet": %q, "dataDir": %q, "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}`, e.tag, e.tag, subnet, filepath.Join(e.dir, "cni-ipam"))
	if err := os.WriteFile(filepath.Join(netd, "10-bench.conflist"), []byte(conflist), 0o644); err != nil {
		b.Fatal(err)
	}
	// restrict_oom_score_adj: root here cannot lower an OOM score, and
	// containerd gives the pause -998 otherwise.
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors.%q]
    endpoint = ["http://%s"]
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(e.dir, "root"), filepath.Join(e.dir, "state"), e.sock, e.sock+".ttrpc", pause, netd,
		registry, registry, filepath.Join(e.dir, "opt"))
	cfgPath := filepath.Join(e.dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(e.dir, "containerd.log"))
	if err != nil {
		b.Fatal(err)
	}
	e.cmd = exec.Command("containerd", "--config", cfgPath)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	logf.Close()
	b.Cleanup(e.stop)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(e.sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(e.dir, "containerd.log"))
			b.Fatalf("containerd did not start:\n%s", tail(log, 4000))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return e
}

// stop ends containerd after removing what its pods left: the CNI
// bridge, and the cgroups under the benchmark's parent.
func (e *containerdEnv) stop() {
	if e.cmd != nil {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = e.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = e.cmd.Process.Kill()
			<-done
		}
		e.cmd = nil
	}
	if l, err := netlink.LinkByName(e.tag); err == nil {
		_ = netlink.LinkDel(l)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + e.tag)
	for _, d := range dirs {
		removeCgroupTree(d)
	}
	// containerd leaves its overlay mounts under root when killed; a clean
	// stop has none, but make sure.
	for _, m := range linuxtest.MountsUnder(e.dir) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
