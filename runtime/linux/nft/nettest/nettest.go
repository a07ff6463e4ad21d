// Package nettest builds small networks out of named network namespaces for
// root-tier tests: a "node", pods on a bridge, an "outside world" on another
// link. Everything it makes is removed by t.Cleanup, and nothing of it is
// visible in the caller's namespace except the pinned namespace files.
package nettest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNSDir is where named namespaces are pinned, as iproute2 does.
const NetNSDir = "/run/netns"

// NS is a named network namespace made by a test.
type NS struct {
	Name     string
	Path     string
	H        *netlink.Handle
	fd       netns.NsHandle
	borrowed bool // made by someone else: Delete only lets go of it
}

// Open borrows an existing namespace (a sandbox's, or the caller's own with
// /proc/self/ns/net); the handles are closed when the test ends, the
// namespace stays.
func Open(t testing.TB, name, path string) *NS {
	t.Helper()
	fd, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open netns %s: %v", path, err)
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		fd.Close()
		t.Fatalf("netlink handle in %s: %v", path, err)
	}
	ns := &NS{Name: name, Path: path, H: h, fd: fd, borrowed: true}
	t.Cleanup(func() { ns.Delete(t) })
	return ns
}

// NewNS creates the namespace /run/netns/<name> with loopback up and removes
// it when the test ends.
func NewNS(t testing.TB, name string) *NS {
	t.Helper()
	if err := os.MkdirAll(NetNSDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(NetNSDir, name)
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		self, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- os.NewSyscallError("unshare", err)
			return
		}
		err = pin(p)
		// Go back before unlocking. Should that fail, the goroutine exits
		// locked and the runtime discards the thread, except the main
		// thread, which it parks: never leave a thread in a foreign
		// namespace on purpose, or /proc/self/ns/net lies to everyone.
		if serr := netns.Set(self); serr != nil {
			errc <- fmt.Errorf("return from new netns: %w", serr)
			return
		}
		goruntime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	fd, err := netns.GetFromPath(p)
	if err != nil {
		t.Fatalf("open netns %s: %v", p, err)
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", p, err)
	}
	ns := &NS{Name: name, Path: p, H: h, fd: fd}
	t.Cleanup(func() { ns.Delete(t) })
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return ns
}

func pin(p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Mount("/proc/thread-self/ns/net", p, "", unix.MS_BIND, ""); err != nil {
		os.Remove(p)
		return &os.PathError{Op: "bind mount netns", Path: p, Err: err}
	}
	return nil
}

// hostNS is the test process's own network namespace, taken at start-up
// while every thread is still in it.
var hostNS, hostNSErr = netns.Get()

// Host borrows the test process's own network namespace.
func Host(t testing.TB) *NS {
	t.Helper()
	if hostNSErr != nil {
		t.Fatalf("own netns: %v", hostNSErr)
	}
	return Open(t, "host", fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(hostNS)))
}

// Delete unpins the namespace; the kernel frees it and its links once the
// last socket or process in it is gone.
func (ns *NS) Delete(t testing.TB) {
	if ns.H == nil {
		return
	}
	ns.H.Close()
	ns.fd.Close()
	ns.H = nil
	if ns.borrowed {
		return
	}
	if err := unix.Unmount(ns.Path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		t.Errorf("unmount %s: %v", ns.Path, err)
	}
	if err := os.Remove(ns.Path); err != nil && !os.IsNotExist(err) {
		t.Errorf("remove %s: %v", ns.Path, err)
	}
}

