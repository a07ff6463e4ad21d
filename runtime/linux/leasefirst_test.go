package linux

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/ipam"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// TestSandboxNoAddressMakesNothing fills a /29 and keeps asking for more
// pods from several goroutines while a census runs beside them: a pod that
// cannot get an address fails with the pool's error and never forks a
// pause or pins a netns, not even for a moment (issue 12: 267 netns for
// 253 pods, seconds of a worker per failed attempt).
func TestSandboxNoAddressMakesNothing(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.Subnet = "10.201.0.24/29" // .26-.30: five pods; outside the /24s other tests take
	r := e.open(t)
	ctx := context.Background()
	ids := fillPool(t, r, 5)

	// The census, as often as it can run, for as long as the failures go.
	var maxNetNS, maxPauses atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			n := int64(len(linuxtest.NetNS(e.cfg.NetNSPrefix)))
			if n > maxNetNS.Load() {
				maxNetNS.Store(n)
			}
			if i%8 == 0 {
				p := int64(len(linuxtest.Processes(func(argv []string) bool {
					return len(argv) == 3 && argv[0] == PauseName && argv[1] == e.cfg.RunRoot
				})))
				if p > maxPauses.Load() {
					maxPauses.Store(p)
				}
			}
		}
	})
	const workers, attempts = 4, 10
	var failed sync.WaitGroup
	var slowest atomic.Int64
	for w := range workers {
		failed.Go(func() {
			for a := range attempts {
				t0 := time.Now()
				_, err := r.CreateSandbox(ctx, podConfig(fmt.Sprintf("extra%d-%d", w, a)))
				if d := int64(time.Since(t0)); d > slowest.Load() {
					slowest.Store(d)
				}
				if !errors.Is(err, ipam.ErrExhausted) || !strings.Contains(err.Error(), "10.201.0.24/29") {
					t.Errorf("create beyond the pool: err = %v; want ipam.ErrExhausted naming the subnet", err)
					return
				}
			}
		})
	}
	failed.Wait()
	close(stop)
	sampler.Wait()
	t.Logf("%d failed creations, the slowest in %s", workers*attempts, time.Duration(slowest.Load()))
	if n := maxNetNS.Load(); n != 5 {
		t.Errorf("netns pinned while creations failed: at most %d seen, want the 5 pods' only", n)
	}
	if n := maxPauses.Load(); n != 5 {
		t.Errorf("pauses while creations failed: at most %d seen, want the 5 pods' only", n)
	}
	if list, _ := r.ListSandboxes(ctx); len(list) != 5 {
		t.Errorf("failed creations left sandboxes: %d listed", len(list))
	}
	for _, id := range ids {
		if err := r.RemoveSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	e.check(t)
}
