package manifest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

func podYAML(name, image string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\nspec:\n  containers:\n  - name: c\n    image: %s\n", name, image)
}

type watchHarness struct {
	t       *testing.T
	initial Load
	loads   chan Load
	w       *Watcher
}

// startWatch runs a watcher on dir and returns a harness that receives its
// loads. The trust check stays on: temp directories are root's and 0700.
func startWatch(t *testing.T, dir string) *watchHarness {
	t.Helper()
	w, err := NewWatcher(dir, Options{}, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &watchHarness{t: t, loads: make(chan Load, 100), w: w}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx, func(l Load) { h.loads <- l })
	}()
	t.Cleanup(func() { cancel(); <-done })
	h.initial = h.await("initial load", func(l Load) bool { return l.Reason == "initial" })
	return h
}

// await reads loads until one satisfies ok. The deadline only bounds a hang.
func (h *watchHarness) await(what string, ok func(Load) bool) Load {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	var last Load
	for {
		select {
		case l := <-h.loads:
			last = l
			if ok(l) {
				return l
			}
		case <-deadline:
			h.t.Fatalf("no load with %s; last: err=%v pods=%v", what, last.Err, podImages(last))
		}
	}
}

// podImages summarises a load as name=image for each valid pod.
func podImages(l Load) []string {
	if l.Snapshot == nil {
		return nil
	}
	var out []string
	for _, p := range l.Snapshot.SortedPods() {
		out = append(out, p.Pod.Metadata.Name+"="+p.Pod.Spec.Containers[0].Image)
	}
	return out
}

