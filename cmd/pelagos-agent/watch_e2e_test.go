package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentKeepsPodAcrossFileReplace runs the agent and replaces a pod's
// manifest with identical bytes the ways tools do it, several of which
// leave the file missing for a moment (install, a backup-rename save,
// vim's rename-and-write, a symlink made again). The pod must never be
// removed or recreated: same sandbox, same containers, no Killing or
// Removed event. A symlinked manifest whose target disappears keeps its
// pod and shows the error; a real delete still removes the pod.
//
// The settle time is raised to 1 s and the steps of each save are spaced
// as on a loaded machine (200 ms), so the absence is seen by the agent
// every time without a slow `cp` ever outlasting the settle time; the
// default's value comes from measurement (manifest.DefaultSettle).
func TestAgentKeepsPodAcrossFileReplace(t *testing.T) {
	const settle = time.Second
	e := newAgentEnv(t, "--resync", "1s", "--removal-settle", settle.String())
	e.start()
	dir := filepath.Join(e.repo, "rev1")
	f := filepath.Join(dir, "keep.yaml")
	content := podYAML("keep", "keep-host", "v1")
	e.write("rev1", "keep.yaml", content)
	before := ids(e.running("keep"))

	// unchanged waits out the settle time (plus a resync) and checks the
	// pod was neither stopped nor recreated.
	unchanged := func(t *testing.T) {
		t.Helper()
		time.Sleep(2*settle + time.Second)
		if after := ids(e.running("keep")); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("the pod was recreated or restarted: %v -> %v", before, after)
		}
		evs, err := e.client.Events(context.Background(), "default", "keep")
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Reason == "Killing" || ev.Reason == "Removed" {
				t.Fatalf("event %s: %s", ev.Reason, ev.Message)
			}
		}
	}
	run := func(t *testing.T, script string) {
		t.Helper()
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	src := filepath.Join(t.TempDir(), "keep.yaml")
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(e.repo, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(store, "keep.yaml")

	t.Run("install (unlink and create)", func(t *testing.T) {
		run(t, fmt.Sprintf("install -m 0644 %q %q", src, f))
		unchanged(t)
	})
	t.Run("backup-rename save: mv f f~; cp f~ f", func(t *testing.T) {
		run(t, fmt.Sprintf("mv %q %q && sleep 0.2 && cp %q %q && rm %q", f, f+"~", f+"~", f, f+"~"))
		unchanged(t)
	})
	t.Run("vim-style save: rename to a backup, write, remove the backup", func(t *testing.T) {
		if err := os.Rename(f, f+"~"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(f + "~")
		unchanged(t)
	})
	t.Run("rsync --delay-updates style: write aside, rename over", func(t *testing.T) {
		tmp := filepath.Join(dir, ".~tmp~")
		if err := os.Mkdir(tmp, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "keep.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(tmp, "keep.yaml"), f); err != nil {
			t.Fatal(err)
		}
		os.Remove(tmp)
		unchanged(t)
	})
	t.Run("the manifest becomes a symlink, then is re-pointed", func(t *testing.T) {
		if err := os.WriteFile(target, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, fmt.Sprintf("ln -sfn %q %q", target, f))
		unchanged(t)
		other := filepath.Join(store, "keep-copy.yaml")
		if err := os.WriteFile(other, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, fmt.Sprintf("rm %q && sleep 0.2 && ln -s %q %q", f, other, f))
		unchanged(t)
		run(t, fmt.Sprintf("ln -sfn %q %q", target, f))
		unchanged(t)
	})
	t.Run("dangling symlink: the pod is kept and the error shown", func(t *testing.T) {
		if err := os.Remove(target); err != nil {
			t.Fatal(err)
		}
		e.eventually("the dangling symlink reported", func() error {
			out, _, _ := e.cli("get", "pods")
			if !strings.Contains(out, "Manifest errors") || !strings.Contains(out, "dangling symlink") {
				return fmt.Errorf("get pods:\n%s", out)
			}
			return nil
		})
		unchanged(t)
		if err := os.WriteFile(target, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		e.eventually("the error cleared", func() error {
			out, _, _ := e.cli("get", "pods")
			if strings.Contains(out, "dangling") {
				return fmt.Errorf("get pods:\n%s", out)
			}
			return nil
		})
		unchanged(t)
	})
	t.Run("a real delete removes the pod", func(t *testing.T) {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		e.gone("keep")
	})
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
	if procs := e.podProcesses(); len(procs) != 0 {
		t.Errorf("census: processes left in pod cgroups: %v", procs)
	}
}
