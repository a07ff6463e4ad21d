package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
)

const httpdImage = "pelagos.test/busybox-httpd:1"

// httpGet fetches url from the host. The timeout only bounds a broken
// test; no speed is asserted.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestPodNetworkingBusyboxHTTPD is the user's story end to end through real
// containers: busybox httpd in a pod with a hostPort, reached from the
// host on 127.0.0.1 and on the host's own address, and from a container in
// another pod by pod name (through the /etc/hosts the container sees) and
// through the host address (hairpin); a second pod claiming the port is
// refused until the first is gone; nothing is left afterwards.
func TestPodNetworkingBusyboxHTTPD(t *testing.T) {
	e := newNetEnv(t)
	e.cfg.CgroupParent = "pelagos-test-" + e.cfg.Bridge
	rt := e.open(t)
	ctx := context.Background()
	store, err := image.Open(image.Options{Root: e.cfg.StateRoot})
	if err != nil {
		t.Fatal(err)
	}
	rt.SetImageStore(store)
	img := imagetest.WithFiles(t, imagetest.Busybox(t),
		imagetest.HostFile{Path: "/www/index.html", Data: []byte("hello from web\n")})
	imagetest.ImportInto(t, store, httpdImage, img)
	cg, err := cgroups.New(e.cfg.CgroupParent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Runs before newNetEnv's cleanup: a failed test's pods must go
		// before their cgroup parent can.
		for _, sb := range must(rt.ListSandboxes(context.Background())) {
			rt.RemoveSandbox(context.Background(), sb.ID)
		}
		if err := cg.RemoveParent(); err != nil {
			t.Errorf("census: cgroup parent %s: %v", cg.Parent(), err)
		}
	})
	e.census.MountDirs = []string{e.cfg.RunRoot, e.cfg.StateRoot + "/containers"}
	e.census.EmptyDirs = append(e.census.EmptyDirs, e.cfg.StateRoot+"/containers")
	hp := fmt.Sprint(e.hostPort)

	webCfg := &runtime.SandboxConfig{
		Pod:   runtime.PodKey{Namespace: "shop", Name: "web"},
		Ports: []runtime.PortMapping{{Protocol: runtime.ProtocolTCP, ContainerPort: 80, HostPort: e.hostPort}},
		DNS:   runtime.DNSConfig{UseHost: true},
	}
	web, err := rt.CreateSandbox(ctx, webCfg)
	if err != nil {
		t.Fatal(err)
	}
	httpd, err := rt.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: web.ID, Name: "httpd", Image: httpdImage,
		Command: []string{"/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := rt.CreateSandbox(ctx, &runtime.SandboxConfig{
		Pod: runtime.PodKey{Namespace: "shop", Name: "client"},
		DNS: runtime.DNSConfig{Servers: []string{"192.0.2.53"}, Searches: []string{"shop.example"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ce := &ctrEnv{cfg: e.cfg, rt: rt, store: store, sb: client, cg: cg}

	// httpd starts asynchronously; the first request may race its bind, so
	// a few attempts are allowed (a bound on a broken test, not a timing).
	var body string
	for i := 0; i < 50; i++ {
		if body, err = httpGet("http://127.0.0.1:" + hp + "/"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if body != "hello from web\n" {
		t.Fatalf("host -> 127.0.0.1:%s: %q, %v", hp, body, err)
	}
	if body, err := httpGet("http://" + e.nodeAddr + ":" + hp + "/"); body != "hello from web\n" {
		t.Errorf("host -> %s:%s: %q, %v", e.nodeAddr, hp, body, err)
	}

	script := strings.Join([]string{
		"cat /etc/resolv.conf",
		"echo ---",
		"wget -q -O - http://web.shop/ || echo byname-failed",
		"wget -q -O - http://" + web.IP + "/ || echo byip-failed",
		"wget -q -O - http://" + e.nodeAddr + ":" + hp + "/ || echo hairpin-failed",
		"hostname",
	}, "; ")
	c, out := ce.run(t, &runtime.ContainerConfig{SandboxID: client.ID, Name: "wget", Image: httpdImage,
		Command: []string{"/bin/sh", "-c", script}})
	if c.ExitCode != 0 {
		t.Errorf("client script exit %d:\n%s", c.ExitCode, out)
	}
	resolvConf, rest, _ := strings.Cut(out, "---\n")
	if strings.Count(rest, "hello from web\n") != 3 || strings.Contains(rest, "failed") {
		t.Errorf("client by name, by IP and by hairpin:\n%s", rest)
	}
	if !strings.Contains(resolvConf, "nameserver 192.0.2.53\nsearch shop.example\n") || strings.Contains(resolvConf, "127.0.0") {
		t.Errorf("client's /etc/resolv.conf:\n%s", resolvConf)
	}
	if !strings.HasSuffix(rest, "client\n") {
		t.Errorf("client's hostname: %q", rest)
	}
	if err := rt.RemoveContainer(ctx, c.ID); err != nil {
		t.Fatal(err)
	}

	// A second web server wants the same port: refused, then admitted once
	// the first pod is gone.
	second := &runtime.SandboxConfig{
		Pod:   runtime.PodKey{Namespace: "shop", Name: "web-b"},
		Ports: []runtime.PortMapping{{Protocol: runtime.ProtocolTCP, ContainerPort: 80, HostPort: e.hostPort}},
	}
	if _, err := rt.CreateSandbox(ctx, second); !errors.Is(err, runtime.ErrConflict) {
		t.Fatalf("second pod on hostPort %s: %v, want ErrConflict", hp, err)
	}
	if err := rt.StopContainer(ctx, httpd.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemoveSandbox(ctx, web.ID); err != nil {
		t.Fatal(err)
	}
	webB, err := rt.CreateSandbox(ctx, second)
	if err != nil {
		t.Fatalf("second pod after the first is gone: %v", err)
	}

	for _, sb := range []*runtime.Sandbox{webB, client} {
		if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	checkNoPodRules(t, rt)
	e.check(t)
	if kids, _ := cg.Children(); len(kids) != 0 {
		t.Errorf("census: cgroups left below %s: %v", cg.Parent(), kids)
	}
}
