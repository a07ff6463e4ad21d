// Package netconf wires pod network namespaces to a host bridge through
// netlink only (no ip(8) subprocesses): the bridge with its gateway address,
// and per pod a veth pair whose peer is created directly inside the pod's
// namespace as eth0, which is several times faster than creating it on the
// host and moving it.
package netconf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// PodInterface is the name of the pod's end of the veth pair.
const PodInterface = "eth0"

// VethName derives the host end's name from a key unique to the sandbox
// (its netns name). Names come from a hash, never from user text: a link
// name has at most 15 characters and pod names may have 253.
func VethName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "pv" + hex.EncodeToString(sum[:])[:13]
}

// EnsureBridge makes the bridge exist and be up with gateway as its address
// (gateway carries the subnet's prefix length) and returns its index.
func EnsureBridge(name string, gateway netip.Prefix) (int, error) {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("create bridge %s: %w", name, err)
		}
		link, err = netlink.LinkByName(name)
	}
	if err != nil {
		return 0, fmt.Errorf("find bridge %s: %w", name, err)
	}
	if link.Type() != "bridge" {
		return 0, fmt.Errorf("bridge %s: link exists with type %s", name, link.Type())
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(gateway.Addr().AsSlice()), Mask: net.CIDRMask(gateway.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return 0, fmt.Errorf("bridge %s: set address %s: %w", name, gateway, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return 0, fmt.Errorf("bridge %s: set up: %w", name, err)
		}
	}
	return link.Attrs().Index, nil
}

// Pod is one sandbox's attachment to the bridge.
type Pod struct {
	NetNS       *os.File     // the pod's network namespace
	HostVeth    string       // host end's name (VethName)
	BridgeIndex int          // from EnsureBridge
	Addr        netip.Prefix // the pod's address with the subnet's length
	Gateway     netip.Addr
}

// Setup creates the veth pair with its peer directly in the pod namespace
// as eth0, attaches the host end to the bridge, and inside the namespace
// brings lo and eth0 up with the address and a default route. A host end
// left over by an earlier sandbox of the same name is replaced.
func Setup(p Pod) error {
	// The host end is created up, saving a round trip.
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: p.HostVeth, MasterIndex: p.BridgeIndex, Flags: net.FlagUp},
		PeerName:      PodInterface,
		PeerNamespace: netlink.NsFd(int(p.NetNS.Fd())),
	}
	err := netlink.LinkAdd(veth)
	if errors.Is(err, unix.EEXIST) {
		// The kernel frees a removed sandbox's pair asynchronously; a
		// re-created sandbox can find its predecessor's host end.
		if err := Teardown(p.HostVeth); err != nil {
			return err
		}
		err = netlink.LinkAdd(veth)
	}
	if err != nil {
		return fmt.Errorf("create veth %s: %w", p.HostVeth, err)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(int(p.NetNS.Fd())), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in pod netns %s: %w", p.NetNS.Name(), err)
	}
	defer h.Close()
	// lo is always index 1 in a new namespace; no lookup needed.
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("pod netns %s: set lo up: %w", p.NetNS.Name(), err)
	}
	eth, err := h.LinkByName(PodInterface)
	if err != nil {
		return fmt.Errorf("pod netns %s: find %s: %w", p.NetNS.Name(), PodInterface, err)
	}
	ipnet := &net.IPNet{IP: net.IP(p.Addr.Addr().AsSlice()), Mask: net.CIDRMask(p.Addr.Bits(), 32)}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipnet}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("pod netns %s: address %s on %s: %w", p.NetNS.Name(), p.Addr, PodInterface, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("pod netns %s: set %s up: %w", p.NetNS.Name(), PodInterface, err)
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(p.Gateway.AsSlice())}
	if err := h.RouteReplace(route); err != nil {
		return fmt.Errorf("pod netns %s: default route via %s: %w", p.NetNS.Name(), p.Gateway, err)
	}
	return nil
}

// Teardown deletes the host end of a pod's veth pair (and with it the
// peer). A missing link is not an error. Deleting the pod's namespace frees
// the pair too, and much faster, so removal only calls this for leftovers.
func Teardown(hostVeth string) error {
	link, err := netlink.LinkByName(hostVeth)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find veth %s: %w", hostVeth, err)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete veth %s: %w", hostVeth, err)
	}
	return nil
}

// BridgePorts lists the names of the veth links attached to the bridge:
// the candidates a garbage collector may own.
func BridgePorts(bridgeIndex int) ([]string, error) {
	links, err := netlink.LinkList()
	// A dump that links came or went during is flagged as interrupted;
	// links change all the time on a busy node, so try again.
	for i := 0; i < 10 && errors.Is(err, netlink.ErrDumpInterrupted); i++ {
		links, err = netlink.LinkList()
	}
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == bridgeIndex && l.Type() == "veth" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// BridgeUp reports whether the link called name is still the one of index
// (link indexes are not reused while a namespace lives) and up: a bridge
// deleted under its user, or made again by someone else, is not. It reads
// sysfs (two small files) rather than asking netlink, which costs a socket
// per request.
func BridgeUp(index int, name string) bool {
	dir := filepath.Join("/sys/class/net", name)
	idx, err := readSysInt(filepath.Join(dir, "ifindex"), 10)
	if err != nil || idx != int64(index) {
		return false
	}
	flags, err := readSysInt(filepath.Join(dir, "flags"), 0)
	return err == nil && flags&unix.IFF_UP != 0
}

func readSysInt(path string, base int) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), base, 64)
}

// BridgeIndex returns the bridge's index, or 0 when it does not exist.
func BridgeIndex(name string) (int, error) {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find bridge %s: %w", name, err)
	}
	return link.Attrs().Index, nil
}
