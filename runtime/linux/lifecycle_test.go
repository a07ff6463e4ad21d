package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pelagos-containers/pelagos-agent/reconcile/prober"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

const lifecycleImage = "pelagos.test/busybox-lifecycle:1"

// newLifecycleEnv is a container environment for the issue-8 tests, on a
// /24 of 10.205.0.0/16, with one sandbox made from sbCfg.
func newLifecycleEnv(t *testing.T, sbCfg *runtime.SandboxConfig) *ctrEnv {
	t.Helper()
	e := lifecycleRuntime(t)
	if sbCfg == nil {
		sbCfg = &runtime.SandboxConfig{}
	}
	sbCfg.Pod = runtime.PodKey{Namespace: "default", Name: "life-" + e.cfg.Bridge}
	var err error
	e.sb, err = e.rt.CreateSandbox(context.Background(), sbCfg)
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	return e
}

// lifecycleRuntime is the environment without a sandbox: runtime, image
// store with busybox, cgroup parent, census and cleanup.
func lifecycleRuntime(t *testing.T) *ctrEnv {
	t.Helper()
	linuxtest.RequireRoot(t)
	imagetest.RequireBusybox(t)
	tag := linuxtest.RandomName("pl", 4)
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
	r := openRuntime(t, &cfg)
	store, err := image.Open(image.Options{Root: cfg.StateRoot})
	if err != nil {
		t.Fatal(err)
	}
	r.SetImageStore(store)
	imagetest.ImportInto(t, store, lifecycleImage, imagetest.Busybox(t))
	cg, err := cgroups.New(cfg.CgroupParent)
	if err != nil {
		t.Fatal(err)
	}
	e := &ctrEnv{cfg: cfg, rt: r, store: store, cg: cg, census: linuxtest.Census{
		NetNSPrefix: cfg.NetNSPrefix,
		Bridge:      cfg.Bridge,
		ProcessArg:  cfg.RunRoot,
		MountDirs:   []string{cfg.RunRoot, cfg.StateRoot + "/containers", cfg.StateRoot + "/volumes"},
		EmptyDirs:   []string{cfg.RunRoot, cfg.StateRoot + "/containers", cfg.StateRoot + "/volumes"},
		Owners:      cfg.RunRoot,
	}}
	t.Cleanup(func() {
		ctx := context.Background()
		if r, err := New(cfg); err == nil {
			for _, sb := range must(r.ListSandboxes(ctx)) {
				r.RemoveSandbox(ctx, sb.ID)
			}
			r.GC(ctx)
			r.net.nft.Teardown()
			r.Close()
		}
		if l, err := netlink.LinkByName(cfg.Bridge); err == nil {
			netlink.LinkDel(l)
		}
		if err := cg.RemoveParent(); err != nil {
			t.Errorf("census: cgroup parent %s: %v", cg.Parent(), err)
		}
	})
	return e
}

func (e *ctrEnv) lcConfig(name string, mounts []runtime.Mount, cmd ...string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{SandboxID: e.sb.ID, Name: name, Image: lifecycleImage, Command: cmd, Mounts: mounts}
}

