package manifest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/pelagos-containers/pelagos-agent/spec"
)

// Load is one (re)load of the manifest directory as the watcher hands it on.
type Load struct {
	Snapshot *Snapshot
	// Err is LoadDir's error: the directory itself is missing, unreadable or
	// untrusted. There is no truth then; a consumer must keep what runs.
	Err error
	// Changed is when the first event that led to this load arrived (the
	// start of "file written -> pod running").
	Changed time.Time
	// Reason says what triggered the load: "initial", "event", "overflow",
	// "reload", "watch-error", or "settle" (a vanished file's settle time
	// ran out).
	Reason string
}

// DefaultSettle is how long a manifest file may be missing before the
// loads the watcher hands on stop carrying it. Saving tools replace a
// file in steps that leave it missing for a moment: `install` and
// `git checkout` unlink and create (under 4 ms here, even loaded), a
// backup-rename save (`mv f f~; cp f~ f`) runs a second process (2.6 ms
// median, 24 ms worst of 200 on this 2-core machine under load). 50 ms
// covers those with a margin and delays a real removal by no more.
const DefaultSettle = 50 * time.Millisecond

// WatchOptions tune Watch.
type WatchOptions struct {
	// Debounce is how long the watcher waits after an event for more
	// before it reloads (default 2 ms). Editors and sync tools write a file
	// in several steps (truncate then write, write then rename, create a
	// symlink then rename it over the old one); a short quiet period lets
	// the steps of one save become one load without adding visible latency.
	Debounce time.Duration
	// MaxDelay bounds the debounce under a steady stream of events
	// (default 25 ms): a busy directory is reloaded at least this often.
	MaxDelay time.Duration
	// Settle is how long a manifest that was there and is now missing
	// keeps its last load (default DefaultSettle; negative disables).
	// A file that comes back within it, with the same bytes, changes
	// nothing: no pod is removed and recreated because a tool replaced
	// the file by unlink and create. Only when the file stays away that
	// long do the loads drop it, and its pods go.
	Settle time.Duration
}

// Watcher watches a manifest directory and reloads it on every change.
//
// It watches the directory (through a symlink, the directory it resolves
// to) and the directory's parent, so all of these are seen: files created,
// written, truncated and rewritten, renamed over (mv -f), removed, renamed
// to an ignored name and back; editor save sequences (vim's 4913 probe and
// backups); the ConfigMap layout where files are symlinks through a "..data"
// symlink that is swapped atomically; and a git-sync style swap of the
// directory symlink itself (ln -sfn + mv -T), after which the watch moves
// to the new target. An inotify queue overflow, or any watch error, falls
// back to a full reload. Every load is a full LoadDir, so trust checks run
// on every reload and no event is ever interpreted on its own. A file that
// goes missing is carried over from the last load for WatchOptions.Settle
// before loads drop it.
type Watcher struct {
	dir  string
	opts Options
	wo   WatchOptions

	fs      *fsnotify.Watcher
	mu      sync.Mutex
	target  string // resolved directory currently watched
	parent  string // parent of dir, watched for the symlink swap
	reload  chan string
	onWatch func() // test hook: called after the watch set changes

	// Settle state, touched only by Run's goroutine: the files of the last
	// load handed on, and when each file that is now missing was first
	// seen missing.
	last    map[string]*FileResult
	missing map[string]time.Time
}

// NewWatcher prepares a watcher for dir; Run starts it.
func NewWatcher(dir string, opts Options, wo WatchOptions) (*Watcher, error) {
	if wo.Debounce <= 0 {
		wo.Debounce = 2 * time.Millisecond
	}
	if wo.MaxDelay < wo.Debounce {
		wo.MaxDelay = max(25*time.Millisecond, wo.Debounce)
	}
	switch {
	case wo.Settle == 0:
		wo.Settle = DefaultSettle
	case wo.Settle < 0:
		wo.Settle = 0
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fw, err := fsnotify.NewBufferedWatcher(1024)
	if err != nil {
		return nil, err
	}
	return &Watcher{dir: abs, opts: opts, wo: wo, fs: fw, reload: make(chan string, 1),
		missing: map[string]time.Time{}}, nil
}

// Reload asks for a full reload (a periodic resync, SIGHUP).
func (w *Watcher) Reload() {
	select {
	case w.reload <- "reload":
	default:
	}
}

// Run loads the directory, hands the result to fn, and then does so again
// after every change until ctx ends. fn runs on the watcher's goroutine, one
// call at a time.
func (w *Watcher) Run(ctx context.Context, fn func(Load)) error {
	defer w.fs.Close()
	var (
		timer    *time.Timer
		timerC   <-chan time.Time
		first    time.Time
		reason   string
		deadline time.Time
		settle   *time.Timer
		settleC  <-chan time.Time
		gone     time.Time // when the file whose settle ends next went missing
	)
	load := func(changed time.Time, why string) {
		w.rewatch()
		ld, next := w.load(changed, why)
		if settle != nil {
			settle.Stop()
			settle, settleC = nil, nil
		}
		if !next.until.IsZero() {
			settle, gone = time.NewTimer(time.Until(next.until)), next.since
			settleC = settle.C
		}
		fn(ld)
	}
	load(time.Now(), "initial")

	arm := func(why string) {
		now := time.Now()
		if timer == nil {
			first, reason, deadline = now, why, now.Add(w.wo.MaxDelay)
			timer = time.NewTimer(w.wo.Debounce)
			timerC = timer.C
			return
		}
		if why != "event" {
			reason = why
		}
		d := min(w.wo.Debounce, max(0, time.Until(deadline)))
		timer.Reset(d)
	}
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			if settle != nil {
				settle.Stop()
			}
			return nil
		case ev, ok := <-w.fs.Events:
			if !ok {
				return errors.New("manifest watch: event channel closed")
			}
			if w.relevant(ev) {
				arm("event")
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return errors.New("manifest watch: error channel closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				arm("overflow")
			} else {
				arm("watch-error")
			}
		case why := <-w.reload:
			arm(why)
		case <-timerC:
			timer, timerC = nil, nil
			load(first, reason)
		case <-settleC:
			settle, settleC = nil, nil
			load(gone, "settle")
		}
	}
}