// LinkNames lists the namespace's interface names. A dump interrupted by a
// concurrent change (other tests add and remove links all the time in the
// host namespace) is retried.
func (ns *NS) LinkNames(t testing.TB) []string {
	t.Helper()
	links, err := ns.H.LinkList()
	for i := 0; i < 20 && errors.Is(err, netlink.ErrDumpInterrupted); i++ {
		links, err = ns.H.LinkList()
	}
	if err != nil {
		t.Fatalf("list links in %s: %v", ns.Name, err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// FD is the namespace handle (valid until Delete).
func (ns *NS) FD() int { return int(ns.fd) }

// Do runs fn on a thread inside the namespace. Sockets made in fn stay in
// the namespace for their whole life, whichever goroutine uses them later.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		self, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		if err := netns.Set(ns.fd); err != nil {
			errc <- fmt.Errorf("enter %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(self); err != nil {
			errc <- fmt.Errorf("leave %s: %w", ns.Name, err)
			return // the locked thread dies with this goroutine
		}
		goruntime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Sysctl writes /proc/sys/<key with dots as slashes> inside the namespace.
func (ns *NS) Sysctl(t testing.TB, key, val string) {
	t.Helper()
	err := ns.Do(func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(val), 0o644)
	})
	if err != nil {
		t.Fatalf("%s: sysctl %s=%s: %v", ns.Name, key, val, err)
	}
}

// Bridge creates an up bridge with addr (CIDR) in ns.
func (ns *NS) Bridge(t testing.TB, name, addr string) {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := ns.H.LinkAdd(br); err != nil {
		t.Fatalf("%s: add bridge %s: %v", ns.Name, name, err)
	}
	ns.addrUp(t, name, addr)
}

// Link connects ns to peer with a veth: hostName (addr hostAddr, or enslaved
// to bridge when master is set) in ns, peerName with peerAddr in peer. gw, if
// set, becomes peer's default route.
func (ns *NS) Link(t testing.TB, hostName, hostAddr, master string, peer *NS, peerName, peerAddr, gw string) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}, PeerName: peerName, PeerNamespace: netlink.NsFd(peer.fd)}
	if err := ns.H.LinkAdd(v); err != nil {
		t.Fatalf("%s: add veth %s/%s: %v", ns.Name, hostName, peerName, err)
	}
	if master != "" {
		br, err := ns.H.LinkByName(master)
		if err != nil {
			t.Fatal(err)
		}
		l, err := ns.H.LinkByName(hostName)
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.H.LinkSetMaster(l, br); err != nil {
			t.Fatalf("enslave %s to %s: %v", hostName, master, err)
		}
		// With br_netfilter, a pod reaching its own published port is
		// bridged back out of the port it came in on: hairpin mode.
		if err := ns.H.LinkSetHairpin(l, true); err != nil {
			t.Fatalf("hairpin on %s: %v", hostName, err)
		}
	}
	ns.addrUp(t, hostName, hostAddr)
	peer.addrUp(t, peerName, peerAddr)
	if gw != "" {
		l, _ := peer.H.LinkByName(peerName)
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}
		if err := peer.H.RouteAdd(r); err != nil {
			t.Fatalf("%s: default route via %s: %v", peer.Name, gw, err)
		}
	}
}

func (ns *NS) addrUp(t testing.TB, name, addr string) {
	t.Helper()
	l, err := ns.H.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: link %s: %v", ns.Name, name, err)
	}
	if addr != "" {
		a, err := netlink.ParseAddr(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.H.AddrAdd(l, a); err != nil {
			t.Fatalf("%s: addr %s on %s: %v", ns.Name, addr, name, err)
		}
	}
	if err := ns.H.LinkSetUp(l); err != nil {
		t.Fatalf("%s: up %s: %v", ns.Name, name, err)
	}
}

// Serve starts a TCP and a UDP server on port in ns that answer every
// connection or datagram with "<name> <remote address>\n", so a test learns
// both who answered and whom they saw. They stop when the test ends.
func (ns *NS) Serve(t testing.TB, name string, port int) {
	t.Helper()
	var tl net.Listener
	var ul net.PacketConn
	err := ns.Do(func() error {
		var err error
		if tl, err = net.Listen("tcp4", fmt.Sprintf(":%d", port)); err != nil {
			return err
		}
		ul, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("%s: listen on %d: %v", ns.Name, port, err)
	}
	t.Cleanup(func() { tl.Close(); ul.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := ul.ReadFrom(buf)
			if err != nil {
				return
			}
			ul.WriteTo([]byte(fmt.Sprintf("%s %s\n", name, from)), from)
		}
	}()
}

// Ask connects from ns to addr ("ip:port") over network (tcp4 or udp4) and
// returns the server's one-line answer: who answered and the source address
// it saw. The deadline only bounds a broken test; it asserts no speed.
func (ns *NS) Ask(network, addr string) (who string, seen netip.AddrPort, err error) {
	return ns.AskFrom(network, "", addr)
}

// AskFrom is Ask from a fixed local address ("ip:port" or ":port"), so a
// test can reuse one UDP flow.
func (ns *NS) AskFrom(network, local, addr string) (who string, seen netip.AddrPort, err error) {
	var c net.Conn
	err = ns.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		if local != "" {
			var err error
			if network == "udp4" {
				d.LocalAddr, err = net.ResolveUDPAddr(network, local)
			} else {
				d.LocalAddr, err = net.ResolveTCPAddr(network, local)
			}
			if err != nil {
				return err
			}
		}
		var err error
		c, err = d.Dial(network, addr)
		return err
	})
	if err != nil {
		return "", netip.AddrPort{}, fmt.Errorf("%s: dial %s %s: %w", ns.Name, network, addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if network == "udp4" {
		if _, err := c.Write([]byte("hi")); err != nil {
			return "", netip.AddrPort{}, err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", netip.AddrPort{}, fmt.Errorf("%s: read from %s %s: %w", ns.Name, network, addr, err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", netip.AddrPort{}, fmt.Errorf("%s: odd answer %q", ns.Name, line)
	}
	seen, err = netip.ParseAddrPort(f[1])
	return f[0], seen, err
}
