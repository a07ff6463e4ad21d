package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
)

func TestAllocateReleaseReuse(t *testing.T) {
	p, err := Open(t.TempDir(), "10.201.250.0/29")
	if err != nil {
		t.Fatal(err)
	}
	if p.Gateway() != netip.MustParseAddr("10.201.250.1") {
		t.Fatalf("gateway = %s", p.Gateway())
	}
	// A /29 has .2-.6 for pods: five leases, then exhaustion.
	got := map[netip.Addr]string{}
	for i := range 5 {
		owner := fmt.Sprintf("o%d", i)
		a, err := p.Allocate(owner)
		if err != nil {
			t.Fatalf("allocate %s: %v", owner, err)
		}
		if a == p.Gateway() || !p.Prefix().Contains(a) || a == netip.MustParseAddr("10.201.250.7") {
			t.Errorf("allocated %s outside the pod range", a)
		}
		if prev, dup := got[a]; dup {
			t.Fatalf("%s handed to %s and %s", a, prev, owner)
		}
		got[a] = owner
	}
	if _, err := p.Allocate("extra"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("sixth allocate: err = %v; want ErrExhausted", err)
	}
	again, err := p.Allocate("o2")
	if err != nil || got[again] != "o2" {
		t.Errorf("re-allocate for a holder = %s, %v; want its own address", again, err)
	}
	if err := p.Release("o2"); err != nil {
		t.Fatal(err)
	}
	if err := p.Release("o2"); err != nil {
		t.Errorf("second release: %v", err)
	}
	a, err := p.Allocate("newcomer")
	if err != nil || a != again {
		t.Errorf("after release allocate = %s, %v; want the freed %s", a, err, again)
	}
}

func TestConcurrentAllocateNoDuplicates(t *testing.T) {
	dir := t.TempDir()
	const n = 100
	var wg sync.WaitGroup
	addrs := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A pool object per goroutine, as separate processes would have.
			p, err := Open(dir, "10.201.251.0/24")
			if err != nil {
				errs[i] = err
				return
			}
			addrs[i], errs[i] = p.Allocate(fmt.Sprintf("c%d", i))
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, a := range addrs {
		if errs[i] != nil {
			t.Fatalf("allocate %d: %v", i, errs[i])
		}
		if j, dup := seen[a]; dup {
			t.Fatalf("%s given to c%d and c%d", a, j, i)
		}
		seen[a] = i
	}
	p, _ := Open(dir, "10.201.251.0/24")
	leases, err := p.Leases()
	if err != nil || len(leases) != n {
		t.Fatalf("leases = %d, %v; want %d", len(leases), err, n)
	}
}

func TestReconcileAndReserve(t *testing.T) {
	p, err := Open(t.TempDir(), "10.201.252.0/24")
	if err != nil {
		t.Fatal(err)
	}
	live, _ := p.Allocate("live")
	if _, err := p.Allocate("dead"); err != nil {
		t.Fatal(err)
	}
	freed, err := p.Reconcile(func(o string) bool { return o == "live" })
	if err != nil || len(freed) != 1 {
		t.Fatalf("reconcile freed %v, %v; want the dead lease", freed, err)
	}
	if _, ok, _ := p.Lookup("dead"); ok {
		t.Error("dead owner still holds a lease")
	}
	if a, ok, _ := p.Lookup("live"); !ok || a != live {
		t.Errorf("live lease lost: %s %v", a, ok)
	}
	// A live sandbox whose lease vanished is re-recorded at its address.
	want := netip.MustParseAddr("10.201.252.77")
	if err := p.Reserve(want, "orphan"); err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(want, "orphan"); err != nil {
		t.Errorf("reserve twice: %v", err)
	}
	if err := p.Reserve(want, "thief"); err == nil {
		t.Error("reserve of a held address by another owner succeeded")
	}
	if err := p.Reserve(p.Gateway(), "gw"); err == nil {
		t.Error("reserving the gateway succeeded")
	}
	if _, err := p.Allocate("../escape"); err == nil {
		t.Error("path-like owner accepted")
	}
}

func TestOpenRejects(t *testing.T) {
	for _, s := range []string{"", "10.0.0.0", "fd00::/64", "10.0.0.0/30", "garbage/8"} {
		if _, err := Open(t.TempDir(), s); err == nil {
			t.Errorf("Open(%q) succeeded", s)
		}
	}
}
