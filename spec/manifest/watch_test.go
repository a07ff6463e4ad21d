package manifest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/pelagos-containers/pelagos-agent/spec"
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
	return startWatchWith(t, dir, Options{}, WatchOptions{})
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

// startWatchWith is startWatch with options.
func startWatchWith(t *testing.T, dir string, opts Options, wo WatchOptions) *watchHarness {
	t.Helper()
	w, err := NewWatcher(dir, opts, wo)
	if err != nil {
		t.Fatal(err)
	}
	h := &watchHarness{t: t, loads: make(chan Load, 1000), w: w}
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

// settled waits out the settle time and returns every load handed on
// since the last call, ending with a load asked for afterwards.
func (h *watchHarness) settled(settle time.Duration) []Load {
	h.t.Helper()
	time.Sleep(2 * settle)
	h.w.Reload()
	var out []Load
	for {
		l := h.await("a reload after the settle time", func(Load) bool { return true })
		out = append(out, l)
		if l.Reason == "reload" {
			return out
		}
	}
}

func emptyFile(l Load, path string) bool {
	if l.Snapshot == nil {
		return false
	}
	fr := l.Snapshot.Files[path]
	return fr != nil && fr.OK() && fr.Digest == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
}

// q quotes a path for sh.
func q(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func sh(t *testing.T, script string) {
	t.Helper()
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// TestWatchReplaceKeepsPod drives the watcher with the ways tools replace
// a file that leave it missing for a moment, or swap it atomically. The
// pod must be in every load handed on (never removed), and identical
// bytes must give the very same parsed pod (nothing to change). Where a
// sequence has steps of its own, a pause of `gap` between the removal and
// the return stands for a loaded machine and makes the absence visible to
// the watcher (longer than its debounce) every time. The settle time is
// raised to match; DefaultSettle's value comes from measurement (see its
// comment), the mechanism is what is tested here.
func TestWatchReplaceKeepsPod(t *testing.T) {
	const settle, gap = 600 * time.Millisecond, 100 * time.Millisecond
	content := podYAML("web", "busybox:1")
	for _, tc := range []struct {
		name string
		op   func(t *testing.T, dir, web string)
	}{
		{"install (unlink and create)", func(t *testing.T, dir, web string) {
			src := filepath.Join(t.TempDir(), "web.yaml")
			write(t, src, content)
			sh(t, "install -m 0644 "+q(src)+" "+q(web))
		}},
		{"backup-rename save: mv f f~; cp f~ f", func(t *testing.T, dir, web string) {
			sh(t, "mv "+q(web)+" "+q(web+"~")+" && sleep 0.1 && cp "+q(web+"~")+" "+q(web))
		}},
		{"vim-style save: rename to backup, write, remove backup", func(t *testing.T, dir, web string) {
			write(t, filepath.Join(dir, "4913"), "")
			os.Remove(filepath.Join(dir, "4913"))
			if err := os.Rename(web, web+"~"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(gap)
			write(t, web, content)
			os.Remove(web + "~")
		}},
		{"rsync --delay-updates style: write in .~tmp~, rename over", func(t *testing.T, dir, web string) {
			tmp := filepath.Join(dir, ".~tmp~")
			if err := os.Mkdir(tmp, 0o700); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(tmp, "web.yaml"), content)
			if err := os.Rename(filepath.Join(tmp, "web.yaml"), web); err != nil {
				t.Fatal(err)
			}
			os.Remove(tmp)
		}},
		{"git checkout style: unlink, then create and write", func(t *testing.T, dir, web string) {
			if err := os.Remove(web); err != nil {
				t.Fatal(err)
			}
			time.Sleep(gap)
			write(t, web, content)
		}},
		{"symlink re-pointed with ln -sfn to identical bytes", func(t *testing.T, dir, web string) {
			other := filepath.Join(t.TempDir(), "web.yaml")
			write(t, other, content)
			sh(t, "ln -sfn "+q(other)+" "+q(web))
		}},
		{"symlink removed and made again", func(t *testing.T, dir, web string) {
			other := filepath.Join(t.TempDir(), "web.yaml")
			write(t, other, content)
			if err := os.Remove(web); err != nil {
				t.Fatal(err)
			}
			time.Sleep(gap)
			if err := os.Symlink(other, web); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			web := filepath.Join(dir, "web.yaml")
			write(t, web, content)
			h := startWatchWith(t, dir, Options{Cache: NewCache()}, WatchOptions{Settle: settle})
			before := h.initial.Snapshot.Pods[spec.PodKey{Namespace: "default", Name: "web"}]
			if before == nil {
				t.Fatalf("initial load: %v", podImages(h.initial))
			}
			tc.op(t, dir, web)
			loads := h.settled(settle)
			for _, l := range loads {
				// A writer that truncates first shows an empty file for a
				// moment; the agent keeps the file's pods then too
				// (reconcile.Translator treats it as unfinished).
				if !hasPods("web=busybox:1")(l) && !emptyFile(l, web) {
					t.Fatalf("a %s load dropped the pod: %v %v", l.Reason, l.Err, podImages(l))
				}
			}
			after := loads[len(loads)-1].Snapshot
			if got := after.Pods[spec.PodKey{Namespace: "default", Name: "web"}]; got.Pod != before.Pod {
				t.Error("identical bytes were parsed into a new pod")
			}
			if fr := after.Files[web]; fr == nil || !fr.OK() {
				t.Errorf("file after the replace: %+v", fr)
			}
		})
	}
}

// TestWatchRealDeleteAfterSettle: a file that stays away is dropped, by a
// load of its own once the settle time has passed, and a file replaced with
// other content is updated without ever being missing from a load.
func TestWatchRealDeleteAfterSettle(t *testing.T) {
	dir := t.TempDir()
	web, db := filepath.Join(dir, "web.yaml"), filepath.Join(dir, "db.yaml")
	write(t, web, podYAML("web", "busybox:1"))
	write(t, db, podYAML("db", "busybox:1"))
	const settle = 200 * time.Millisecond
	h := startWatchWith(t, dir, Options{Cache: NewCache()}, WatchOptions{Settle: settle})

	sh(t, "mv "+q(web)+" "+q(web+"~")+" && sed s/busybox:1/busybox:2/ "+q(web+"~")+" > "+q(web))
	h.await("web updated", hasPods("db=busybox:1", "web=busybox:2"))

	start := time.Now()
	if err := os.Remove(db); err != nil {
		t.Fatal(err)
	}
	l := h.await("db gone", func(l Load) bool { return l.Err == nil && len(l.Snapshot.Pods) == 1 })
	if !hasPods("web=busybox:2")(l) || l.Reason != "settle" {
		t.Fatalf("load %q: %v", l.Reason, podImages(l))
	}
	if waited := time.Since(start); waited < settle {
		t.Errorf("db was dropped after %v, before the settle time %v", waited, settle)
	}
	if l.Changed.Before(start) {
		t.Errorf("the settle load's Changed %v precedes the removal %v", l.Changed, start)
	}
	// Renamed to another manifest name: the pod moves at once, without
	// a duplicate error during the settle time.
	sh(t, "mv "+q(web)+" "+q(filepath.Join(dir, "web2.yaml")))
	l = h.await("web renamed", func(l Load) bool {
		return l.Err == nil && l.Snapshot.Files[filepath.Join(dir, "web2.yaml")] != nil
	})
	for _, err := range l.Snapshot.Errors() {
		t.Errorf("error while the old name settles: %v", err)
	}
	if p := l.Snapshot.Pods[spec.PodKey{Namespace: "default", Name: "web"}]; p == nil || p.File != filepath.Join(dir, "web2.yaml") {
		t.Errorf("pod source after rename: %+v", p)
	}
}

// TestWatchDanglingSymlink: a symlinked manifest whose target disappears
// is a broken file (ErrDanglingSymlink), not a removed one, so the agent
// keeps its pod; a re-pointed link is read again.
func TestWatchDanglingSymlink(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	target := filepath.Join(elsewhere, "web.yaml")
	write(t, target, podYAML("web", "busybox:1"))
	web := filepath.Join(dir, "web.yaml")
	if err := os.Symlink(target, web); err != nil {
		t.Fatal(err)
	}
	h := startWatchWith(t, dir, Options{Cache: NewCache()}, WatchOptions{})
	if !hasPods("web=busybox:1")(h.initial) {
		t.Fatalf("initial: %v", podImages(h.initial))
	}
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	// The target's directory is not watched: the periodic resync finds it.
	h.w.Reload()
	l := h.await("dangling link reported", func(l Load) bool {
		fr := l.Snapshot.Files[web]
		return l.Err == nil && fr != nil && !fr.OK()
	})
	fr := l.Snapshot.Files[web]
	if fr.Vanished() || len(fr.Errs) != 1 || !errors.Is(fr.Errs[0], ErrDanglingSymlink) ||
		!strings.Contains(fr.Errs[0].Error(), "dangling symlink") {
		t.Fatalf("dangling link: vanished=%v errs=%v", fr.Vanished(), fr.Errs)
	}
	// Re-pointed at a new target (ln -sfn: unlink, then symlink).
	other := filepath.Join(elsewhere, "other.yaml")
	write(t, other, podYAML("web", "busybox:2"))
	sh(t, "ln -sfn "+q(other)+" "+q(web))
	h.await("re-pointed link", hasPods("web=busybox:2"))
}

func TestWatchDefaultSettle(t *testing.T) {
	w, err := NewWatcher(t.TempDir(), Options{}, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.fs.Close()
	if w.wo.Settle != DefaultSettle {
		t.Errorf("settle %v, want %v", w.wo.Settle, DefaultSettle)
	}
	w2, err := NewWatcher(t.TempDir(), Options{}, WatchOptions{Settle: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.fs.Close()
	if w2.wo.Settle != 0 {
		t.Errorf("negative settle gives %v, want 0 (off)", w2.wo.Settle)
	}
}

// BenchmarkWatchRemoval measures what the settle time adds to a real
// removal: from os.Remove to the first load without the pod, with the
// default settle time and with none, rounds interleaved in one run.
//
//	go test -run '^$' -bench BenchmarkWatchRemoval -benchtime 20x ./spec/manifest
func BenchmarkWatchRemoval(b *testing.B) {
	type side struct {
		dir   string
		loads chan Load
		took  []time.Duration
	}
	start := func(settle time.Duration) *side {
		s := &side{dir: b.TempDir(), loads: make(chan Load, 100)}
		w, err := NewWatcher(s.dir, Options{Cache: NewCache()}, WatchOptions{Settle: settle})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(ctx, func(l Load) { s.loads <- l }) }()
		b.Cleanup(func() { cancel(); <-done })
		<-s.loads
		return s
	}
	await := func(s *side, pods int) {
		for l := range s.loads {
			if l.Err == nil && len(l.Snapshot.Pods) == pods {
				return
			}
		}
	}
	settled, off := start(0), start(-1)
	for i := 0; i < b.N; i++ {
		for _, s := range []*side{settled, off} {
			f := filepath.Join(s.dir, "web.yaml")
			if err := os.WriteFile(f, []byte(podYAML("web", "busybox:1")), 0o644); err != nil {
				b.Fatal(err)
			}
			await(s, 1)
			t0 := time.Now()
			if err := os.Remove(f); err != nil {
				b.Fatal(err)
			}
			await(s, 0)
			s.took = append(s.took, time.Since(t0))
		}
	}
	med := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	a, o := med(settled.took), med(off.took)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(a), "removal-ms")
	b.ReportMetric(ms(o), "removal-no-settle-ms")
	b.ReportMetric(ms(a-o), "added-ms")
	b.Logf("rounds=%d: removal seen after %.1f ms with the default settle time (%v), %.1f ms without; added %.1f ms",
		b.N, ms(a), DefaultSettle, ms(o), ms(a-o))
}
