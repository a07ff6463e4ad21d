package linux

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/hostlock"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
)

// TestMain runs the tests, or plays the agent that a supervision test
// kills (starterEnv). The pause, shims and inits are the helper binaries
// embedded by runtime/linux/helperbin, as in the agent: make helpers
// builds them.
func TestMain(m *testing.M) {
	if os.Getenv(starterEnv) != "" {
		os.Exit(starterMain())
	}
	os.Exit(m.Run())
}

// Subnets come from 10.201.0.0/16, the range reserved for these tests: a
// /24 per environment, from a random start so that concurrent test
// processes rarely meet, and never twice in one process.
var subnetSeq = atomic.Int64{}
var subnetBase = rand.IntN(250)

// testEnv is one root test's private world: its own bridge, netns prefix,
// subnet, run root and state root.
type testEnv struct {
	cfg    Config
	census linuxtest.Census
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	linuxtest.RequireRoot(t)
	tag := linuxtest.RandomName("pt", 4)
	n := (subnetBase + int(subnetSeq.Add(1))) % 250
	cfg := Config{
		StateRoot:    t.TempDir(),
		RunRoot:      t.TempDir(),
		Bridge:       tag,
		Subnet:       fmt.Sprintf("10.201.%d.0/24", n+1),
		NetNSPrefix:  tag + "-",
		NFTable:      tag, // per test: rules never land in another agent's table
		CgroupParent: "pelagos-test-" + tag,
	}
	e := &testEnv{cfg: cfg, census: linuxtest.Census{
		NetNSPrefix: cfg.NetNSPrefix,
		Bridge:      cfg.Bridge,
		ProcessArg:  cfg.RunRoot,
		MountDirs:   []string{cfg.RunRoot}, // the pod-files tmpfs
		EmptyDirs:   []string{cfg.RunRoot},
		StateRoot:   cfg.StateRoot,
		Owners:      cfg.RunRoot,
	}}
	t.Cleanup(func() { e.cleanup(t) })
	return e
}

// cleanup removes whatever a failed test left, after the census has had
// its say in the test body.
func (e *testEnv) cleanup(t testing.TB) {
	cfg := e.cfg
	if rt, err := New(cfg); err == nil {
		for _, sb := range must(rt.ListSandboxes(context.Background())) {
			rt.RemoveSandbox(context.Background(), sb.ID)
		}
		rt.GC(context.Background())
		// The table outlives sandboxes by design (an agent keeps it
		// across restarts); a test's table goes with the test.
		if err := rt.net.nft.Teardown(); err != nil {
			t.Errorf("delete nftables table %s: %v", cfg.NFTable, err)
		}
		rt.Close()
	} else {
		t.Errorf("cleanup: %v", err)
	}
	if l, err := netlink.LinkByName(cfg.Bridge); err == nil {
		netlink.LinkDel(l)
	}
	if cg, err := cgroups.New(cfg.CgroupParent); err == nil {
		if err := cg.RemoveParent(); err != nil {
			t.Errorf("census: cgroup parent %s: %v", cg.Parent(), err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// open returns a Runtime for the environment, closed when the test ends.
func (e *testEnv) open(t testing.TB) *Runtime {
	t.Helper()
	return openRuntime(t, &e.cfg)
}

// openRuntime returns a Runtime for cfg that gives its host-wide names
// back when the test ends. The subnets of test processes that run at once
// (tests of several worktrees share the machine) may meet: a /24 another
// process holds is replaced by the next one of its /16 in cfg.
func openRuntime(t testing.TB, cfg *Config) *Runtime {
	t.Helper()
	for tries := 0; ; tries++ {
		rt, err := New(*cfg)
		var ce *hostlock.ConflictError
		if errors.As(err, &ce) && ce.Want.Kind == hostlock.Subnet && tries < 250 && nextSubnet(cfg) {
			continue
		}
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { rt.Close() })
		return rt
	}
}

// nextSubnet moves cfg to the next /24 of its /16 (1 to 250).
func nextSubnet(cfg *Config) bool {
	p, err := netip.ParsePrefix(cfg.Subnet)
	if err != nil || p.Bits() != 24 {
		return false
	}
	a := p.Addr().As4()
	a[2] = a[2]%250 + 1
	cfg.Subnet = netip.PrefixFrom(netip.AddrFrom4(a), 24).String()
	return true
}

// check runs the census: nothing of this environment may be left but the
// bridge itself.
func (e *testEnv) check(t testing.TB) {
	t.Helper()
	e.census.Check(t, 10*time.Second)
}

// killPause SIGKILLs the sandbox's pause and waits for it to die.
func killPause(t testing.TB, rt *Runtime, id string) {
	t.Helper()
	rec, err := rt.sandboxRecord(id)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(rec.Pause.PID, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", rec.Pause.PID, err)
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		t.Fatalf("kill pause %d: %v", rec.Pause.PID, err)
	}
	if exited, err := procid.WaitFD(fd, time.Minute); err != nil || !exited {
		t.Fatalf("pause %d did not die: %v", rec.Pause.PID, err)
	}
}

var _ runtime.Runtime = (*Runtime)(nil)
