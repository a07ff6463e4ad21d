package linux

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	rt "github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/ipam"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
)

func podConfig(name string) *rt.SandboxConfig {
	return &rt.SandboxConfig{Pod: rt.PodKey{Namespace: "test", Name: name}}
}

// onThreadIn runs fn on an OS thread that joined the namespaces at paths
// (kind -> /proc/PID/ns/kind or a pinned netns). The thread is never
// unlocked, so Go discards it afterwards instead of reusing it in foreign
// namespaces.
func onThreadIn(paths map[string]string, fn func() error) error {
	errc := make(chan error, 1)
	var run func()
	run = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Never the main thread: Go cannot discard it.
			runtime.UnlockOSThread()
			go run()
			return
		}
		for kind, p := range paths {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				errc <- fmt.Errorf("open %s namespace %s: %w", kind, p, err)
				return
			}
			err = unix.Setns(fd, 0)
			unix.Close(fd)
			if err != nil {
				errc <- fmt.Errorf("setns %s %s: %w", kind, p, err)
				return
			}
		}
		errc <- fn()
	}
	go run()
	return <-errc
}

func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// ping sends one ICMP echo to dst from the network namespace at nsPath
// (the host's when empty) and waits for the reply.
func ping(nsPath string, dst string) error {
	paths := map[string]string{}
	if nsPath != "" {
		paths["net"] = nsPath
	}
	var conn *icmp.PacketConn
	err := onThreadIn(paths, func() (err error) {
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	id := os.Getpid() & 0xffff
	seq := int(time.Now().UnixNano() & 0x7fff)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("pelagos")}}
	b, _ := msg.Marshal(nil)
	dstIP := &net.IPAddr{IP: net.ParseIP(dst)}
	buf := make([]byte, 1500)
	// Bounded only so a broken network fails instead of hanging; the
	// number says nothing about speed.
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if _, err := conn.WriteTo(b, dstIP); err != nil {
			return fmt.Errorf("ping %s: %w", dst, err)
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				break // resend
			}
			rm, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || rm.Type != ipv4.ICMPTypeEchoReply || from.String() != dst {
				continue
			}
			if e, ok := rm.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
				return nil
			}
		}
	}
	return fmt.Errorf("ping %s from %q: no reply", dst, nsPath)
}

