package linux

import (
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// newTestPool is an enabled pool whose spares are pipes, not processes.
func newTestPool(t *testing.T) (*shimPool, *atomic.Int64) {
	t.Helper()
	var started atomic.Int64
	p := &shimPool{enabled: true, grown: 1, warn: func(err error) { t.Error(err) }}
	p.start = func(string) (*spareShim, error) {
		started.Add(1)
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		return &spareShim{ctl: w, ready: r}, nil
	}
	t.Cleanup(func() {
		p.mu.Lock()
		p.enabled = false
		if p.idle != nil {
			p.idle.Stop()
		}
		for _, sp := range p.ready {
			sp.close()
		}
		p.mu.Unlock()
	})
	return p, &started
}

func (p *shimPool) waitReady(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		p.mu.Lock()
		ready, starting := len(p.ready), p.starting
		p.mu.Unlock()
		if ready == n && starting == 0 {
			return
		}
	}
	t.Fatalf("pool did not settle at %d spares", n)
}

// TestSparePoolSizedToPendingWork: a batch of ten sandboxes announces its
// ten container starts while the sandboxes are being made, so the ten
// starts all find a spare (none starts cold); refills after the starts
// bring the pool back to one. A start that finds the pool dry grows it,
// and it shrinks back to one when idle.
func TestSparePoolSizedToPendingWork(t *testing.T) {
	p, started := newTestPool(t)
	p.fill()
	p.waitReady(t, 1)
	for range 10 {
		p.expect(1) // CreateSandbox begins
	}
	p.waitReady(t, 10)
	cold := 0
	for range 10 {
		p.expect(-1) // CreateSandbox done, StartContainer
		if sp := p.take(); sp == nil {
			cold++
		} else {
			sp.close()
		}
		p.fill() // the start is reported
	}
	if cold != 0 {
		t.Errorf("%d of 10 starts found no spare", cold)
	}
	p.waitReady(t, 1)
	p.take()
	if sp := p.take(); sp != nil {
		t.Fatal("a second spare without a refill")
	}
	p.fill()
	p.waitReady(t, 2)
	p.shrink()
	p.waitReady(t, 1)
	if n := started.Load(); n != 13 {
		t.Errorf("%d spares started, want 13 (1, 9 more for the batch, 1 after it, 2 after the dry start)", n)
	}
}
