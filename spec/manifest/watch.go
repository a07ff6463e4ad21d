package manifest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
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
	// "reload", "watch-error".
	Reason string
}

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
// on every reload and no event is ever interpreted on its own.
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
}

// NewWatcher prepares a watcher for dir; Run starts it.
func NewWatcher(dir string, opts Options, wo WatchOptions) (*Watcher, error) {
	if wo.Debounce <= 0 {
		wo.Debounce = 2 * time.Millisecond
	}
	if wo.MaxDelay < wo.Debounce {
		wo.MaxDelay = max(25*time.Millisecond, wo.Debounce)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fw, err := fsnotify.NewBufferedWatcher(1024)
	if err != nil {
		return nil, err
	}
	return &Watcher{dir: abs, opts: opts, wo: wo, fs: fw, reload: make(chan string, 1)}, nil
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
	w.rewatch()
	fn(w.load(time.Now(), "initial"))

	var (
		timer    *time.Timer
		timerC   <-chan time.Time
		first    time.Time
		reason   string
		deadline time.Time
	)
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
			w.rewatch()
			fn(w.load(first, reason))
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

func (w *Watcher) load(changed time.Time, reason string) Load {
	snap, err := LoadDir(w.dir, w.opts)
	return Load{Snapshot: snap, Err: err, Changed: changed, Reason: reason}
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