func TestSandboxNetworkAndNamespaces(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	cfgA := podConfig("alpha")
	cfgA.Hostname = "alpha-host"
	a, err := r.CreateSandbox(ctx, cfgA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.CreateSandbox(ctx, podConfig("beta"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range []*rt.Sandbox{a, b} {
		// Exactly lo and eth0, eth0 holding the leased address.
		nsh, err := netns.GetFromPath(sb.NetNSPath)
		if err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(nsh)
		nsh.Close() // an open handle would keep the namespace alive
		if err != nil {
			t.Fatal(err)
		}
		links, err := h.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"eth0", "lo"}) {
			t.Errorf("sandbox %s links = %v; want [eth0 lo]", sb.ID, names)
		}
		eth, _ := h.LinkByName("eth0")
		addrs, _ := h.AddrList(eth, unix.AF_INET)
		if len(addrs) != 1 || addrs[0].IP.String() != sb.IP {
			t.Errorf("sandbox %s eth0 addresses = %v; want %s", sb.ID, addrs, sb.IP)
		}
		h.Close()
		if !netip.MustParsePrefix(e.cfg.Subnet).Contains(netip.MustParseAddr(sb.IP)) {
			t.Errorf("IP %s outside %s", sb.IP, e.cfg.Subnet)
		}
		if len(sb.VethHost) > 15 || !slices.Contains(e.census.Leaks(), "bridge port "+sb.VethHost) {
			t.Errorf("host veth %q: want <= 15 characters and on bridge %s", sb.VethHost, e.cfg.Bridge)
		}
		if err := ping("", sb.IP); err != nil {
			t.Errorf("host -> %s: %v", sb.ID, err)
		}
	}
	if err := ping(a.NetNSPath, b.IP); err != nil {
		t.Errorf("alpha -> beta: %v", err)
	}
	if err := ping(b.NetNSPath, a.IP); err != nil {
		t.Errorf("beta -> alpha: %v", err)
	}

	// A process joined to the sandbox sees the pause's namespaces and the
	// pod hostname.
	for _, c := range []struct {
		sb   *rt.Sandbox
		host string
	}{{a, "alpha-host"}, {b, "beta"}} {
		paths := map[string]string{}
		for _, kind := range []string{"net", "ipc", "uts"} {
			paths[kind] = fmt.Sprintf("/proc/%d/ns/%s", c.sb.PausePID, kind)
		}
		var got map[string]uint64
		var hostname string
		err := onThreadIn(paths, func() error {
			got = map[string]uint64{}
			for kind := range paths {
				ino, err := nsInode("/proc/thread-self/ns/" + kind)
				if err != nil {
					return err
				}
				got[kind] = ino
			}
			var u unix.Utsname
			if err := unix.Uname(&u); err != nil {
				return err
			}
			hostname = unix.ByteSliceToString(u.Nodename[:])
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for kind, p := range paths {
			want, _ := nsInode(p)
			host, _ := nsInode("/proc/self/ns/" + kind)
			if got[kind] != want || want == host {
				t.Errorf("sandbox %s %s namespace: joined %d, pause %d, host %d", c.sb.ID, kind, got[kind], want, host)
			}
		}
		if netInode, _ := nsInode(c.sb.NetNSPath); netInode != got["net"] {
			t.Errorf("pinned netns %s is not the pause's", c.sb.NetNSPath)
		}
		if hostname != c.host {
			t.Errorf("sandbox %s hostname = %q; want %q", c.sb.ID, hostname, c.host)
		}
	}

	for _, sb := range []*rt.Sandbox{a, b} {
		if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	e.check(t)
}

func TestSandboxPauseKilled(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, podConfig("victim"))
	if err != nil {
		t.Fatal(err)
	}
	killPause(t, r, sb.ID)
	list, err := e.open(t).ListSandboxes(ctx)
	if err != nil || len(list) != 1 || list[0].State != rt.SandboxNotReady {
		t.Fatalf("after kill -9 list = %+v, %v; want one notready sandbox", list, err)
	}
	if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

// TestSandboxCrashMidCreate stops creation after each step, as a crash
// would, and proves GC (from a new Runtime, as after a restart) removes
// what was made.
func TestSandboxCrashMidCreate(t *testing.T) {
	for _, step := range []string{stepLease, stepRecorded, stepPause, stepNetNS, stepVeth, stepPorts} {
		t.Run(step, func(t *testing.T) {
			e := newTestEnv(t)
			r := e.open(t)
			ctx := context.Background()
			keep, err := r.CreateSandbox(ctx, podConfig("keep"))
			if err != nil {
				t.Fatal(err)
			}
			r.crashAt = step
			if _, err := r.CreateSandbox(ctx, podConfig("crash")); !errors.Is(err, errSimulatedCrash) {
				t.Fatalf("err = %v; want the simulated crash", err)
			}
			rep, err := e.open(t).GC(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Removed) == 0 {
				t.Error("GC removed nothing")
			}
			t.Logf("GC after crash at %s: %s", step, strings.Join(rep.Removed, "; "))
			if sb, err := r.GetSandbox(ctx, keep.ID); err != nil || sb.State != rt.SandboxReady {
				t.Errorf("GC touched the healthy sandbox: %+v %v", sb, err)
			}
			r.crashAt = ""
			if err := r.RemoveSandbox(ctx, keep.ID); err != nil {
				t.Fatal(err)
			}
			e.check(t)
		})
	}
}

// TestSandboxGCOrphans plants kernel objects with the runtime's names but
// no record, and one with another prefix that GC must not touch.
func TestSandboxGCOrphans(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, podConfig("orphaned"))
	if err != nil {
		t.Fatal(err)
	}
	// Lose the record: the netns, veth, lease and pause become orphans.
	rec, _ := r.sandboxRecord(sb.ID)
	if err := os.RemoveAll(rec.Dir); err != nil {
		t.Fatal(err)
	}
	// A foreign netns with a similar name must survive.
	foreign := "x" + e.cfg.NetNSPrefix + "foreign"
	err = onThreadIn(nil, func() error {
		// NewNamed moves its thread into the new namespace; onThreadIn's
		// thread is discarded afterwards.
		h, err := netns.NewNamed(foreign)
		if err == nil {
			h.Close()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer netns.DeleteNamed(foreign)
	rep, err := e.open(t).GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(rep.Removed, "\n")
	for _, want := range []string{"pause", "netns " + sb.NetNSName} {
		if !strings.Contains(joined, want) {
			t.Errorf("GC report lacks %q:\n%s", want, joined)
		}
	}
	// The lease was freed when the new Runtime reconciled the pool at start.
	if _, held, _ := r.pool.Lookup(sb.ID); held {
		t.Errorf("lease of %s outlived its record", sb.ID)
	}
	if _, err := os.Stat("/run/netns/" + foreign); err != nil {
		t.Errorf("GC removed a foreign netns: %v", err)
	}
	e.check(t)
}

func TestSandboxConcurrent100(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	const n = 100
	sbs := make([]*rt.Sandbox, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sbs[i], errs[i] = r.CreateSandbox(ctx, podConfig(fmt.Sprintf("c%03d", i)))
		}()
	}
	wg.Wait()
	ips := map[string]string{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		if other, dup := ips[sbs[i].IP]; dup {
			t.Errorf("IP %s given to %s and %s", sbs[i].IP, other, sbs[i].ID)
		}
		ips[sbs[i].IP] = sbs[i].ID
	}
	// The census must see what is live, or its silence later means nothing.
	seen := map[string]int{}
	for _, l := range e.census.Leaks() {
		seen[strings.Fields(l)[0]]++
	}
	for _, kind := range []string{"netns", "bridge", "process", "lease", "file"} {
		if seen[kind] < n {
			t.Errorf("census sees %d %s objects for %d live sandboxes; it is blind", seen[kind], kind, n)
		}
	}
	list, err := e.open(t).ListSandboxes(ctx)
	if err != nil || len(list) != n {
		t.Fatalf("listed %d, %v; want %d", len(list), err, n)
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.RemoveSandbox(ctx, sbs[i].ID)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("remove %d: %v", i, errs[i])
		}
	}
	e.check(t)
}

func TestSandboxSharedPIDAndHostNamespaces(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	cfg := podConfig("shared")
	cfg.Namespaces = rt.NamespaceOptions{PID: rt.NamespacePod}
	sb, err := r.CreateSandbox(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", sb.PausePID))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "NSpid:") {
			f := strings.Fields(line)
			if f[len(f)-1] != "1" {
				t.Errorf("pause NSpid %q; want PID 1 in the pod's PID namespace", line)
			}
		}
	}

	host := podConfig("hostns")
	host.Namespaces = rt.NamespaceOptions{Network: rt.NamespaceNode, IPC: rt.NamespaceNode}
	hsb, err := r.CreateSandbox(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"net", "ipc", "pid", "uts"} {
		got, _ := nsInode(fmt.Sprintf("/proc/%d/ns/%s", hsb.PausePID, kind))
		want, _ := nsInode(fmt.Sprintf("/proc/%d/ns/%s", os.Getppid(), kind))
		if got != want {
			t.Errorf("host-namespace pause: %s namespace %d, host %d", kind, got, want)
		}
	}
	if hsb.IP != "" || hsb.NetNSPath != "" {
		t.Errorf("host-network sandbox has IP %q netns %q", hsb.IP, hsb.NetNSPath)
	}
	for _, id := range []string{sb.ID, hsb.ID} {
		if err := r.RemoveSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	e.check(t)
}

func TestSandboxRefusesBadIDs(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	for _, id := range []string{"", "..", "../etc", "a/b", ".hidden", strings.Repeat("x", 65)} {
		if err := r.RemoveSandbox(ctx, id); !errors.Is(err, rt.ErrInvalidConfig) {
			t.Errorf("RemoveSandbox(%q) = %v; want ErrInvalidConfig", id, err)
		}
		if _, err := r.GetSandbox(ctx, id); !errors.Is(err, rt.ErrInvalidConfig) {
			t.Errorf("GetSandbox(%q) = %v; want ErrInvalidConfig", id, err)
		}
	}
}

// TestSandboxLeaseReconcileAtStart: a new Runtime gives a live sandbox
// whose lease was lost its address back, and frees a lease nobody holds.
func TestSandboxLeaseReconcileAtStart(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, podConfig("leased"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.pool.Release(sb.ID); err != nil {
		t.Fatal(err)
	}
	stray, err := r.pool.Allocate("ghost")
	if err != nil {
		t.Fatal(err)
	}
	r2 := e.open(t)
	if a, held, err := r2.pool.Lookup(sb.ID); err != nil || !held || a.String() != sb.IP {
		t.Errorf("after restart %s holds %v (%v, %v); want its address %s back", sb.ID, a, held, err, sb.IP)
	}
	if _, held, _ := r2.pool.Lookup("ghost"); held {
		t.Errorf("lease %s of a sandbox that never existed survived the restart", stray)
	}
	if err := r2.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

// TestSandboxGCHiddenDirs: directories a crash left while publishing (its
// creator gone) or retiring a sandbox are removed by GC; one being
// published by a live process is not.
func TestSandboxGCHiddenDirs(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	dir := r.sandboxesDir()
	dead := dir + "/" + deadDirPrefix + "abc-0123"
	orphan := fmt.Sprintf("%s/%sdef-%d-%d", dir, newDirPrefix, 999999999, 1)
	live := fmt.Sprintf("%s/%sghi-%d-%d", dir, newDirPrefix, os.Getppid(), must(procid.Of(os.Getppid())).Start)
	for _, d := range []string{dead, orphan, live} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d+"/sandbox.json", []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := r.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 2 {
		t.Errorf("GC removed %v; want the retired and the orphaned directory", rep.Removed)
	}
	for _, d := range []string{dead, orphan} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived GC: %v", d, err)
		}
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("GC removed a directory a live process is publishing: %v", err)
	}
	os.RemoveAll(live)
	e.check(t)
}

// TestSandboxSharedPIDRemovedAtOnce: a PID-1 pause removed before its
// runtime installed a SIGTERM handler (which PID 1 needs to see TERM) is
// still removed, without waiting out the grace period.
func TestSandboxSharedPIDRemovedAtOnce(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	r.stopGrace = time.Hour // a wait for TERM would hang the test
	ctx := context.Background()
	for i := range 5 {
		cfg := podConfig(fmt.Sprintf("pid1-%d", i))
		cfg.Namespaces.PID = rt.NamespacePod
		sb, err := r.CreateSandbox(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	e.check(t)
}

// TestSandboxAddressExhaustion: a full pool is a clear error, and the
// failed creation leaves nothing behind.
func TestSandboxAddressExhaustion(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.Subnet = "10.201.0.16/29" // .18-.22: five pods; outside the /24s other tests take
	r := e.open(t)
	ctx := context.Background()
	ids := fillPool(t, r, 5)
	_, err := r.CreateSandbox(ctx, podConfig("one-too-many"))
	if !errors.Is(err, ipam.ErrExhausted) || !strings.Contains(err.Error(), "10.201.0.16/29") {
		t.Fatalf("sixth create: err = %v; want ipam.ErrExhausted naming the subnet", err)
	}
	if list, _ := r.ListSandboxes(ctx); len(list) != 5 {
		t.Errorf("the failed creation left a sandbox: %d listed", len(list))
	}
	for _, id := range ids {
		if err := r.RemoveSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	e.check(t)
}

// fillPool creates n sandboxes and returns their IDs.
func fillPool(t *testing.T, r *Runtime, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		sb, err := r.CreateSandbox(context.Background(), podConfig(fmt.Sprintf("fill%d", i)))
		if err != nil {
			t.Fatalf("create %d of %d: %v", i, n, err)
		}
		ids = append(ids, sb.ID)
	}
	return ids
}

// TestSandboxGCConcurrentWithCreate runs GC passes while sandboxes are
// being created: GC must never take anything from a creation in flight.
func TestSandboxGCConcurrentWithCreate(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	const n = 30
	stop := make(chan struct{})
	gcDone := make(chan []string)
	go func() {
		var removed []string
		gc := e.open(t) // another Runtime object, as a second agent pass would be
		for {
			select {
			case <-stop:
				gcDone <- removed
				return
			default:
			}
			rep, err := gc.GC(ctx)
			if err != nil {
				t.Errorf("GC: %v", err)
			}
			if rep != nil {
				removed = append(removed, rep.Removed...)
			}
		}
	}()
	var ids []string
	for i := range n {
		sb, err := r.CreateSandbox(ctx, podConfig(fmt.Sprintf("race%d", i)))
		if err != nil {
			t.Errorf("create %d: %v", i, err)
			continue
		}
		ids = append(ids, sb.ID)
	}
	close(stop)
	if removed := <-gcDone; len(removed) != 0 {
		t.Errorf("GC removed objects of healthy sandboxes: %v", removed)
	}
	for _, id := range ids {
		sb, err := r.GetSandbox(ctx, id)
		if err != nil || sb.State != rt.SandboxReady {
			t.Errorf("sandbox %s after concurrent GC: %+v, %v", id, sb, err)
			continue
		}
		if err := ping("", sb.IP); err != nil {
			t.Errorf("sandbox %s unreachable after concurrent GC: %v", id, err)
		}
		if err := r.RemoveSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	e.check(t)
}

// TestSandboxPauseReapsOrphans: with a shared PID namespace the pause is
// PID 1 there, inherits orphans and reaps them when they exit.
func TestSandboxPauseReapsOrphans(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	cfg := podConfig("reaper")
	cfg.Namespaces.PID = rt.NamespacePod
	sb, err := r.CreateSandbox(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	children := func() string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", sb.PausePID, sb.PausePID))
		return strings.TrimSpace(string(b))
	}
	// The shell exits at once; its background child is orphaned into the
	// pause, and exits after a moment that the shell's exit certainly
	// precedes.
	err = onThreadIn(map[string]string{"pid": fmt.Sprintf("/proc/%d/ns/pid", sb.PausePID)}, func() error {
		cmd := exec.Command("/bin/sh", "-c", "sleep 1 </dev/null >/dev/null 2>&1 & exit 0")
		return cmd.Run()
	})
	if err != nil {
		t.Fatal(err)
	}
	if children() == "" {
		t.Fatal("the orphan was not reparented to the pause")
	}
	// Bounded only so a broken pause fails instead of hanging.
	for deadline := time.Now().Add(30 * time.Second); children() != ""; {
		if time.Now().After(deadline) {
			t.Fatalf("pause still has child(ren) %s: orphans are not reaped", children())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}
