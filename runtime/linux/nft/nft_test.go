package nft

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nft/nettest"
)

func TestMappingCommentRoundTrip(t *testing.T) {
	for _, p := range []Mapping{
		{Protocol: runtime.ProtocolTCP, HostPort: 8080, PodIP: netip.MustParseAddr("10.204.0.2"), ContainerPort: 80},
		{Protocol: runtime.ProtocolUDP, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 53, PodIP: netip.MustParseAddr("10.204.0.9"), ContainerPort: 5353},
	} {
		id, got, ok := decodeMapping(encodeMapping("abc123", p))
		if !ok || id != "abc123" || got != p {
			t.Errorf("round trip of %v: got %q %v %v", p, id, got, ok)
		}
	}
	for _, bad := range []string{"", "pelagos sandbox=x", "pelagos sandbox=x port=TCP * 80", "pelagos sandbox=x port=TCP * 99999 10.0.0.1 80"} {
		if _, _, ok := decodeMapping(bad); ok {
			t.Errorf("decodeMapping(%q) accepted", bad)
		}
	}
}

func TestOverlaps(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.1")
	b := netip.MustParseAddr("192.0.2.2")
	tcp := func(h netip.Addr, port uint16) Mapping {
		return Mapping{Protocol: runtime.ProtocolTCP, HostIP: h, HostPort: port}
	}
	tests := []struct {
		p, q Mapping
		want bool
	}{
		{tcp(netip.Addr{}, 80), tcp(netip.Addr{}, 80), true},
		{tcp(netip.Addr{}, 80), tcp(a, 80), true},
		{tcp(a, 80), tcp(a, 80), true},
		{tcp(a, 80), tcp(b, 80), false},
		{tcp(a, 80), tcp(a, 81), false},
		{tcp(a, 80), Mapping{Protocol: runtime.ProtocolUDP, HostIP: a, HostPort: 80}, false},
	}
	for _, tc := range tests {
		if got := tc.p.overlaps(tc.q); got != tc.want {
			t.Errorf("%v overlaps %v = %v, want %v", tc.p, tc.q, got, tc.want)
		}
	}
}

