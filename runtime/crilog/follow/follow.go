// Package follow prints a CRI log as it grows, across rotations, for
// `logs -f`. It is apart from crilog because it watches the log directory
// with fsnotify, which the shim, writing logs, has no use for.
package follow

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
)

// Follow prints the whole log like crilog.Read and then keeps printing what
// is appended, across rotations, until ctx ends or done is closed (the
// container exited); after done it prints what is left and returns.
func Follow(ctx context.Context, path string, w io.Writer, opts crilog.ReadOptions, done <-chan struct{}) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("follow log %s: %w", path, err)
	}
	defer watcher.Close()
	// Watch the directory: rotation renames the file and creates a new one.
	if err := watcher.Add(filepath.Dir(path)); err != nil {
		return fmt.Errorf("follow log %s: %w", path, err)
	}
	c := crilog.NewCursor(w, opts)
	if err := c.CatchUp(path); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			return c.CatchUp(path)
		case ev, ok := <-watcher.Events:
			if !ok {
				return nil
			}
			if ev.Name == path || strings.HasPrefix(ev.Name, path+".") {
				if err := c.CatchUp(path); err != nil {
					return err
				}
			}
		case err, ok := <-watcher.Errors:
			if ok {
				return fmt.Errorf("follow log %s: %w", path, err)
			}
		}
	}
}
