package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// podPidsDir is the pids cgroup directory of a pod the test's agent made
// (the agent runs in this test's own cgroup, the parent is the tag).
func (e *agentEnv) podPidsDir(sandboxID string) string {
	e.t.Helper()
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "pids" {
			return filepath.Join("/sys/fs/cgroup/pids", parts[2], e.tag, "pod-"+sandboxID)
		}
		if parts[0] == "0" && parts[1] == "" {
			if _, err := os.Stat("/sys/fs/cgroup/pids"); errors.Is(err, os.ErrNotExist) {
				return filepath.Join("/sys/fs/cgroup", parts[2], e.tag, "pod-"+sandboxID)
			}
		}
	}
	e.t.Fatal("no pids cgroup in /proc/self/cgroup")
	return ""
}

func readInt(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return n
}

const bombPod = `apiVersion: v1
kind: Pod
metadata:
  name: bomb
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: busybox:1.36
    command: ["sh", "-c", "while :; do sh -c 'while :; do sleep 1000 & done' 2>/dev/null; done"]
    resources: {limits: {cpu: 250m}}
  - name: b
    image: busybox:1.36
    command: ["sh", "-c", "while :; do sh -c 'while :; do sleep 1000 & done' 2>/dev/null; done"]
    resources: {limits: {cpu: 250m}}
`

const calmPod = `apiVersion: v1
kind: Pod
metadata:
  name: calm
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    resources: {limits: {cpu: 100m, memory: 32Mi}}
`

// TestAgentLimitsEndToEnd runs the agent with a per-pod pids limit: a pod
// of two fork-bombing containers fills its own limit and no more; the API
// keeps answering, another pod starts and an exec in it works; the bomb's
// pod is removed cleanly. The agent says what OOM score it runs with, pods
// report their QoS class, and the image size caps are the CLI's flags.
func TestAgentLimitsEndToEnd(t *testing.T) {
	const podLimit = 40
	e := newAgentEnv(t, "--resync", "2s", "--pod-pids-limit", strconv.Itoa(podLimit))
	e.start()

	t.Run("the agent's OOM score", func(t *testing.T) {
		adj := readInt(t, fmt.Sprintf("/proc/%d/oom_score_adj", e.cmd.Process.Pid))
		log, _ := os.ReadFile(e.logPath)
		if linuxtest.HasCapability(t, unix.CAP_SYS_RESOURCE) {
			if adj != -998 {
				t.Errorf("agent oom_score_adj = %d, want -998", adj)
			}
			return
		}
		if !strings.Contains(string(log), fmt.Sprintf("oom_score_adj stays %d instead of -998", adj)) ||
			!strings.Contains(string(log), "CAP_SYS_RESOURCE") {
			t.Errorf("the agent did not say which OOM score it has and why; log:\n%s", log)
		}
	})

	t.Run("a fork bomb fills its pod and no more", func(t *testing.T) {
		e.write("rev1", "bomb.yaml", bombPod)
		p := e.running("bomb")
		if p.Status.QOSClass != reconcile.QOSBurstable {
			t.Errorf("bomb qosClass %q, want Burstable", p.Status.QOSClass)
		}
		dir := e.podPidsDir(p.Status.Pelagos.SandboxID)
		if got := readInt(t, filepath.Join(dir, "pids.max")); got != podLimit {
			t.Errorf("pod pids.max = %d, want %d", got, podLimit)
		}
		e.eventually("the bomb fills its pod", func() error {
			if n := readInt(t, filepath.Join(dir, "pids.current")); n < podLimit-2 {
				return fmt.Errorf("pids.current %d", n)
			}
			return nil
		})
		// While it presses on: the API answers, another pod starts, and
		// an exec in it works.
		e.write("rev1", "calm.yaml", calmPod)
		calm := e.running("calm")
		if calm.Status.QOSClass != reconcile.QOSGuaranteed {
			t.Errorf("calm qosClass %q, want Guaranteed", calm.Status.QOSClass)
		}
		if out, _, _ := e.cli("describe", "pod", "calm"); !strings.Contains(strings.Join(strings.Fields(out), " "), "QoS Class: Guaranteed") {
			t.Errorf("describe pod calm does not show the QoS class:\n%s", out)
		}
		if out := e.exec("calm", "app", "sh", "-c", "echo calm"); out != "calm" {
			t.Errorf("exec in calm: %q", out)
		}
		if n := readInt(t, filepath.Join(dir, "pids.current")); n > podLimit {
			t.Errorf("the bomb's pod holds %d processes, over its limit %d", n, podLimit)
		}
		if _, err := e.pod("bomb"); err != nil {
			t.Errorf("the API does not answer for the bomb: %v", err)
		}
		// The bomb's pod goes, every process with it.
		if err := os.Remove(filepath.Join(e.repo, "rev1", "bomb.yaml")); err != nil {
			t.Fatal(err)
		}
		e.gone("bomb")
		e.eventually("the bomb's pod cgroup removed", func() error {
			if _, err := os.Stat(dir); err == nil {
				return errors.New("still there")
			}
			return nil
		})
		if err := os.Remove(filepath.Join(e.repo, "rev1", "calm.yaml")); err != nil {
			t.Fatal(err)
		}
		e.gone("calm")
		// The agent's own argv names the run root: processes are counted
		// by cgroup while it runs.
		c := e.census()
		c.ProcessArg = ""
		c.Check(t, 10*time.Second)
		if procs := e.podProcesses(); len(procs) != 0 {
			t.Errorf("census: processes left in pod cgroups: %v", procs)
		}
	})

	t.Run("image size caps are flags", func(t *testing.T) {
		blob, err := imagetest.Bomb(imagetest.Zstd, 16<<30)
		if err != nil {
			t.Fatal(err)
		}
		base := imagetest.Image(t, v1.Config{}, imagetest.Zstd, []imagetest.Entry{imagetest.File("x", 0o644, []byte("x"))})
		dir := filepath.Join(t.TempDir(), "bomb")
		if err := imagetest.WriteOCILayout(dir, map[string]v1.Image{"pelagos.test/bomb:1": imagetest.WithRawLayer(t, base, 0, blob)}); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := e.cli("--max-layer-size", "8Mi", "image", "import", dir)
		if code == 0 || !strings.Contains(stderr, "uncompressed layer exceeds the cap of 8 MiB (--max-layer-size)") {
			t.Errorf("import of a bomb: exit %d, stderr %q", code, stderr)
		}
		out, _, _ := e.cli("image", "ls")
		if strings.Contains(out, "bomb") {
			t.Errorf("the bomb is listed: %q", out)
		}
		if _, _, code := e.cli("--max-layer-size", "ten", "image", "ls"); code != exitUsage {
			t.Errorf("--max-layer-size ten: exit %d, want %d", code, exitUsage)
		}
	})

	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}
