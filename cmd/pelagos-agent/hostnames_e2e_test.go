package main

import (
	"context"
	"fmt"
	stdmaps "maps"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// runRefused runs an agent that must refuse to start and returns what it
// said. An agent that starts instead is killed after a while (it would
// run for ever) and fails the test.
func runRefused(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the agent did not refuse to start (killed after 30 s); it said:\n%s", out)
	}
	if err == nil {
		t.Fatalf("the agent exited 0; it said:\n%s", out)
	}
	return string(out)
}

// TestAgentsShareNoName runs one agent with a pod, then second agents
// (the real binary) with another state root that each share one of its
// host-wide names (issue 12): each refuses to start, naming the first
// agent's PID and state root, and leaves its pod alone. An agent that
// shares nothing runs beside it and its start-up GC removes nothing of
// the first's. Once the first agent has stopped (leaving its pod
// running), an agent on its netns prefix or bridge still refuses: those
// names belong to a live pod of another run root.
func TestAgentsShareNoName(t *testing.T) {
	a := newAgentEnv(t)
	a.start()
	a.write("rev1", "web.yaml", podYAML("web", "web", "v1"))
	before := ids(a.running("web"))
	start := a.procStart("web", "app")
	netnsBefore := linuxtest.NetNS(a.tag + "-")
	if len(netnsBefore) != 1 {
		t.Fatalf("netns of the first agent: %v", netnsBefore)
	}
	untouched := func(when string) {
		t.Helper()
		p := a.running("web")
		if got := ids(p); !stdmaps.Equal(got, before) || a.procStart("web", "app") != start {
			t.Fatalf("%s: the first agent's pod changed: %v -> %v", when, before, got)
		}
		if got := linuxtest.NetNS(a.tag + "-"); len(got) != 1 || got[0] != netnsBefore[0] {
			t.Fatalf("%s: the first agent's netns: %v, want %v", when, got, netnsBefore)
		}
	}

	b := newAgentEnv(t)
	for b.subnet == a.subnet {
		b.subnet = linuxtest.FreeSubnet("10.203")
	}
	for _, share := range []struct{ flag, value, word string }{
		{"--bridge", a.tag, "bridge " + a.tag},
		{"--subnet", a.subnet, "subnet " + a.subnet},
		{"--netns-prefix", a.tag + "-", "netns-prefix " + a.tag + "-"},
		{"--nft-table", a.tag, "nftables-table " + a.tag},
		{"--cgroup-parent", a.tag, "cgroup-parent "},
		{"--run-root", a.runRoot, "run-root " + a.runRoot},
	} {
		t.Run(strings.TrimPrefix(share.flag, "--"), func(t *testing.T) {
			args := b.global()
			for i := range args {
				if args[i] == share.flag {
					args[i+1] = share.value
				}
			}
			out := runRefused(t, b.bin, append(args, "run", "--manifests", b.current, "--api-listen", "")...)
			t.Logf("sharing %s: %s", share.flag, strings.TrimSpace(out))
			want := []string{share.word, "is used by another pelagos-agent", fmt.Sprint(a.cmd.Process.Pid), "state root " + a.stateRoot, "give this one its own " + share.flag}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("the refusal does not say %q:\n%s", w, out)
				}
			}
			untouched("after an agent sharing " + share.flag)
		})
	}

	// Sharing nothing: it runs, and its GC leaves the first agent's pod.
	b.start()
	b.write("rev1", "other.yaml", podYAML("other", "other", "v1"))
	b.running("other")
	untouched("beside an agent sharing nothing")
	b.removeAll()
	b.stop(syscall.SIGTERM)

	// The first agent stops and leaves its pod running: its names still
	// belong to that pod.
	a.stop(syscall.SIGTERM)
	for _, share := range []struct{ flag, value, word string }{
		{"--netns-prefix", a.tag + "-", "belongs to a live pod of the agent with run root " + a.runRoot},
		{"--bridge", a.tag, "belongs to a live pod of the agent with run root " + a.runRoot},
	} {
		args := b.global()
		for i := range args {
			if args[i] == share.flag {
				args[i+1] = share.value
			}
		}
		if out := runRefused(t, b.bin, append(args, "run", "--manifests", b.current, "--api-listen", "")...); !strings.Contains(out, share.word) {
			t.Errorf("an agent on the stopped agent's %s: %q does not say %q", share.flag, out, share.word)
		}
	}
	a.start()
	untouched("after the first agent came back")
	a.removeAll()
	a.stop(syscall.SIGTERM)
	a.census().Check(t, 10*time.Second)
	b.census().Check(t, 10*time.Second)
	if ents, _ := os.ReadDir("/run/pelagos/locks"); len(ents) > 0 {
		for _, e := range ents {
			if strings.Contains(e.Name(), a.tag) || strings.Contains(e.Name(), b.tag) {
				t.Errorf("census: lock file %s left", e.Name())
			}
		}
	}
}