// sh runs a shell command in a running container and returns its exit code
// and output.
func (e *ctrEnv) sh(t *testing.T, id, script string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code, err := e.rt.Exec(context.Background(), id, runtime.ExecOptions{Cmd: []string{"/bin/sh", "-c", script}, Stdout: &out, Stderr: &out, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return code, out.String()
}

func (e *ctrEnv) start(t *testing.T, cfg *runtime.ContainerConfig) *runtime.Container {
	t.Helper()
	c, err := e.rt.StartContainer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	if c.State != runtime.ContainerRunning {
		t.Fatalf("container %s is %s", cfg.Name, c.State)
	}
	return c
}

func (e *ctrEnv) stopRemove(t *testing.T, id string) {
	t.Helper()
	if err := e.rt.StopContainer(context.Background(), id, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.RemoveContainer(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func TestLifecycleVolumesInRealContainers(t *testing.T) {
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "host.txt"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := "pa55-w0rd-in-a-file"
	e := newLifecycleEnv(t, &runtime.SandboxConfig{Volumes: []runtime.VolumeConfig{
		{Name: "data", EmptyDir: &runtime.EmptyDirVolume{}},
		{Name: "mem", EmptyDir: &runtime.EmptyDirVolume{Medium: "Memory", SizeLimit: 1 << 20}},
		{Name: "host", HostPath: &runtime.HostPathVolume{Path: host, Type: "Directory"}},
		{Name: "cfg", Files: &runtime.ProjectedVolume{Files: []runtime.ProjectedFile{{Path: "app.conf", Data: []byte("v1"), Mode: 0o644}}}},
		{Name: "sec", Files: &runtime.ProjectedVolume{Sensitive: true, Files: []runtime.ProjectedFile{{Path: "password", Data: []byte(secret), Mode: 0o600}}}},
	}})
	mounts := []runtime.Mount{
		{Volume: "data", ContainerPath: "/data"},
		{Volume: "mem", ContainerPath: "/mem"},
		{Volume: "host", ContainerPath: "/host", ReadOnly: true},
		{Volume: "cfg", ContainerPath: "/etc/app"},
		{Volume: "sec", ContainerPath: "/run/secrets/app"},
	}

	// A writer shares /data with a reader; it also plants a symlink to the
	// host's root, as a hostile container would.
	w, out := e.run(t, e.lcConfig("writer", mounts[:2], "/bin/sh", "-c", "echo hello > /data/shared && echo fast > /mem/m && ln -s / /data/evil && ln -s ../../../../.. /data/up"))
	if w.ExitCode != 0 {
		t.Fatalf("writer exited %d: %s", w.ExitCode, out)
	}
	if err := e.rt.RemoveContainer(context.Background(), w.ID); err != nil {
		t.Fatal(err)
	}
	reader := e.start(t, e.lcConfig("reader", mounts, "/bin/sleep", "3600"))
	for script, want := range map[string]string{
		"cat /data/shared":                            "hello\n",
		"cat /mem/m":                                  "fast\n",
		"cat /host/host.txt":                          "from-host",
		"cat /etc/app/app.conf":                       "v1",
		"cat /run/secrets/app/password":               secret,
		"stat -c %a /run/secrets/app/..data/password": "600\n",
	} {
		if code, got := e.sh(t, reader.ID, script); code != 0 || got != want {
			t.Errorf("%s: exit %d, %q, want %q", script, code, got, want)
		}
	}
	// Read-only mounts refuse writes: the hostPath by request, ConfigMap and
	// Secret always.
	for _, p := range []string{"/host/new", "/etc/app/new", "/run/secrets/app/new"} {
		if code, got := e.sh(t, reader.ID, "touch "+p); code == 0 {
			t.Errorf("touch %s succeeded (%s): the mount must be read-only", p, got)
		}
	}
	if _, err := os.Stat(filepath.Join(host, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a write reached the read-only hostPath: %v", err)
	}
	// The Memory emptyDir's size limit holds inside the container.
	if code, _ := e.sh(t, reader.ID, "dd if=/dev/zero of=/mem/big bs=1024 count=2048"); code == 0 {
		t.Errorf("wrote 2 MiB into a 1 MiB memory emptyDir")
	}

	// A ConfigMap edit reaches the running container's file.
	upd := runtime.VolumeConfig{Name: "cfg", Files: &runtime.ProjectedVolume{Files: []runtime.ProjectedFile{{Path: "app.conf", Data: []byte("v2"), Mode: 0o644}}}}
	if err := e.rt.UpdateVolume(context.Background(), e.sb.ID, &upd); err != nil {
		t.Fatal(err)
	}
	if code, got := e.sh(t, reader.ID, "cat /etc/app/app.conf"); code != 0 || got != "v2" {
		t.Fatalf("after the update the container reads %q (exit %d), want v2", got, code)
	}

	// The reader restarts (a new container of the same name): /data keeps
	// what the writer left.
	e.stopRemove(t, reader.ID)
	cfg := e.lcConfig("reader", mounts, "/bin/sleep", "3600")
	cfg.Attempt = 1
	reader = e.start(t, cfg)
	if code, got := e.sh(t, reader.ID, "cat /data/shared /mem/m"); code != 0 || got != "hello\nfast\n" {
		t.Fatalf("after a restart /data and /mem hold %q (exit %d)", got, code)
	}
	e.stopRemove(t, reader.ID)

	// subPath: a plain one works (and is created), escapes are refused.
	sub := e.start(t, e.lcConfig("sub", []runtime.Mount{{Volume: "data", ContainerPath: "/work", SubPath: "app/work"}}, "/bin/sleep", "3600"))
	if code, got := e.sh(t, sub.ID, "echo in-sub > /work/f && ls /work"); code != 0 || got != "f\n" {
		t.Fatalf("subPath mount: exit %d %q", code, got)
	}
	if b, err := os.ReadFile(filepath.Join(e.rt.volumes().Dir(e.sb.ID, "data"), "app/work/f")); err != nil || string(b) != "in-sub\n" {
		t.Fatalf("subPath write not in the volume: %q %v", b, err)
	}
	e.stopRemove(t, sub.ID)
	for _, sp := range []string{"evil", "evil/etc", "up/etc", "../../etc", "/etc"} {
		c, err := e.rt.StartContainer(context.Background(), e.lcConfig("esc", []runtime.Mount{{Volume: "data", ContainerPath: "/x", SubPath: sp}}, "/bin/true"))
		if err == nil {
			e.stopRemove(t, c.ID)
			t.Errorf("subPath %q escaped the volume", sp)
			continue
		}
		if !errors.Is(err, volume.ErrEscape) && !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("subPath %q: %v, want an escape refusal", sp, err)
		}
	}
	if mps := linuxtest.MountsUnder(filepath.Join(e.cfg.RunRoot, "volume-subpaths")); len(mps) != 0 {
		t.Errorf("subPath mounts left after their containers: %v", mps)
	}

	// Removal takes every volume (tmpfs included) and leaves the hostPath.
	volDir := e.rt.volumes().Dir(e.sb.ID, "")
	e.check(t)
	if _, err := os.Stat(volDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("volumes left: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(host, "host.txt")); err != nil || string(b) != "from-host" {
		t.Fatalf("hostPath content changed: %q %v", b, err)
	}
}

func TestLifecycleProbeActionsAgainstRealContainer(t *testing.T) {
	e := newLifecycleEnv(t, nil)
	c := e.start(t, e.lcConfig("web", nil, "/bin/sh", "-c",
		"mkdir -p /www && echo ok > /www/healthz && httpd -p 8080 -h /www && exec sleep 3600"))
	target := &prober.Target{Namespace: "default", Pod: e.sb.Pod.Name, ContainerName: "web", ContainerID: c.ID,
		PodIP: prober.PodIP(e.sb), StartedAt: c.StartedAt, Ports: map[string]int32{"http": 8080}}
	if !strings.HasPrefix(target.PodIP, "10.205.") {
		t.Fatalf("pod IP %q is outside this test's range", target.PodIP)
	}
	run := func(p *prober.Probe) (prober.Result, string) {
		t.Helper()
		if p.Timeout == 0 {
			p.Timeout = 20 * time.Second
		}
		res, msg, err := prober.Run(context.Background(), e.rt, target, p)
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		return res, msg
	}
	httpGet := func(path string) *prober.Probe {
		return &prober.Probe{HTTPGet: &prober.HTTPGetAction{Path: path, Port: prober.Port{Name: "http"}}}
	}
	// httpd starts in the background: wait until it listens, by the probe
	// itself, bounded by a generous deadline.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if res, _ := run(&prober.Probe{TCPSocket: &prober.TCPSocketAction{Port: prober.Port{Number: 8080}}}); res == prober.Success {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("httpd in the container never listened")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cases := []struct {
		name string
		p    *prober.Probe
		want prober.Result
	}{
		{"httpGet 200", httpGet("/healthz"), prober.Success},
		{"httpGet 404", httpGet("/missing"), prober.Failure},
		{"tcpSocket open", &prober.Probe{TCPSocket: &prober.TCPSocketAction{Port: prober.Port{Name: "http"}}}, prober.Success},
		{"tcpSocket closed", &prober.Probe{TCPSocket: &prober.TCPSocketAction{Port: prober.Port{Number: 8081}}}, prober.Failure},
		{"grpc on a non-gRPC port", &prober.Probe{GRPC: &prober.GRPCAction{Port: 8080}}, prober.Failure},
		{"exec ok", &prober.Probe{Exec: &prober.ExecAction{Command: []string{"test", "-f", "/www/healthz"}}}, prober.Success},
		{"exec fails", &prober.Probe{Exec: &prober.ExecAction{Command: []string{"/bin/sh", "-c", "echo sick; exit 2"}}}, prober.Failure},
		{"exec missing binary", &prober.Probe{Exec: &prober.ExecAction{Command: []string{"/no/such/probe"}}}, prober.Failure},
		{"exec timeout", &prober.Probe{Exec: &prober.ExecAction{Command: []string{"sleep", "30"}}, Timeout: 300 * time.Millisecond}, prober.Failure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if res, msg := run(tc.p); res != tc.want {
				t.Fatalf("%v (%s), want %v", res, msg, tc.want)
			}
		})
	}
	if res, msg := run(&prober.Probe{Exec: &prober.ExecAction{Command: []string{"/bin/sh", "-c", "echo sick; exit 2"}}}); res != prober.Failure || msg != "sick" {
		t.Fatalf("exec failure message %q", msg)
	}
	// The timed-out exec was killed: nothing of it is left in the container.
	if code, got := e.sh(t, c.ID, "ps -o args | grep -c '^sleep 30' || true"); code != 0 || strings.TrimSpace(got) != "0" {
		t.Errorf("timed-out exec probe left processes: %q", got)
	}

	// Liveness and readiness through the manager, with state changes driven
	// from inside the container.
	updates := make(chan prober.Update, 16)
	m, err := prober.NewManager(prober.Options{Exec: e.rt, OnUpdate: func(u prober.Update) { updates <- u }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fast := func(p *prober.Probe) *prober.Probe {
		p.Period, p.Timeout, p.FailureThreshold = 100*time.Millisecond, 20*time.Second, 2
		return p
	}
	if err := m.Add(*target, prober.Probes{
		Readiness: fast(httpGet("/healthz")),
		Liveness:  fast(&prober.Probe{TCPSocket: &prober.TCPSocketAction{Port: prober.Port{Name: "http"}}}),
	}); err != nil {
		t.Fatal(err)
	}
	next := func() prober.Update {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-time.After(30 * time.Second):
			t.Fatal("no probe update within 30s")
			return prober.Update{}
		}
	}
	if u := next(); u.Kind != prober.Readiness || u.Result != prober.Success {
		t.Fatalf("first update %v, want readiness success", u)
	}
	e.sh(t, c.ID, "rm /www/healthz")
	if u := next(); u.Kind != prober.Readiness || u.Result != prober.Failure {
		t.Fatalf("update %v, want readiness failure", u)
	}
	if st, _ := m.Status(c.ID); st.Ready {
		t.Fatal("still ready after the readiness probe failed")
	}
	e.sh(t, c.ID, "killall httpd")
	u := next()
	if u.Kind != prober.Liveness || u.Result != prober.Failure || !u.Restart {
		t.Fatalf("update %v, want a liveness failure asking for a restart", u)
	}
	m.Remove(c.ID)
	e.stopRemove(t, c.ID)
	e.check(t)
}
