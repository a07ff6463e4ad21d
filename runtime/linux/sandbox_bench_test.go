package linux

import (
	"context"
	"fmt"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSandbox measures median create and remove latency of a
// pod-network sandbox, the pause's memory, and the same work done the
// common way in the same run: `ip netns add`, the equivalent `ip` commands
// for the veth, address, routes and links, and `unshare --ipc --uts` for
// the namespace holder; removal is kill + `ip netns del`. Run it with a
// fixed count, e.g. -benchtime=40x.
func BenchmarkSandbox(b *testing.B) {
	e := newTestEnv(b)
	r := e.open(b)
	ctx := context.Background()
	// Warm up: the bridge is made on first use, which is not per pod.
	sb, err := r.CreateSandbox(ctx, podConfig("warm"))
	if err != nil {
		b.Fatal(err)
	}
	// CreateSandbox returns once the pause is locked down and asleep in
	// its wait loop: the state whose memory is worth reporting.
	pss, priv, err := linuxtest.Smaps(sb.PausePID)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
		b.Fatal(err)
	}

	var create, remove []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		sb, err := r.CreateSandbox(ctx, podConfig(fmt.Sprintf("b%d", i)))
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
		create, remove = append(create, t1.Sub(t0)), append(remove, time.Since(t1))
	}
	b.StopTimer()

	// Baseline: the same pod network with ip(8) and unshare(1).
	pool := netip.MustParsePrefix(e.cfg.Subnet)
	gw := pool.Addr().Next()
	ip := netip.PrefixFrom(pool.Addr().Next().Next().Next().Next(), pool.Bits()) // .4, never leased now: the pool is empty
	var bcreate, bremove []time.Duration
	n := min(b.N, 20) // each ip(8) run costs a fork+exec; 20 samples give a stable median
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%sbase%d", e.cfg.NetNSPrefix, i)
		veth := fmt.Sprintf("%sb%d", e.cfg.Bridge, i)
		t0 := time.Now()
		for _, args := range [][]string{
			{"netns", "add", name},
			{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name},
			{"link", "set", veth, "master", e.cfg.Bridge, "up"},
			{"-n", name, "addr", "add", ip.String(), "dev", "eth0"},
			{"-n", name, "link", "set", "eth0", "up"},
			{"-n", name, "link", "set", "lo", "up"},
			{"-n", name, "route", "add", "default", "via", gw.String()},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				b.Fatalf("baseline ip %v: %v: %s", args, err, out)
			}
		}
		holder := exec.Command("nsenter", "--net=/run/netns/"+name, "unshare", "--ipc", "--uts", "sleep", "1000", e.cfg.RunRoot)
		if err := holder.Start(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		holder.Process.Kill()
		holder.Wait()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			b.Fatalf("baseline ip netns del: %v: %s", err, out)
		}
		bcreate, bremove = append(bcreate, t1.Sub(t0)), append(bremove, time.Since(t1))
	}

	// Floor: fork+exec of /bin/true into fresh net, IPC and UTS
	// namespaces, the least any pause-backed sandbox costs on this machine
	// at this moment.
	var floor []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{
			Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS},
		})
		if err != nil {
			b.Fatal(err)
		}
		p.Wait()
		floor = append(floor, time.Since(t0))
	}
	b.ReportMetric(ms(sbMedian(floor)), "floor-forkexec-ms")

	mc, mr := sbMedian(create), sbMedian(remove)
	bc, br := sbMedian(bcreate), sbMedian(bremove)
	b.ReportMetric(ms(mc), "create-ms")
	b.ReportMetric(ms(mr), "remove-ms")
	b.ReportMetric(ms(bc), "base-create-ms")
	b.ReportMetric(ms(br), "base-remove-ms")
	b.ReportMetric(float64(bc)/float64(mc), "create-speedup")
	b.ReportMetric(float64(br)/float64(mr), "remove-speedup")
	b.ReportMetric(float64(pss), "pause-pss-KiB")
	b.ReportMetric(float64(priv), "pause-private-KiB")
	b.ReportMetric(0, "ns/op") // the medians above are the figures; ns/op mixes both halves
	e.check(b)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sbMedian(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
