// Package ipam hands out pod IPv4 addresses from one subnet and persists the
// leases on disk, so that several processes (agents, CLI invocations) and a
// restarted agent agree on who holds what.
//
// Layout under the pool directory:
//
//	lock              flock(2) serialising every change
//	ip/<addr>         one file per held address; content: owner ID
//	owner/<id>        the address an owner holds (the index for Lookup)
//	last              the last address handed out; allocation continues
//	                  after it, so a freed address is not reused at once
//
// Lease files are created by link(2) from a complete temp file, so a
// lease file either exists with its owner or does not exist at all.
package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrExhausted means every address of the subnet is held.
var ErrExhausted = errors.New("address pool exhausted")

// Pool is the lease store of one subnet. It is safe for concurrent use by
// goroutines and processes: every change holds the pool's file lock.
type Pool struct {
	dir     string
	prefix  netip.Prefix
	gateway netip.Addr
	first   netip.Addr // first allocatable (gateway + 1)
	last    netip.Addr // last allocatable (broadcast - 1)
}

// Open opens (creating) the pool for subnet in dir. The subnet's first
// address is the gateway and is never handed out, nor are the network and
// broadcast addresses.
func Open(dir, subnet string) (*Pool, error) {
	pfx, err := netip.ParsePrefix(subnet)
	if err != nil || !pfx.Addr().Is4() {
		return nil, fmt.Errorf("ipam: subnet %q is not an IPv4 CIDR", subnet)
	}
	pfx = pfx.Masked()
	if pfx.Bits() > 29 {
		return nil, fmt.Errorf("ipam: subnet %s is too small for pods (need /29 or larger)", pfx)
	}
	network := pfx.Addr()
	hostBits := 32 - pfx.Bits()
	bcast := fromUint32(toUint32(network) | (1<<hostBits - 1))
	p := &Pool{
		dir:     dir,
		prefix:  pfx,
		gateway: network.Next(),
		first:   network.Next().Next(),
		last:    bcast.Prev(),
	}
	for _, d := range []string{dir, filepath.Join(dir, "ip"), filepath.Join(dir, "owner")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("ipam: create pool dir: %w", err)
		}
	}
	return p, nil
}

// Prefix is the pool's subnet.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

// Gateway is the subnet's first address, which the bridge holds.
func (p *Pool) Gateway() netip.Addr { return p.gateway }

// Dir is where the pool keeps its leases.
func (p *Pool) Dir() string { return p.dir }

func toUint32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func fromUint32(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// lock takes the pool's exclusive file lock and returns its release.
func (p *Pool) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(p.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipam: open lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ipam: lock %s: %w", f.Name(), os.NewSyscallError("flock", err))
	}
	return func() { f.Close() }, nil
}

func validOwner(owner string) error {
	if owner == "" || owner == "." || owner == ".." || strings.ContainsAny(owner, "/\x00") {
		return fmt.Errorf("ipam: owner %q is not a plain name", owner)
	}
	return nil
}

// Allocate returns the address owner holds, leasing a free one first if it
// holds none. It never returns an address another owner holds.
func (p *Pool) Allocate(owner string) (netip.Addr, error) {
	if err := validOwner(owner); err != nil {
		return netip.Addr{}, err
	}
	unlock, err := p.lock()
	if err != nil {
		return netip.Addr{}, err
	}
	defer unlock()
	if a, ok, err := p.lookup(owner); err != nil || ok {
		return a, err
	}
	start := p.first
	if b, err := os.ReadFile(filepath.Join(p.dir, "last")); err == nil {
		if a, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && p.inRange(a) {
			start = a
		}
	}
	size := toUint32(p.last) - toUint32(p.first) + 1
	cand := start
	for range size {
		cand = cand.Next()
		if !p.inRange(cand) {
			cand = p.first
		}
		err := p.claim(cand, owner)
		if err == nil {
			if err := writeAtomic(filepath.Join(p.dir, "last"), []byte(cand.String())); err != nil {
				return netip.Addr{}, err
			}
			return cand, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return netip.Addr{}, err
		}
	}
	return netip.Addr{}, fmt.Errorf("ipam: allocate for %s in %s: %w", owner, p.prefix, ErrExhausted)
}

// Reserve records that owner holds addr, as reconciliation does for a live
// sandbox whose lease was lost. Reserving what owner already holds succeeds.
func (p *Pool) Reserve(addr netip.Addr, owner string) error {
	if err := validOwner(owner); err != nil {
		return err
	}
	if !p.inRange(addr) {
		return fmt.Errorf("ipam: reserve %s for %s: outside %s", addr, owner, p.prefix)
	}
	unlock, err := p.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if a, ok, err := p.lookup(owner); err != nil {
		return err
	} else if ok && a == addr {
		return nil
	} else if ok {
		return fmt.Errorf("ipam: reserve %s for %s: it holds %s", addr, owner, a)
	}
	err = p.claim(addr, owner)
	if errors.Is(err, os.ErrExist) {
		holder, _ := os.ReadFile(filepath.Join(p.dir, "ip", addr.String()))
		if string(holder) == owner {
			return writeAtomic(filepath.Join(p.dir, "owner", owner), []byte(addr.String()))
		}
		return fmt.Errorf("ipam: reserve %s for %s: held by %s", addr, owner, holder)
	}
	return err
}

