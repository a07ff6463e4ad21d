package linux

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
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
	waitPauseSettled(b, sb.PausePID)
	pss, priv := sbSmapsRollup(b, sb.PausePID)
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

// waitPauseSettled waits until the pause has installed its SIGTERM
// handler (SigCgt in /proc/PID/status): its Go runtime is initialised and
// it sits in its wait loop, the state whose memory is worth reporting.
func waitPauseSettled(b testing.TB, pid int) {
	const sigtermBit = 1 << (15 - 1)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
				mask, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if mask&sigtermBit != 0 {
					return
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// smapsRollup returns a process's proportional and private memory in KiB.
func sbSmapsRollup(b testing.TB, pid int) (pss, private int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.Atoi(fields[1])
		switch fields[0] {
		case "Pss:":
			pss = v
		case "Private_Clean:", "Private_Dirty:":
			private += v
		}
	}
	return pss, private
}
