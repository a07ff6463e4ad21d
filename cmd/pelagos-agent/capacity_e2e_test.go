package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

func smallPodYAML(name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
`, name)
}

// --max-pods on the real runtime (issue 12): with twice as many manifests
// as places, the oldest manifests run and the others wait, Pending with
// OutOfCapacity, owning no sandbox, netns or IP lease; removing a running
// pod admits the next in line without waiting for a resync (there is none
// for an hour here).
func TestAgentMaxPods(t *testing.T) {
	e := newAgentEnv(t, "--max-pods", "2", "--resync", "1h")
	// Written before the agent starts, so the first load holds all four and
	// only the creation order (not the name order) decides.
	order := []string{"cap-d", "cap-c", "cap-b", "cap-a"}
	for _, n := range order {
		e.write("rev1", n+".yaml", smallPodYAML(n))
		time.Sleep(10 * time.Millisecond) // distinct birth times
	}
	e.start()
	e.running("cap-d")
	e.running("cap-c")
	waiting := func(name string, pos int) {
		t.Helper()
		e.eventually(name+" waiting for a place", func() error {
			p, err := e.pod(name)
			if err != nil {
				return err
			}
			st := p.Status
			if st.Phase != reconcile.PhasePending || st.Reason != "OutOfCapacity" ||
				!strings.Contains(st.Message, "maximum of 2 pods") || !strings.Contains(st.Message, fmt.Sprintf("number %d in line", pos)) {
				return fmt.Errorf("status %s %s %q", st.Phase, st.Reason, st.Message)
			}
			if st.Pelagos.SandboxID != "" || st.PodIP != "" {
				return fmt.Errorf("a waiting pod owns sandbox %q, IP %q", st.Pelagos.SandboxID, st.PodIP)
			}
			return nil
		})
	}
	waiting("cap-b", 1)
	waiting("cap-a", 2)
	owned := func(want int) {
		t.Helper()
		if ns := linuxtest.NetNS(e.tag + "-"); len(ns) != want {
			t.Errorf("%d netns %v, want %d: a waiting pod owns kernel objects", len(ns), ns, want)
		}
		if l := linuxtest.Leases(e.stateRoot); len(l) != want {
			t.Errorf("%d IP leases %v, want %d", len(l), l, want)
		}
		out, _, code := e.cli("sandbox", "ls")
		if n := strings.Count(out, "cap-"); code != 0 || n != want {
			t.Errorf("sandbox ls (exit %d) shows %d pod sandboxes, want %d:\n%s", code, n, want, out)
		}
	}
	owned(2)
	out, _, _ := e.cli("get", "pods")
	if strings.Count(out, "OutOfCapacity") != 2 {
		t.Errorf("get pods does not show the two waiting pods:\n%s", out)
	}

	if err := os.Remove(filepath.Join(e.repo, "rev1", "cap-d.yaml")); err != nil {
		t.Fatal(err)
	}
	e.gone("cap-d")
	e.running("cap-b") // next by creation time, though cap-a sorts first
	waiting("cap-a", 1)
	owned(2)

	for _, n := range []string{"cap-c", "cap-b", "cap-a"} {
		if err := os.Remove(filepath.Join(e.repo, "rev1", n+".yaml")); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"cap-c", "cap-b", "cap-a"} {
		e.gone(n)
	}
	e.eventually("no lease left", func() error {
		if l := linuxtest.Leases(e.stateRoot); len(l) != 0 {
			return errors.New(strings.Join(l, " "))
		}
		return nil
	})
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}