func hasPods(want ...string) func(Load) bool {
	return func(l Load) bool { return l.Err == nil && slices.Equal(podImages(l), want) }
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchFileEvents(t *testing.T) {
	dir := t.TempDir()
	h := startWatch(t, dir)
	web := filepath.Join(dir, "web.yaml")

	t.Run("create", func(t *testing.T) {
		write(t, web, podYAML("web", "busybox:1"))
		h.await("web created", hasPods("web=busybox:1"))
	})
	t.Run("write", func(t *testing.T) {
		write(t, web, podYAML("web", "busybox:2"))
		h.await("web rewritten", hasPods("web=busybox:2"))
	})
	t.Run("truncate then write", func(t *testing.T) {
		f, err := os.OpenFile(web, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // a slow writer: the empty file is seen
		if _, err := f.WriteString(podYAML("web", "busybox:3")); err != nil {
			t.Fatal(err)
		}
		f.Close()
		h.await("web after truncate+write", hasPods("web=busybox:3"))
	})
	t.Run("atomic rename over", func(t *testing.T) {
		tmp := filepath.Join(dir, ".web.yaml.tmp")
		write(t, tmp, podYAML("web", "busybox:4"))
		if err := os.Rename(tmp, web); err != nil {
			t.Fatal(err)
		}
		h.await("web renamed over", hasPods("web=busybox:4"))
	})
	t.Run("rename to ignored name and back", func(t *testing.T) {
		if err := os.Rename(web, web+".bak~"); err != nil {
			t.Fatal(err)
		}
		h.await("web gone", hasPods())
		if err := os.Rename(web+".bak~", web); err != nil {
			t.Fatal(err)
		}
		h.await("web back", hasPods("web=busybox:4"))
	})
	t.Run("vim save sequence", func(t *testing.T) {
		// vim: probe with 4913, rename the original to a backup, write the
		// new file, remove the backup.
		write(t, filepath.Join(dir, "4913"), "")
		os.Remove(filepath.Join(dir, "4913"))
		if err := os.Rename(web, web+"~"); err != nil {
			t.Fatal(err)
		}
		write(t, web, podYAML("web", "busybox:5"))
		os.Remove(web + "~")
		write(t, filepath.Join(dir, ".web.yaml.swp"), "swap")
		l := h.await("vim-saved web", hasPods("web=busybox:5"))
		if !slices.Contains(l.Snapshot.Ignored, ".web.yaml.swp") && len(l.Snapshot.Files) != 1 {
			t.Errorf("editor artifacts loaded: %v", l.Snapshot.Paths())
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := os.Remove(web); err != nil {
			t.Fatal(err)
		}
		h.await("web deleted", hasPods())
	})
}

func TestWatchGitSyncSymlinkSwap(t *testing.T) {
	root := t.TempDir()
	rev1, rev2 := filepath.Join(root, "rev1"), filepath.Join(root, "rev2")
	for _, d := range []string{rev1, rev2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(rev1, "web.yaml"), podYAML("web", "busybox:1"))
	write(t, filepath.Join(rev2, "web.yaml"), podYAML("web", "busybox:2"))
	write(t, filepath.Join(rev2, "db.yaml"), podYAML("db", "busybox:1"))
	link := filepath.Join(root, "current")
	if err := os.Symlink("rev1", link); err != nil {
		t.Fatal(err)
	}
	h := startWatch(t, link)
	if !hasPods("web=busybox:1")(h.initial) {
		t.Fatalf("initial load: %v %v", h.initial.Err, podImages(h.initial))
	}
	// ln -sfn rev2 current.tmp && mv -T current.tmp current
	if err := os.Symlink("rev2", link+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+".tmp", link); err != nil {
		t.Fatal(err)
	}
	h.await("rev2 after the swap", hasPods("db=busybox:1", "web=busybox:2"))
	// Edits in the new target are seen: the watch moved with the link.
	write(t, filepath.Join(rev2, "db.yaml"), podYAML("db", "busybox:9"))
	h.await("edit in the new target", hasPods("db=busybox:9", "web=busybox:2"))
	// The old target goes away, as git-sync prunes it: no effect.
	if err := os.RemoveAll(rev1); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(rev2, "web.yaml"), podYAML("web", "busybox:3"))
	h.await("still following rev2", hasPods("db=busybox:9", "web=busybox:3"))
}

func TestWatchConfigMapDataLayout(t *testing.T) {
	dir := t.TempDir()
	// The kubelet's projected layout: ..2026_1/web.yaml, ..data -> ..2026_1,
	// web.yaml -> ..data/web.yaml.
	mk := func(ts, image string) {
		d := filepath.Join(dir, ts)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(d, "web.yaml"), podYAML("web", image))
	}
	mk("..2026_1", "busybox:1")
	if err := os.Symlink("..2026_1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/web.yaml", filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	h := startWatch(t, dir)
	if !hasPods("web=busybox:1")(h.initial) {
		t.Fatalf("initial load: %v %v", h.initial.Err, podImages(h.initial))
	}
	mk("..2026_2", "busybox:2")
	if err := os.Symlink("..2026_2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "..2026_1"))
	h.await("after the ..data swap", hasPods("web=busybox:2"))
}

func TestWatchMissingDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "pods")
	w, err := NewWatcher(dir, Options{}, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &watchHarness{t: t, loads: make(chan Load, 100), w: w}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx, func(l Load) { h.loads <- l }) }()
	defer func() { cancel(); <-done }()
	l := h.await("initial", func(l Load) bool { return l.Reason == "initial" })
	if l.Err == nil {
		t.Fatal("a missing directory must be reported as no truth")
	}
	// The mount appears: seen through the parent watch.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "busybox:1"))
	h.await("directory appeared", hasPods("web=busybox:1"))
	// An empty directory is the truth: no pods.
	os.Remove(filepath.Join(dir, "web.yaml"))
	h.await("empty directory", hasPods())
	// Gone again: an error, never "no pods".
	os.Remove(dir)
	h.await("directory gone", func(l Load) bool { return l.Err != nil })
}

func TestWatchOverflowAndReload(t *testing.T) {
	dir := t.TempDir()
	h := startWatch(t, dir)
	h.w.fs.Errors <- fsnotify.ErrEventOverflow
	h.await("reload after overflow", func(l Load) bool { return l.Reason == "overflow" })
	h.w.Reload()
	h.await("explicit reload", func(l Load) bool { return l.Reason == "reload" })
}

func TestWatchUntrustedDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "busybox:1"))
	h := startWatch(t, dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	l := h.await("untrusted after chmod", func(l Load) bool { return l.Err != nil })
	if !strings.Contains(l.Err.Error(), dir) {
		t.Errorf("error does not name the directory: %v", l.Err)
	}
	os.Chmod(dir, 0o755)
	h.await("trusted again", hasPods("web=busybox:1"))
}