// relevant drops events that cannot change the load: those in the parent
// directory about other entries.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	dir := filepath.Dir(ev.Name)
	return dir != w.parent || dir == w.target || filepath.Clean(ev.Name) == w.dir
}

// settleDeadline is when the next carried file's settle time ends, and
// when that file went missing.
type settleDeadline struct{ until, since time.Time }

func (w *Watcher) load(changed time.Time, reason string) (Load, settleDeadline) {
	snap, err := loadDir(w.dir, w.opts)
	if err != nil {
		// No truth: nothing to compare with; the settle state waits.
		return Load{Err: err, Changed: changed, Reason: reason}, settleDeadline{}
	}
	next := w.carryMissing(snap, time.Now())
	if w.opts.Cache != nil {
		w.opts.Cache.retain(snap.Files)
	}
	w.last = snap.Files
	return Load{Snapshot: snap, Changed: changed, Reason: reason}, next
}

// carryMissing puts back, into snap, each file of the last load that is
// missing now and has been missing for less than the settle time, and
// returns when the first of those settle times ends. A carried file keeps
// only the objects no present file defines (a file renamed to another
// manifest name hands its pods over at once).
func (w *Watcher) carryMissing(snap *Snapshot, now time.Time) settleDeadline {
	var next settleDeadline
	for path, prev := range w.last {
		if fr, ok := snap.Files[path]; ok && !fr.Vanished() {
			delete(w.missing, path)
			continue
		}
		since, ok := w.missing[path]
		if !ok {
			since = now
			w.missing[path] = since
		}
		until := since.Add(w.wo.Settle)
		if !now.Before(until) {
			delete(w.missing, path)
			continue
		}
		snap.Files[path] = carried(snap, prev)
		if next.until.IsZero() || until.Before(next.until) {
			next = settleDeadline{until, since}
		}
	}
	for path := range w.missing {
		if _, ok := snap.Files[path]; !ok {
			delete(w.missing, path)
		}
	}
	return next
}

// carried is prev without the objects that snap already defines, with its
// objects added to snap.
func carried(snap *Snapshot, prev *FileResult) *FileResult {
	c := *prev
	c.Pods = keepNew(prev.Pods, snap.Pods, func(ps *PodSource) spec.PodKey { return ps.Pod.Key() })
	c.ConfigMaps = keepNew(prev.ConfigMaps, snap.ConfigMaps, func(cs *ConfigMapSource) spec.PodKey {
		return spec.PodKey{Namespace: cs.ConfigMap.Metadata.Namespace, Name: cs.ConfigMap.Metadata.Name}
	})
	c.Secrets = keepNew(prev.Secrets, snap.Secrets, func(ss *SecretSource) spec.PodKey {
		return spec.PodKey{Namespace: ss.Secret.Metadata.Namespace, Name: ss.Secret.Metadata.Name}
	})
	c.Claims = keepNew(prev.Claims, snap.Claims, (*ClaimSource).key)
	return &c
}

func keepNew[T any](items []T, have map[spec.PodKey]T, key func(T) spec.PodKey) []T {
	var out []T
	for _, it := range items {
		if _, taken := have[key(it)]; !taken {
			have[key(it)] = it
			out = append(out, it)
		}
	}
	return out
}

// rewatch makes the watch set match the file system: the parent of dir,
// and dir's current resolved target. A missing directory is watched for
// through its parent; a missing parent is retried on the next reload.
func (w *Watcher) rewatch() {
	w.mu.Lock()
	defer w.mu.Unlock()
	parent := filepath.Dir(w.dir)
	if w.parent != parent {
		if err := w.fs.Add(parent); err == nil {
			w.parent = parent
		}
	} else if _, err := os.Stat(parent); err != nil {
		_ = w.fs.Remove(parent)
		w.parent = ""
	}
	target, err := filepath.EvalSymlinks(w.dir)
	if err != nil {
		target = ""
	}
	if target != w.target {
		if w.target != "" && w.target != w.parent {
			_ = w.fs.Remove(w.target)
		}
		w.target = ""
		if target != "" {
			if err := w.fs.Add(target); err == nil {
				w.target = target
			}
		}
	}
	if w.onWatch != nil {
		w.onWatch()
	}
}
