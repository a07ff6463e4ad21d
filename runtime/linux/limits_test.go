package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
)

// cgroupValue reads one cgroup file of rel below the test's parent.
func (e *ctrEnv) cgroupValue(t testing.TB, hierarchy, rel, file string) string {
	t.Helper()
	if e.cg.Unified {
		hierarchy = ""
	}
	d, err := e.cg.Dir(hierarchy, rel)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(d, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestContainerExtremeLimits starts a container with limits no kernel can
// express and reads back what landed in its cgroup: the largest finite
// values, not a wrapped 1 % of a CPU, 2 shares, or no memory limit at all.
// A negative limit (what a wrapped conversion produces) is refused.
func TestContainerExtremeLimits(t *testing.T) {
	e := newCtrEnv(t, nil)
	c := e.startSleeper(t, "extreme", func(cfg *runtime.ContainerConfig) {
		cfg.Resources = runtime.Resources{
			CPULimitMilli:   1e14, // 1e11 cores
			CPURequestMilli: 1e16, // 1e13 cores
			MemoryLimit:     math.MaxInt64,
			PidsLimit:       math.MaxInt64,
		}
	})
	rel := ctrCgroup(e.sb.ID, c.ID)
	maxMem := strconv.FormatInt(cgroups.MaxMemory(), 10)
	want := map[[2]string]string{{"pids", "pids.max"}: "4194304"}
	if e.cg.Unified {
		want[[2]string{"", "memory.max"}] = maxMem
		want[[2]string{"", "cpu.max"}] = "17592186044415 100000"
		want[[2]string{"", "cpu.weight"}] = "10000"
	} else {
		want[[2]string{"memory", "memory.limit_in_bytes"}] = maxMem
		want[[2]string{"cpu", "cpu.cfs_period_us"}] = "100000"
		want[[2]string{"cpu", "cpu.cfs_quota_us"}] = "17592186044415"
		want[[2]string{"cpu", "cpu.shares"}] = "262144"
	}
	for k, v := range want {
		if got := e.cgroupValue(t, k[0], rel, k[1]); got != v {
			t.Errorf("%s = %s, want %s", k[1], got, v)
		}
	}
	for _, res := range []runtime.Resources{{MemoryLimit: -1}, {CPULimitMilli: math.MinInt64}, {CPURequestMilli: -1000}, {PidsLimit: -2}} {
		cfg := e.config("negative", "/bin/true")
		cfg.Resources = res
		_, err := e.rt.StartContainer(context.Background(), cfg)
		if !errors.Is(err, runtime.ErrInvalidConfig) || !strings.Contains(err.Error(), "negative") {
			t.Errorf("start with %+v: %v, want a negative-limit ErrInvalidConfig", res, err)
		}
	}
	if err := e.rt.StopContainer(context.Background(), c.ID, 0); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

// TestPodPidsLimitHoldsForkBomb: two containers of one pod run a fork bomb
// that never gives up. Each container alone may have 200 processes; the
// pod together only 48, so only the pod's limit can hold them. While the
// bomb runs, another pod starts and an exec in it works; then the bomb's
// pod is removed cleanly.
func TestPodPidsLimitHoldsForkBomb(t *testing.T) {
	e := newCtrEnv(t, nil)
	const podLimit = 48
	e.rt.cfg.PodPidsLimit = podLimit
	ctx := context.Background()
	// The outer loop starts a new inner shell whenever one dies of a
	// failed fork: the pressure never stops until the pod is removed.
	bomb := `while :; do sh -c 'while :; do sleep 1000 & done' 2>/dev/null; done`
	var bombs []*runtime.Container
	for _, name := range []string{"bomb-a", "bomb-b"} {
		cfg := e.config(name, "/bin/sh", "-c", bomb)
		// Polite to the shared machine: the bomb spins at its limit.
		cfg.Resources = runtime.Resources{PidsLimit: 200, CPULimitMilli: 250}
		c, err := e.rt.StartContainer(ctx, cfg)
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		bombs = append(bombs, c)
	}
	pod := podCgroup(e.sb.ID)
	if got := e.cgroupValue(t, "pids", pod, "pids.max"); got != strconv.Itoa(podLimit) {
		t.Fatalf("pod pids.max = %s, want %d", got, podLimit)
	}
	// Wait until the bomb presses against a limit: the pod is full.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cur, _ := strconv.Atoi(e.cgroupValue(t, "pids", pod, "pids.current"))
		if cur >= podLimit-2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bomb never filled the pod: pids.current %d", cur)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Sampled while the bomb keeps forking: never more than the pod may
	// hold, though each container alone could have had 200. The kernel
	// charges a fork before it checks the limit and takes the charge back
	// when it refuses, so a read may see one such charge per CPU forking at
	// that moment. The containers' counts are read one after the other
	// while processes die in one and are forked in the other, so their sum
	// may also be off by one per container read after the first.
	slack := goruntime.NumCPU()
	for range 20 {
		if n, _ := strconv.Atoi(e.cgroupValue(t, "pids", pod, "pids.current")); n > podLimit+slack {
			t.Fatalf("the pod holds %d processes, over its limit %d", n, podLimit)
		}
		total := 0
		for _, c := range bombs {
			n, _ := strconv.Atoi(e.cgroupValue(t, "pids", ctrCgroup(e.sb.ID, c.ID), "pids.current"))
			total += n
		}
		if total > podLimit+slack+len(bombs)-1 {
			t.Fatalf("the pod's containers hold %d processes, over the pod's limit %d", total, podLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The kernel counted refused forks: v1 in the cgroup that forked (the
	// containers, whose own limits were never reached), v2 in the cgroup
	// whose limit refused (the pod).
	refused := 0
	events := []string{pod}
	if !e.cg.Unified {
		events = []string{ctrCgroup(e.sb.ID, bombs[0].ID), ctrCgroup(e.sb.ID, bombs[1].ID)}
	}
	for _, rel := range events {
		n, _ := strconv.Atoi(strings.TrimPrefix(e.cgroupValue(t, "pids", rel, "pids.events"), "max "))
		refused += n
	}
	if refused == 0 {
		t.Errorf("no fork was refused (pids.events of %v)", events)
	}
	// All pods together are limited too, leaving the host room.
	capacity, err := hostPidCapacity()
	if err != nil {
		t.Fatal(err)
	}
	h := "pids"
	if e.cg.Unified {
		h = ""
	}
	podDir, _ := e.cg.Dir(h, pod)
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(podDir), "pids.max")); err != nil ||
		strings.TrimSpace(string(b)) != fmt.Sprint(capacity-DefaultReservedPids(capacity)) {
		t.Errorf("parent pids.max = %q, %v; want %d", b, err, capacity-DefaultReservedPids(capacity))
	}

	// Meanwhile another pod starts, and an exec in it works.
	other, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "calm-" + e.sb.ID[:6]}})
	if err != nil {
		t.Fatalf("create a second pod while the bomb runs: %v", err)
	}
	calmCfg := &runtime.ContainerConfig{SandboxID: other.ID, Name: "calm", Image: testImage, Command: []string{"/bin/sleep", "1000"}}
	calm, err := e.rt.StartContainer(ctx, calmCfg)
	if err != nil || calm.State != runtime.ContainerRunning {
		t.Fatalf("start a container in the second pod: %v", err)
	}
	var out bytes.Buffer
	if code, err := e.rt.Exec(ctx, calm.ID, runtime.ExecOptions{Cmd: []string{"sh", "-c", "echo calm; ls / >/dev/null"}, Stdout: &out, Stderr: &out}); err != nil || code != 0 || strings.TrimSpace(out.String()) != "calm" {
		t.Errorf("exec in the second pod: code %d, %v, output %q", code, err, out.String())
	}
	if got := e.cgroupValue(t, "pids", podCgroup(other.ID), "pids.max"); got != strconv.Itoa(podLimit) {
		t.Errorf("second pod pids.max = %s", got)
	}
	// The bomb's pod goes cleanly, every process with it.
	if err := e.rt.RemoveSandbox(ctx, e.sb.ID); err != nil {
		t.Fatalf("remove the bomb's pod: %v", err)
	}
	if e.cg.Exists(pod) {
		t.Error("the bomb's pod cgroup is left")
	}
	if err := e.rt.RemoveSandbox(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

// TestPodPidsDefaultIsSumOfContainers: without a configured pod limit the
// pod may hold what its running containers may, summed; an exited
// container no longer counts.
func TestPodPidsDefaultIsSumOfContainers(t *testing.T) {
	e := newCtrEnv(t, nil)
	pod := podCgroup(e.sb.ID)
	withPids := func(n int64) func(*runtime.ContainerConfig) {
		return func(c *runtime.ContainerConfig) { c.Resources.PidsLimit = n }
	}
	a := e.startSleeper(t, "a", withPids(30))
	if got := e.cgroupValue(t, "pids", pod, "pids.max"); got != "30" {
		t.Errorf("one container: pod pids.max = %s, want 30", got)
	}
	e.startSleeper(t, "b", withPids(12))
	if got := e.cgroupValue(t, "pids", pod, "pids.max"); got != "42" {
		t.Errorf("two containers: pod pids.max = %s, want 42", got)
	}
	if err := e.rt.StopContainer(context.Background(), a.ID, 0); err != nil {
		t.Fatal(err)
	}
	e.startSleeper(t, "c", nil) // the runtime's default per container
	if got := e.cgroupValue(t, "pids", pod, "pids.max"); got != strconv.Itoa(12+DefaultPidsLimit) {
		t.Errorf("after a stopped and c started: pod pids.max = %s, want %d", got, 12+DefaultPidsLimit)
	}
	e.check(t)
}

func TestPidsConfigRefused(t *testing.T) {
	if got := DefaultReservedPids(32768); got != 3276 {
		t.Errorf("DefaultReservedPids(32768) = %d", got)
	}
	if got := DefaultReservedPids(4194304); got != 419430 {
		t.Errorf("DefaultReservedPids(4194304) = %d", got)
	}
	if got := DefaultReservedPids(1000); got != 500 {
		t.Errorf("DefaultReservedPids(1000) = %d, want half of a tiny capacity", got)
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{PodPidsLimit: -2}, "pod pids limit -2"},
		{Config{ReservedPids: -3}, "reserved PIDs -3"},
		{Config{ReservedPids: 1 << 40}, "leave none for pods"},
	} {
		r := &Runtime{cfg: c.cfg}
		if err := r.checkPidsLimits(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	r := &Runtime{cfg: Config{ReservedPids: -1, PodPidsLimit: -1}}
	if n, err := r.allPodsPidsMax(); err != nil || n != 0 {
		t.Errorf("ReservedPids -1: %d, %v; want no parent limit", n, err)
	}
}