func TestMappingsValidation(t *testing.T) {
	m, err := New(Config{Table: "t", Bridge: "br", Subnet: netip.MustParsePrefix("10.204.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	pod := netip.MustParseAddr("10.204.0.2")
	got, err := m.Mappings(pod, []runtime.PortMapping{
		{ContainerPort: 80},                 // documents only
		{ContainerPort: 80, HostPort: 8080}, // protocol defaults to TCP
		{Protocol: runtime.ProtocolUDP, ContainerPort: 53, HostPort: 5353, HostIP: "127.0.0.1"},
		{Protocol: runtime.ProtocolTCP, ContainerPort: 81, HostPort: 8081, HostIP: "0.0.0.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{
		{Protocol: runtime.ProtocolTCP, HostPort: 8080, PodIP: pod, ContainerPort: 80},
		{Protocol: runtime.ProtocolUDP, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, PodIP: pod, ContainerPort: 53},
		{Protocol: runtime.ProtocolTCP, HostPort: 8081, PodIP: pod, ContainerPort: 81},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("Mappings (-want +got):\n%s", d)
	}
	for _, bad := range [][]runtime.PortMapping{
		{{Protocol: runtime.ProtocolSCTP, ContainerPort: 1, HostPort: 1}},
		{{ContainerPort: 0, HostPort: 80}},
		{{ContainerPort: 80, HostPort: 70000}},
		{{ContainerPort: 80, HostPort: 80, HostIP: "203.0.113.77"}}, // not ours
		{{ContainerPort: 80, HostPort: 80, HostIP: "nope"}},
		{{ContainerPort: 80, HostPort: 80}, {ContainerPort: 81, HostPort: 80, HostIP: "127.0.0.1"}},
	} {
		if _, err := m.Mappings(pod, bad); !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("Mappings(%+v) = %v, want ErrInvalidConfig", bad, err)
		}
	}
}

func TestPodChainNames(t *testing.T) {
	if got := PodChain("abc"); got != "pod-abc" {
		t.Errorf("PodChain(abc) = %q", got)
	}
	long := strings.Repeat("x", 200)
	if got := PodChain(long); len(got) != len("pod-")+32 || got == PodChain(long+"y") {
		t.Errorf("PodChain(long) = %q: want a fixed-length hash name", got)
	}
	if got := PodChain("ns/with spaces"); strings.ContainsAny(got, "/ ") {
		t.Errorf("PodChain kept user text: %q", got)
	}
}

// node is a whole test node inside namespaces: a "node" namespace with a pod
// bridge (10.204.S.0/24), two pods on it, and an "outside" namespace reached
// over a veth (10.214.S.0/24) standing in for the world beyond the uplink.
type node struct {
	node, podA, podB, outside *nettest.NS
	bridge                    string
	s                         int
	mgr                       *Manager
}

func (n *node) ip(net string, host int) string { return fmt.Sprintf("10.%s.%d.%d", net, n.s, host) }

func newNode(t testing.TB) *node {
	t.Helper()
	linuxtest.RequireRoot(t)
	tag := fmt.Sprintf("%05x", rand.IntN(1<<20))
	n := &node{s: 1 + rand.IntN(250), bridge: "pnbr" + tag}
	n.node = nettest.NewNS(t, "pnft-node-"+tag)
	n.podA = nettest.NewNS(t, "pnft-a-"+tag)
	n.podB = nettest.NewNS(t, "pnft-b-"+tag)
	n.outside = nettest.NewNS(t, "pnft-out-"+tag)
	n.node.Bridge(t, n.bridge, n.ip("204", 1)+"/24")
	n.node.Link(t, "pnva"+tag, "", n.bridge, n.podA, "eth0", n.ip("204", 2)+"/24", n.ip("204", 1))
	n.node.Link(t, "pnvb"+tag, "", n.bridge, n.podB, "eth0", n.ip("204", 3)+"/24", n.ip("204", 1))
	n.node.Link(t, "pnup"+tag, n.ip("214", 1)+"/24", "", n.outside, "eth0", n.ip("214", 2)+"/24", "")
	mgr, err := New(Config{
		Table:     "pnft" + tag,
		Bridge:    n.bridge,
		Subnet:    netip.MustParsePrefix(n.ip("204", 0) + "/24"),
		NetNSPath: n.node.Path,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	n.mgr = mgr
	if err := mgr.Setup(); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) publish(t *testing.T, id, podIP string, ports ...runtime.PortMapping) error {
	t.Helper()
	maps, err := n.mgr.Mappings(netip.MustParseAddr(podIP), ports)
	if err != nil {
		t.Fatal(err)
	}
	return n.mgr.AddPod(id, maps)
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

func expectNoAnswer(t *testing.T, from *nettest.NS, network, addr string) {
	t.Helper()
	if who, _, err := from.Ask(network, addr); err == nil {
		t.Errorf("%s -> %s %s: answered by %s, want nothing", from.Name, network, addr, who)
	}
}

func TestPublishedPortsAndEgress(t *testing.T) {
	n := newNode(t)
	n.podA.Serve(t, "podA", 80)
	n.podB.Serve(t, "podB", 80)
	n.outside.Serve(t, "outside", 9000)
	nodeAddr := n.ip("214", 1)

	if err := n.publish(t, "sbA", n.ip("204", 2),
		runtime.PortMapping{Protocol: runtime.ProtocolTCP, ContainerPort: 80, HostPort: 8080},
		runtime.PortMapping{Protocol: runtime.ProtocolUDP, ContainerPort: 80, HostPort: 8080},
		runtime.PortMapping{Protocol: runtime.ProtocolTCP, ContainerPort: 80, HostPort: 8081, HostIP: "127.0.0.1"},
	); err != nil {
		t.Fatal(err)
	}
	bridgeIP := n.ip("204", 1)

	t.Run("localhost", func(t *testing.T) {
		// The pod sees the bridge address: 127.0.0.1 was masqueraded.
		expectAnswer(t, n.node, "tcp4", "127.0.0.1:8080", "podA", bridgeIP)
		expectAnswer(t, n.node, "udp4", "127.0.0.1:8080", "podA", bridgeIP)
		expectAnswer(t, n.node, "tcp4", "127.0.0.1:8081", "podA", bridgeIP)
	})
	t.Run("node address from the node", func(t *testing.T) {
		expectAnswer(t, n.node, "tcp4", nodeAddr+":8080", "podA", "")
		// hostIP 127.0.0.1 publishes on loopback only.
		expectNoAnswer(t, n.node, "tcp4", nodeAddr+":8081")
	})
	t.Run("node address from outside", func(t *testing.T) {
		// No masquerade for outside clients: the pod sees the real source.
		expectAnswer(t, n.outside, "tcp4", nodeAddr+":8080", "podA", n.ip("214", 2))
		expectAnswer(t, n.outside, "udp4", nodeAddr+":8080", "podA", n.ip("214", 2))
	})
	t.Run("hairpin", func(t *testing.T) {
		expectAnswer(t, n.podB, "tcp4", nodeAddr+":8080", "podA", bridgeIP)
		expectAnswer(t, n.podA, "tcp4", nodeAddr+":8080", "podA", bridgeIP)
		expectAnswer(t, n.podB, "udp4", nodeAddr+":8080", "podA", bridgeIP)
	})
	t.Run("egress masquerade", func(t *testing.T) {
		expectAnswer(t, n.podA, "tcp4", n.ip("214", 2)+":9000", "outside", nodeAddr)
		expectAnswer(t, n.podB, "udp4", n.ip("214", 2)+":9000", "outside", nodeAddr)
	})
	t.Run("pod to pod keeps addresses", func(t *testing.T) {
		expectAnswer(t, n.podB, "tcp4", n.ip("204", 2)+":80", "podA", n.ip("204", 3))
	})
	t.Run("conflict and release", func(t *testing.T) {
		err := n.publish(t, "sbB", n.ip("204", 3), runtime.PortMapping{ContainerPort: 80, HostPort: 8080})
		if !errors.Is(err, runtime.ErrConflict) || !strings.Contains(err.Error(), "sbA") {
			t.Fatalf("second claim of 8080/TCP: %v, want ErrConflict naming sbA", err)
		}
		// Check refuses before a pod has an address.
		early, err := n.mgr.Mappings(netip.Addr{}, []runtime.PortMapping{{ContainerPort: 80, HostPort: 8080}})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.mgr.Check("sbB", early); !errors.Is(err, runtime.ErrConflict) {
			t.Fatalf("Check of 8080/TCP: %v, want ErrConflict", err)
		}
		if err := n.mgr.Check("sbA", early); err != nil {
			t.Fatalf("Check of a pod's own port: %v", err)
		}
		// A specific address overlaps the wildcard too.
		err = n.publish(t, "sbB", n.ip("204", 3), runtime.PortMapping{ContainerPort: 80, HostPort: 8081, HostIP: "127.0.0.1"})
		if !errors.Is(err, runtime.ErrConflict) {
			t.Fatalf("second claim of 127.0.0.1:8081: %v, want ErrConflict", err)
		}
		// Re-adding A's mappings is a no-op, not a conflict with itself.
		if err := n.publish(t, "sbA", n.ip("204", 2),
			runtime.PortMapping{Protocol: runtime.ProtocolTCP, ContainerPort: 80, HostPort: 8080},
			runtime.PortMapping{Protocol: runtime.ProtocolUDP, ContainerPort: 80, HostPort: 8080},
			runtime.PortMapping{Protocol: runtime.ProtocolTCP, ContainerPort: 80, HostPort: 8081, HostIP: "127.0.0.1"},
		); err != nil {
			t.Fatalf("re-add sbA: %v", err)
		}
		if err := n.mgr.RemovePod("sbA"); err != nil {
			t.Fatal(err)
		}
		if err := n.mgr.RemovePod("sbA"); err != nil {
			t.Fatalf("second remove: %v", err)
		}
		expectNoAnswer(t, n.node, "tcp4", "127.0.0.1:8080")
		if err := n.publish(t, "sbB", n.ip("204", 3), runtime.PortMapping{ContainerPort: 80, HostPort: 8080}); err != nil {
			t.Fatalf("claim after release: %v", err)
		}
		expectAnswer(t, n.node, "tcp4", "127.0.0.1:8080", "podB", bridgeIP)
		pods, err := n.mgr.Pods()
		if err != nil {
			t.Fatal(err)
		}
		if len(pods) != 1 || len(pods["sbB"]) != 1 {
			t.Errorf("Pods() = %v, want only sbB with one mapping", pods)
		}
	})

	t.Run("replace mappings of one pod", func(t *testing.T) {
		if err := n.publish(t, "sbB", n.ip("204", 3), runtime.PortMapping{ContainerPort: 80, HostPort: 8082}); err != nil {
			t.Fatal(err)
		}
		expectNoAnswer(t, n.node, "tcp4", "127.0.0.1:8080")
		expectAnswer(t, n.node, "tcp4", "127.0.0.1:8082", "podB", bridgeIP)
	})

	t.Run("remove leaves only base chains", func(t *testing.T) {
		if err := n.mgr.RemovePod("sbB"); err != nil {
			t.Fatal(err)
		}
		got, err := n.mgr.Census()
		if err != nil {
			t.Fatal(err)
		}
		want := baseCensus()
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("census after removal (-want +got):\n%s", d)
		}
	})

	if err := n.mgr.Teardown(); err != nil {
		t.Fatal(err)
	}
	if got, err := n.mgr.Census(); err != nil || got != nil {
		t.Errorf("census after teardown: %v %v, want no table", got, err)
	}
}

// baseCensus is the table with no pods: base chains and their fixed rules.
func baseCensus() map[string]int {
	return map[string]int{
		chainPrerouting: 1, chainOutput: 1, chainPostrouting: 3,
		chainForward: 3, chainInput: 1, chainHostports: 0,
	}
}

func TestGCAfterCrash(t *testing.T) {
	n := newNode(t)
	for i, id := range []string{"live", "gone1", "gone2"} {
		if err := n.publish(t, id, n.ip("204", 2), runtime.PortMapping{ContainerPort: 80, HostPort: int32(9100 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	// A crash: the Manager goes away without removing anything; a new one
	// (a restarted agent) finds the rules in the kernel.
	n.mgr.Close()
	mgr, err := New(n.mgr.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	if err := mgr.Setup(); err != nil {
		t.Fatal(err)
	}
	pods, err := mgr.Pods()
	if err != nil || len(pods) != 3 {
		t.Fatalf("Pods after restart = %v, %v: want 3 pods kept by Setup", pods, err)
	}
	removed, err := mgr.GC(func(id string) bool { return id == "live" })
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("GC removed %q, want the two gone sandboxes", removed)
	}
	got, err := mgr.Census()
	if err != nil {
		t.Fatal(err)
	}
	want := baseCensus()
	want[chainHostports] = 1
	want[PodChain("live")] = 1
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("census after GC (-want +got):\n%s", d)
	}
	if again, err := mgr.GC(func(id string) bool { return id == "live" }); err != nil || len(again) != 0 {
		t.Errorf("second GC = %v, %v: want nothing", again, err)
	}
	if err := mgr.Teardown(); err != nil {
		t.Fatal(err)
	}
	if got, err := mgr.Census(); err != nil || got != nil {
		t.Errorf("census after teardown: %v %v", got, err)
	}
}

func TestUDPPortChangesOwnerForAnOngoingFlow(t *testing.T) {
	n := newNode(t)
	n.podA.Serve(t, "podA", 53)
	n.podB.Serve(t, "podB", 53)
	udp := runtime.PortMapping{Protocol: runtime.ProtocolUDP, ContainerPort: 53, HostPort: 5353}
	if err := n.publish(t, "sbA", n.ip("204", 2), udp); err != nil {
		t.Fatal(err)
	}
	target := n.ip("214", 1) + ":5353"
	// One client flow, same source port throughout, as a chatty UDP client.
	expectAnswerFrom := func(want string) {
		t.Helper()
		who, _, err := n.outside.AskFrom("udp4", ":40053", target)
		if err != nil || who != want {
			t.Errorf("outside -> %s: %q, %v; want %s", target, who, err, want)
		}
	}
	expectAnswerFrom("podA")
	if err := n.mgr.RemovePod("sbA"); err != nil {
		t.Fatal(err)
	}
	if err := n.publish(t, "sbB", n.ip("204", 3), udp); err != nil {
		t.Fatal(err)
	}
	// Without the conntrack flush the flow would still go to podA's address.
	expectAnswerFrom("podB")
}

// TestPodsCannotReachHostLoopback shows the input guard is what keeps a
// pod from reaching a service bound to the node's 127.0.0.1 once
// route_localnet is on for the bridge: with the guard the pod gets
// nothing; with the input chain flushed, the same packets get an answer.
func TestPodsCannotReachHostLoopback(t *testing.T) {
	n := newNode(t)
	// Any published port turns route_localnet on for the bridge.
	if err := n.publish(t, "sbA", n.ip("204", 2), runtime.PortMapping{ContainerPort: 80, HostPort: 8080}); err != nil {
		t.Fatal(err)
	}
	n.node.Serve(t, "node-loopback", 7000) // listens on every node address, 127.0.0.1 included
	// Make pod A send 127.0.0.1 to its gateway, as a hostile pod would:
	// drop its own local 127/8 route and route 127.0.0.1 via the bridge.
	h := n.podA.H
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	// Taking 127.0.0.1/8 off lo removes both local routes (127.0.0.0/8 and
	// 127.0.0.1) that would keep the packets inside the pod.
	loAddr, err := netlink.ParseAddr("127.0.0.1/8")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrDel(lo, loAddr); err != nil {
		t.Fatalf("pod A: remove 127.0.0.1/8 from lo: %v", err)
	}
	_, one, _ := net.ParseCIDR("127.0.0.1/32")
	if err := h.RouteAdd(&netlink.Route{Dst: one, Gw: net.ParseIP(n.ip("204", 1)), LinkIndex: eth.Attrs().Index}); err != nil {
		t.Fatalf("pod A: route 127.0.0.1 via the bridge: %v", err)
	}
	n.podA.Sysctl(t, "net.ipv4.conf.eth0.route_localnet", "1") // accept the answer's 127.0.0.1 source

	expectNoAnswer(t, n.podA, "tcp4", "127.0.0.1:7000")

	// The control: without the guard the very same attempt succeeds.
	c, err := n.mgr.conn()
	if err != nil {
		t.Fatal(err)
	}
	c.FlushChain(n.mgr.chain(chainInput))
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	expectAnswer(t, n.podA, "tcp4", "127.0.0.1:7000", "node-loopback", "")
	// Setup restores the guard.
	if err := n.mgr.Setup(); err != nil {
		t.Fatal(err)
	}
	expectNoAnswer(t, n.podA, "tcp4", "127.0.0.1:7000")
}