func (p *Pool) inRange(a netip.Addr) bool {
	return a.Is4() && toUint32(a) >= toUint32(p.first) && toUint32(a) <= toUint32(p.last)
}

// claim creates the lease file of addr for owner (os.ErrExist when held)
// and then the owner index. The caller holds the lock.
func (p *Pool) claim(addr netip.Addr, owner string) error {
	ipPath := filepath.Join(p.dir, "ip", addr.String())
	tmp, err := os.CreateTemp(p.dir, ".lease-*")
	if err != nil {
		return fmt.Errorf("ipam: claim %s: %w", addr, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(owner); err != nil {
		tmp.Close()
		return fmt.Errorf("ipam: claim %s: %w", addr, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ipam: claim %s: %w", addr, err)
	}
	if err := os.Link(tmp.Name(), ipPath); err != nil {
		if errors.Is(err, os.ErrExist) {
			return os.ErrExist
		}
		return fmt.Errorf("ipam: claim %s: %w", addr, err)
	}
	if err := writeAtomic(filepath.Join(p.dir, "owner", owner), []byte(addr.String())); err != nil {
		os.Remove(ipPath)
		return err
	}
	return nil
}

// Lookup returns the address owner holds.
func (p *Pool) Lookup(owner string) (netip.Addr, bool, error) {
	if err := validOwner(owner); err != nil {
		return netip.Addr{}, false, err
	}
	return p.lookup(owner)
}

func (p *Pool) lookup(owner string) (netip.Addr, bool, error) {
	b, err := os.ReadFile(filepath.Join(p.dir, "owner", owner))
	if errors.Is(err, os.ErrNotExist) {
		return netip.Addr{}, false, nil
	}
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("ipam: lookup %s: %w", owner, err)
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("ipam: lookup %s: corrupt index %q", owner, b)
	}
	// The index is only trusted when the lease file agrees.
	holder, err := os.ReadFile(filepath.Join(p.dir, "ip", a.String()))
	if err != nil || string(holder) != owner {
		return netip.Addr{}, false, nil
	}
	return a, true, nil
}

// Release frees the address owner holds. Releasing nothing succeeds.
func (p *Pool) Release(owner string) error {
	if err := validOwner(owner); err != nil {
		return err
	}
	unlock, err := p.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return p.release(owner)
}

func (p *Pool) release(owner string) error {
	idx := filepath.Join(p.dir, "owner", owner)
	if b, err := os.ReadFile(idx); err == nil {
		ipPath := filepath.Join(p.dir, "ip", strings.TrimSpace(string(b)))
		if holder, err := os.ReadFile(ipPath); err == nil && string(holder) == owner {
			if err := os.Remove(ipPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("ipam: release %s: %w", owner, err)
			}
		}
	}
	if err := os.Remove(idx); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ipam: release %s: %w", owner, err)
	}
	return nil
}

// Leases returns every held address and its owner.
func (p *Pool) Leases() (map[netip.Addr]string, error) {
	ents, err := os.ReadDir(filepath.Join(p.dir, "ip"))
	if err != nil {
		return nil, fmt.Errorf("ipam: list leases: %w", err)
	}
	out := make(map[netip.Addr]string, len(ents))
	for _, e := range ents {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.dir, "ip", e.Name()))
		if err != nil {
			continue
		}
		out[a] = string(b)
	}
	return out, nil
}

// Reconcile frees every lease whose owner is not live, drops index entries
// without a matching lease, and returns the owners whose leases it freed.
func (p *Pool) Reconcile(live func(owner string) bool) ([]string, error) {
	unlock, err := p.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var freed []string
	ipDir := filepath.Join(p.dir, "ip")
	ents, err := os.ReadDir(ipDir)
	if err != nil {
		return nil, fmt.Errorf("ipam: reconcile: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(ipDir, e.Name()))
		if err != nil {
			continue
		}
		owner := string(b)
		if validOwner(owner) == nil && live(owner) {
			continue
		}
		if err := os.Remove(filepath.Join(ipDir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return freed, fmt.Errorf("ipam: free %s: %w", e.Name(), err)
		}
		if validOwner(owner) == nil {
			os.Remove(filepath.Join(p.dir, "owner", owner))
		}
		freed = append(freed, fmt.Sprintf("%s (%s)", e.Name(), owner))
	}
	idx, err := os.ReadDir(filepath.Join(p.dir, "owner"))
	if err != nil {
		return freed, fmt.Errorf("ipam: reconcile: %w", err)
	}
	for _, e := range idx {
		if _, ok, _ := p.lookup(e.Name()); !ok {
			os.Remove(filepath.Join(p.dir, "owner", e.Name()))
		}
	}
	return freed, nil
}

// writeAtomic replaces path with data: temp file, rename. It skips fsync on
// purpose: leases only matter while their sandboxes live, sandboxes do not
// survive a power loss, and reconciliation re-records the lease of any live
// sandbox, so durability would cost latency and buy nothing.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// IPNet converts an address and the pool prefix to the net.IPNet netlink
// takes.
func (p *Pool) IPNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.prefix.Bits(), 32)}
}
