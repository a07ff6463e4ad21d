package nft

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// HostSettings lists the kernel settings Setup changes, for documentation
// and for tests. They are namespace-wide or per-interface, never restored:
// pods outlive the agent, so turning forwarding off when the agent stops
// would cut running pods off, and a value we found already set was never
// ours to restore.
//
//   - net.ipv4.ip_forward=1: replies to masqueraded pod traffic and
//     published-port traffic arrive on the uplink and must be forwarded into
//     the bridge; the kernel checks forwarding on the *incoming* interface,
//     so enabling it on the bridge alone cannot work. Which forwarded traffic
//     is allowed stays the firewall's business: our forward chain accepts
//     only traffic from and to the bridge.
//   - net.ipv4.conf.<bridge>.route_localnet=1: lets a packet from 127.0.0.1
//     (a host process using a published port on localhost) be routed out of
//     the bridge after DNAT, and its replies back in. Scoped to the bridge;
//     the input chain drops new connections from pods to 127.0.0.0/8 so pods
//     cannot use it to reach host loopback services.
var HostSettings = []string{"net.ipv4.ip_forward", "net.ipv4.conf.<bridge>.route_localnet"}

func (m *Manager) hostSettings() error {
	return m.inNetNS(func() error {
		if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		err := writeSysctl(filepath.Join("net/ipv4/conf", m.cfg.Bridge, "route_localnet"), "1")
		if errors.Is(err, os.ErrNotExist) {
			// The bridge is made with the first sandbox; AddPod sets it then.
			return nil
		}
		return err
	})
}

// ensureLocalnet sets route_localnet on the bridge, which must exist by the
// time a pod publishes ports.
func (m *Manager) ensureLocalnet() error {
	return m.inNetNS(func() error {
		return writeSysctl(filepath.Join("net/ipv4/conf", m.cfg.Bridge, "route_localnet"), "1")
	})
}

func writeSysctl(rel, val string) error {
	p := filepath.Join("/proc/sys", rel)
	cur, err := os.ReadFile(p)
	if err == nil && string(cur) == val+"\n" {
		return nil
	}
	if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
		return fmt.Errorf("nft: set %s=%s: %w", rel, val, err)
	}
	return nil
}

// inNetNS runs fn on an OS thread inside the managed network namespace (or
// directly when the Manager manages the caller's own). /proc/sys/net and
// interface listings follow the calling thread's namespace.
func (m *Manager) inNetNS(fn func() error) error {
	if m.nsFD < 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		// Unlock only once the thread is back home; otherwise the locked
		// goroutine exits and takes the stray thread with it.
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("nft: open own netns: %w", err)
			return
		}
		defer unix.Close(self)
		if err := unix.Setns(m.nsFD, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("nft: enter netns %s: %w", m.cfg.NetNSPath, os.NewSyscallError("setns", err))
			return
		}
		ferr := fn()
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("nft: leave netns %s: %w", m.cfg.NetNSPath, os.NewSyscallError("setns", err))
			return
		}
		goruntime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Hairpin turns on hairpin mode on a pod's bridge port. On nodes with
// br_netfilter a pod that reaches its own published port through a node
// address is DNATed back to itself while the frame is bridged, and the
// bridge only sends a frame out of the port it came in on in hairpin mode.
func (m *Manager) Hairpin(veth string) error {
	return m.inNetNS(func() error {
		l, err := netlink.LinkByName(veth)
		if err != nil {
			return fmt.Errorf("nft: hairpin on %s: %w", veth, err)
		}
		if l.Attrs().Protinfo != nil && l.Attrs().Protinfo.Hairpin {
			return nil
		}
		if err := netlink.LinkSetHairpin(l, true); err != nil {
			return fmt.Errorf("nft: hairpin on %s: %w", veth, err)
		}
		return nil
	})
}

// flushUDP deletes the conntrack entries of UDP flows to the given host
// ports. UDP has no connection end: a client that keeps sending keeps its
// entry alive, still DNATed to a pod that may be gone, so the new owner of
// a port would never see that client. TCP needs no flush: a new connection
// is a new entry.
func (m *Manager) flushUDP(ports []uint16) error {
	if len(ports) == 0 {
		return nil
	}
	return m.inNetNS(func() error {
		var filters []netlink.CustomConntrackFilter
		for _, p := range ports {
			f := &netlink.ConntrackFilter{}
			if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
				return err
			}
			if err := f.AddPort(netlink.ConntrackOrigDstPort, p); err != nil {
				return err
			}
			filters = append(filters, f)
		}
		if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...); err != nil {
			return fmt.Errorf("nft: flush conntrack of UDP ports %v: %w", ports, err)
		}
		return nil
	})
}
