package linux

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
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
		StateRoot:   t.TempDir(),
		RunRoot:     t.TempDir(),
		Bridge:      tag,
		Subnet:      fmt.Sprintf("10.201.%d.0/24", n+1),
		NetNSPrefix: tag + "-",
		NFTable:     tag, // per test: rules never land in another agent's table
	}
	e := &testEnv{cfg: cfg, census: linuxtest.Census{
		NetNSPrefix: cfg.NetNSPrefix,
		Bridge:      cfg.Bridge,
		ProcessArg:  cfg.RunRoot,
		MountDirs:   []string{cfg.RunRoot}, // the pod-files tmpfs
		EmptyDirs:   []string{cfg.RunRoot},
		StateRoot:   cfg.StateRoot,
	}}
	t.Cleanup(func() {
		// Whatever a failed test left is removed, after the census has
		// had its say in the test body.
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
		}
		if l, err := netlink.LinkByName(cfg.Bridge); err == nil {
			netlink.LinkDel(l)
		}
	})
	return e
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func (e *testEnv) open(t testing.TB) *Runtime {
	t.Helper()
	rt, err := New(e.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return rt
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
