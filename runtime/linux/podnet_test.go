package linux

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nft/nettest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/resolv"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/sysctl"
)

// netEnv is a networking test's world: a testEnv on a pod subnet from
// 10.204.0.0/16, plus an "outside" namespace behind a second host bridge
// on 10.214.n.0/24, standing in for the world beyond the uplink. Traffic
// goes only to loopback, to the host's own addresses on these bridges and
// into these namespaces.
type netEnv struct {
	*testEnv
	n        int
	outside  *nettest.NS
	nodeAddr string // the host's address on the outside bridge
	hostPort int32
}

func newNetEnv(t testing.TB) *netEnv {
	t.Helper()
	linuxtest.RequireRoot(t)
	tag := linuxtest.RandomName("pn", 4)
	n := 1 + rand.IntN(250)
	cfg := Config{
		StateRoot:    t.TempDir(),
		RunRoot:      t.TempDir(),
		Bridge:       tag,
		Subnet:       fmt.Sprintf("10.204.%d.0/24", n),
		NetNSPrefix:  tag + "-",
		NFTable:      tag,
		CgroupParent: "pelagos-test-" + tag,
	}
	e := &netEnv{
		testEnv: &testEnv{cfg: cfg, census: linuxtest.Census{
			NetNSPrefix: cfg.NetNSPrefix,
			Bridge:      cfg.Bridge,
			ProcessArg:  cfg.RunRoot,
			EmptyDirs:   []string{cfg.RunRoot, fmt.Sprintf("%s/ipam/10.204.%d.0_24/ip", cfg.StateRoot, n)},
			Owners:      cfg.RunRoot,
		}},
		n:        n,
		nodeAddr: fmt.Sprintf("10.214.%d.1", n),
		// Random, so two agents' tests (other tables) never publish the same port.
		hostPort: int32(20000 + rand.IntN(20000)),
	}
	outBridge, outVeth := tag+"o", tag+"v"
	t.Cleanup(func() {
		e.testEnv.cleanup(t)
		for _, name := range []string{outBridge, outVeth} {
			if l, err := netlink.LinkByName(name); err == nil {
				netlink.LinkDel(l)
			}
		}
	})
	host := nettest.Host(t)
	e.outside = nettest.NewNS(t, "pno-"+tag)
	host.Bridge(t, outBridge, e.nodeAddr+"/24")
	host.Link(t, outVeth, "", outBridge, e.outside, "eth0", fmt.Sprintf("10.214.%d.2/24", n), "")
	return e
}

func (e *netEnv) outsideAddr() string { return fmt.Sprintf("10.214.%d.2", e.n) }

// pod opens a sandbox's netns for the traffic helpers. Containers are not
// needed to prove the network: sockets made inside the pod's netns are
// exactly what a container process there would get.
func pod(t *testing.T, sb *runtime.Sandbox) *nettest.NS {
	t.Helper()
	if sb.NetNSPath == "" {
		t.Fatalf("sandbox %s has no netns", sb.ID)
	}
	return nettest.Open(t, sb.Pod.Name, sb.NetNSPath)
}

func expectAnswer(t *testing.T, from *nettest.NS, network, addr, wantWho, wantSrc string) {
	t.Helper()
	who, seen, err := from.Ask(network, addr)
	if err != nil {
		t.Errorf("%s -> %s %s: %v", from.Name, network, addr, err)
		return
	}
	if who != wantWho || (wantSrc != "" && seen.Addr().String() != wantSrc) {
		t.Errorf("%s -> %s %s: answered by %s seeing %s, want %s seeing %s", from.Name, network, addr, who, seen.Addr(), wantWho, wantSrc)
	}
}

// census of our table: no pod chain and an empty dispatch chain.
func checkNoPodRules(t testing.TB, rt *Runtime) {
	t.Helper()
	got, err := rt.net.nft.Census()
	if err != nil {
		t.Fatal(err)
	}
	for chain, rules := range got {
		if strings.HasPrefix(chain, "pod-") || (chain == "hostports" && rules != 0) {
			t.Errorf("nftables census: table %s still has chain %s with %d rules", rt.cfg.NFTable, chain, rules)
		}
	}
	pods, err := rt.net.nft.Pods()
	if err != nil || len(pods) != 0 {
		t.Errorf("nftables census: published pods %v, %v", pods, err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lookupHosts resolves name the way a container's C library would, from
// the hosts file the container half bind-mounts from the pod files.
func lookupHosts(t *testing.T, podFiles, name string) string {
	t.Helper()
	for _, line := range strings.Split(readFile(t, filepath.Join(podFiles, HostsFile)), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) > 1 && slices.Contains(f[1:], name) {
			return f[0]
		}
	}
	return ""
}

func TestPodNetworking(t *testing.T) {
	e := newNetEnv(t)
	rt := e.open(t)
	ctx := context.Background()
	hp := e.hostPort
	gw := fmt.Sprintf("10.204.%d.1", e.n)

	hostUnpriv, err := sysctl.Read("net.ipv4.ip_unprivileged_port_start", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	hostShm, _ := sysctl.Read("kernel.shm_rmid_forced", "", 0)
	if hostUnpriv == "80" || hostShm == "1" {
		t.Fatalf("host already has the test's sysctl values; the test could not tell pod from host")
	}

	web, err := rt.CreateSandbox(ctx, &runtime.SandboxConfig{
		Pod: runtime.PodKey{Namespace: "shop", Name: "web"}, Hostname: "web-0", Subdomain: "front",
		Ports: []runtime.PortMapping{
			{Protocol: runtime.ProtocolTCP, ContainerPort: 80, HostPort: hp},
			{Protocol: runtime.ProtocolUDP, ContainerPort: 80, HostPort: hp},
		},
		DNS:         runtime.DNSConfig{UseHost: true, Searches: []string{"shop.example"}},
		HostAliases: []runtime.HostAlias{{IP: "192.0.2.250", Hostnames: []string{"legacy-db"}}},
		Sysctls:     map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shm_rmid_forced": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	client, err := rt.CreateSandbox(ctx, &runtime.SandboxConfig{
		Pod: runtime.PodKey{Namespace: "shop", Name: "client"},
		DNS: runtime.DNSConfig{Servers: []string{"192.0.2.53"}, Searches: []string{"x.example"}, Options: []string{"ndots:2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The scenario is a subtest so that its sockets and netns handles,
	// which keep namespaces alive, are closed before the census.
	t.Run("scenario", func(t *testing.T) {
		webNS, clientNS := pod(t, web), pod(t, client)
		webNS.Serve(t, "web", 80)
		clientNS.Serve(t, "client", 80)
		e.outside.Serve(t, "outside", 9000)
		host := nettest.Host(t)
		hpStr := fmt.Sprint(hp)

		t.Run("hostPort from localhost", func(t *testing.T) {
			expectAnswer(t, host, "tcp4", "127.0.0.1:"+hpStr, "web", gw)
			expectAnswer(t, host, "udp4", "127.0.0.1:"+hpStr, "web", gw)
		})
		t.Run("hostPort on the host's own address", func(t *testing.T) {
			expectAnswer(t, host, "tcp4", e.nodeAddr+":"+hpStr, "web", "")
		})
		t.Run("hostPort from outside", func(t *testing.T) {
			expectAnswer(t, e.outside, "tcp4", e.nodeAddr+":"+hpStr, "web", e.outsideAddr())
		})
		t.Run("hostPort hairpin from pods", func(t *testing.T) {
			expectAnswer(t, clientNS, "tcp4", e.nodeAddr+":"+hpStr, "web", gw)
			expectAnswer(t, webNS, "tcp4", e.nodeAddr+":"+hpStr, "web", gw)
		})
		t.Run("egress masquerade", func(t *testing.T) {
			expectAnswer(t, clientNS, "tcp4", e.outsideAddr()+":9000", "outside", e.nodeAddr)
			expectAnswer(t, webNS, "udp4", e.outsideAddr()+":9000", "outside", e.nodeAddr)
		})
		t.Run("pod to pod by IP and by name", func(t *testing.T) {
			expectAnswer(t, clientNS, "tcp4", web.IP+":80", "web", client.IP)
			for _, name := range []string{"web.shop", "web-0.front.shop", "web-0"} {
				ip := lookupHosts(t, rt.volumes().PodFilesDir(client.ID), name)
				if ip != web.IP {
					t.Errorf("client resolves %s to %q, want %s", name, ip, web.IP)
					continue
				}
				expectAnswer(t, clientNS, "tcp4", ip+":80", "web", client.IP)
			}
			// web was created first: its hosts file was updated in place.
			if ip := lookupHosts(t, rt.volumes().PodFilesDir(web.ID), "client.shop"); ip != client.IP {
				t.Errorf("web resolves client.shop to %q, want %s", ip, client.IP)
			}
			if ip := lookupHosts(t, rt.volumes().PodFilesDir(web.ID), "legacy-db"); ip != "192.0.2.250" {
				t.Errorf("hostAlias legacy-db = %q", ip)
			}
			if got := readFile(t, rt.podFile(web.ID, HostnameFile)); got != "web-0\n" {
				t.Errorf("hostname file %q", got)
			}
		})
		t.Run("resolv.conf per dnsPolicy", func(t *testing.T) {
			hostConf, err := resolv.HostConf(resolv.DefaultHost)
			if err != nil {
				t.Fatal(err)
			}
			want := resolv.Conf{Nameservers: hostConf.Nameservers, Searches: append(slices.Clone(hostConf.Searches), "shop.example"), Options: hostConf.Options}
			if got := readFile(t, rt.podFile(web.ID, ResolvConfFile)); got != string(want.Bytes()) {
				t.Errorf("Default policy resolv.conf:\n%s\nwant:\n%s", got, want.Bytes())
			}
			if got := readFile(t, rt.podFile(client.ID, ResolvConfFile)); !strings.HasSuffix(got, "nameserver 192.0.2.53\nsearch x.example\noptions ndots:2\n") ||
				strings.Count(got, "nameserver") != 1 {
				t.Errorf("None policy resolv.conf:\n%s", got)
			}
			for _, id := range []string{web.ID, client.ID} {
				for _, ns := range resolv.Parse([]byte(readFile(t, rt.podFile(id, ResolvConfFile)))).Nameservers {
					if a, err := netip.ParseAddr(ns); err == nil && a.IsLoopback() {
						t.Errorf("sandbox %s got a loopback nameserver %s", id, ns)
					}
				}
			}
		})
		t.Run("sysctls inside the pod only", func(t *testing.T) {
			if v, err := sysctl.Read("net.ipv4.ip_unprivileged_port_start", web.NetNSPath, unix.CLONE_NEWNET); err != nil || v != "80" {
				t.Errorf("pod ip_unprivileged_port_start = %q, %v", v, err)
			}
			if v, err := sysctl.Read("kernel.shm_rmid_forced", fmt.Sprintf("/proc/%d/ns/ipc", web.PausePID), unix.CLONE_NEWIPC); err != nil || v != "1" {
				t.Errorf("pod shm_rmid_forced = %q, %v", v, err)
			}
			if v, _ := sysctl.Read("net.ipv4.ip_unprivileged_port_start", "", 0); v != hostUnpriv {
				t.Errorf("host ip_unprivileged_port_start changed to %s", v)
			}
			if v, _ := sysctl.Read("kernel.shm_rmid_forced", "", 0); v != hostShm {
				t.Errorf("host shm_rmid_forced changed to %s", v)
			}
		})
		t.Run("unsafe and host-namespace sysctls refused", func(t *testing.T) {
			for _, cfg := range []*runtime.SandboxConfig{
				{Pod: runtime.PodKey{Namespace: "shop", Name: "u1"}, Sysctls: map[string]string{"net.core.somaxconn": "1024"}},
				{Pod: runtime.PodKey{Namespace: "shop", Name: "u2"}, Sysctls: map[string]string{"kernel.pid_max": "99999"}},
				{Pod: runtime.PodKey{Namespace: "shop", Name: "u3"}, Namespaces: runtime.NamespaceOptions{Network: runtime.NamespaceNode},
					Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}},
			} {
				if _, err := rt.CreateSandbox(ctx, cfg); !errors.Is(err, runtime.ErrInvalidConfig) {
					t.Errorf("sandbox %s with sysctls %v: %v, want ErrInvalidConfig", cfg.Pod, cfg.Sysctls, err)
				}
			}
			cfg := e.cfg
			cfg.AllowUnsafeSysctls = true
			unsafeRT := openRuntime(t, &cfg)
			sb, err := unsafeRT.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "shop", Name: "u4"},
				Sysctls: map[string]string{"net.core.somaxconn": "1234"}})
			if err != nil {
				t.Fatalf("unsafe sysctl with AllowUnsafeSysctls: %v", err)
			}
			if v, _ := sysctl.Read("net.core.somaxconn", sb.NetNSPath, unix.CLONE_NEWNET); v != "1234" {
				t.Errorf("pod somaxconn = %s", v)
			}
			if err := unsafeRT.RemoveSandbox(ctx, sb.ID); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("hostNetwork sees the host's interfaces", func(t *testing.T) {
			sb, err := rt.CreateSandbox(ctx, &runtime.SandboxConfig{
				Pod:        runtime.PodKey{Namespace: "shop", Name: "hostnet"},
				Namespaces: runtime.NamespaceOptions{Network: runtime.NamespaceNode},
				Ports:      []runtime.PortMapping{{ContainerPort: 9999, HostPort: 9999}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if sb.NetNSPath != "" || sb.IP != "" || sb.VethHost != "" {
				t.Errorf("hostNetwork sandbox got netns %q ip %q veth %q", sb.NetNSPath, sb.IP, sb.VethHost)
			}
			pns := nettest.Open(t, "hostnet", fmt.Sprintf("/proc/%d/ns/net", sb.PausePID))
			names := pns.LinkNames(t)
			if !slices.Contains(names, e.cfg.Bridge) {
				t.Errorf("hostNetwork pod sees %v, not the host's bridge %s", names, e.cfg.Bridge)
			}
			node, _ := os.ReadFile("/etc/hosts")
			if got := readFile(t, rt.podFile(sb.ID, HostsFile)); got != string(resolv.HostNetworkHosts(node, nil)) {
				t.Errorf("hostNetwork hosts file:\n%s", got)
			}
			if pods, _ := rt.net.nft.Pods(); len(pods[sb.ID]) != 0 {
				t.Errorf("hostNetwork pod got DNAT rules: %v", pods[sb.ID])
			}
			if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("two pods claim one hostPort", func(t *testing.T) {
			second := &runtime.SandboxConfig{
				Pod:   runtime.PodKey{Namespace: "shop", Name: "web2"},
				Ports: []runtime.PortMapping{{ContainerPort: 80, HostPort: hp}},
			}
			before := linuxtest.NetNS(e.cfg.NetNSPrefix)
			_, err := rt.CreateSandbox(ctx, second)
			if !errors.Is(err, runtime.ErrConflict) || !strings.Contains(err.Error(), web.ID) || !strings.Contains(err.Error(), "pod shop/web ") {
				t.Fatalf("second claim of hostPort %d: %v, want ErrConflict naming %s", hp, err, web.ID)
			}
			if after := linuxtest.NetNS(e.cfg.NetNSPrefix); !slices.Equal(before, after) {
				t.Errorf("refused sandbox left netns: %v -> %v", before, after)
			}
			if err := rt.RemoveSandbox(ctx, web.ID); err != nil {
				t.Fatal(err)
			}
			sb, err := rt.CreateSandbox(ctx, second)
			if err != nil {
				t.Fatalf("claim after the holder is gone: %v", err)
			}
			pod(t, sb).Serve(t, "web2", 80)
			expectAnswer(t, host, "tcp4", "127.0.0.1:"+hpStr, "web2", gw)
			if ip := lookupHosts(t, rt.volumes().PodFilesDir(client.ID), "web.shop"); ip != "" {
				t.Errorf("removed pod web.shop still resolves to %s", ip)
			}
			if ip := lookupHosts(t, rt.volumes().PodFilesDir(client.ID), "web2.shop"); ip != sb.IP {
				t.Errorf("web2.shop resolves to %q, want %s", ip, sb.IP)
			}
		})

	})

	for _, sb := range must(rt.ListSandboxes(ctx)) {
		if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	checkNoPodRules(t, rt)
	e.check(t)
}

func TestPodNetworkingGCAfterCrash(t *testing.T) {
	e := newNetEnv(t)
	rt := e.open(t)
	ctx := context.Background()
	ports := func(p int32) []runtime.PortMapping { return []runtime.PortMapping{{ContainerPort: 80, HostPort: p}} }

	// A crash right after the ports were published, before the sandbox
	// was ready.
	rt.crashAt = stepPorts
	_, err := rt.CreateSandbox(ctx, &runtime.SandboxConfig{ID: "crashed", Pod: runtime.PodKey{Namespace: "d", Name: "crashed"}, Ports: ports(e.hostPort)})
	if !errors.Is(err, errSimulatedCrash) {
		t.Fatalf("crash: %v", err)
	}
	rt.crashAt = ""
	// A ready sandbox whose record vanished with everything but its rules
	// (a wiped run root with the table intact): only the kernel remembers.
	sb, err := rt.CreateSandbox(ctx, &runtime.SandboxConfig{ID: "lost", Pod: runtime.PodKey{Namespace: "d", Name: "lost"}, Ports: ports(e.hostPort + 1)})
	if err != nil {
		t.Fatal(err)
	}
	killPause(t, rt, sb.ID)
	if err := os.RemoveAll(rt.sandboxDir(sb.ID)); err != nil {
		t.Fatal(err)
	}
	pods, err := rt.net.nft.Pods()
	if err != nil || len(pods) != 2 {
		t.Fatalf("before GC: published %v, %v; want the two sandboxes", pods, err)
	}

	// A restarted agent collects both.
	rt2 := e.open(t)
	rep, err := rt2.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var nftLines int
	for _, l := range rep.Removed {
		if strings.HasPrefix(l, "nftables:") {
			nftLines++
		}
	}
	if nftLines != 1 {
		t.Errorf("GC report %q: want one nftables line (the lost sandbox; the crashed one goes with its record)", rep.Removed)
	}
	checkNoPodRules(t, rt2)
	if _, err := rt2.net.nft.Pods(); err != nil {
		t.Fatal(err)
	}
	// The port is free again.
	if _, err := rt2.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "d", Name: "again"}, Ports: ports(e.hostPort + 1)}); err != nil {
		t.Fatalf("port of the lost sandbox after GC: %v", err)
	}
	for _, sb := range must(rt2.ListSandboxes(ctx)) {
		if err := rt2.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	checkNoPodRules(t, rt2)
	e.check(t)
	if err := rt2.net.nft.Teardown(); err != nil {
		t.Fatal(err)
	}
	if got, err := rt2.net.nft.Census(); err != nil || got != nil {
		t.Errorf("table %s after teardown: %v, %v", e.cfg.NFTable, got, err)
	}
}
