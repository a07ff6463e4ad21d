// Package crilog writes and reads container logs in the CRI format that the
// kubelet and crictl use:
//
//	2026-01-02T15:04:05.999999999Z stdout F a full line
//	2026-01-02T15:04:05.999999999Z stderr P the first part of a long line
//
// The writer never blocks the container: its streams are drained into a
// bounded queue, and when the disk cannot keep up, lines are dropped and a
// marker line says how many. Files rotate by size (path, path.1, path.2...).
package crilog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Stream names, as the CRI format spells them.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Tags: a full line, or a part of a line that continues in the next entry.
const (
	tagFull    = 'F'
	tagPartial = 'P'
)

// MaxLine is the longest content of one entry; longer lines are split into
// partial entries.
const MaxLine = 16 * 1024

// queueBytes bounds the log content held in memory while the disk is slow.
const queueBytes = 4 << 20

// Options tune a Writer. Zero values mean the defaults.
type Options struct {
	MaxSize  int64 // rotate when the file would exceed this many bytes (default 10 MiB)
	MaxFiles int   // files kept including the current one (default 5, minimum 2)
	// FollowPath hands rotation to someone else (kubelet: it renames the
	// file, then asks the runtime to reopen it): the writer never rotates,
	// and when another file has taken the path, the next batch goes there.
	// Until then it keeps writing to the file it has open, wherever that
	// file was renamed to.
	FollowPath bool
	// Now is the clock; tests replace it.
	Now func() time.Time
}

type entry struct {
	stream  string
	partial bool
	data    []byte
	at      time.Time
}

// Writer appends entries to one log file. Readers of the container's pipes
// only append to an in-memory queue bounded in bytes; one goroutine writes
// the queue to the file in batches, so a burst costs one write per batch.
type Writer struct {
	path string
	opts Options

	mu      sync.Mutex // guards queue, queued, drops, closing
	queue   []entry
	queued  int
	drops   int
	closing bool
	wake    chan struct{} // capacity 1: "the queue is not empty"
	done    chan struct{}

	f       *os.File
	ino     uint64 // of f, for FollowPath
	size    int64
	readers sync.WaitGroup
	err     error
}

// NewWriter opens (appending to) the log at path and starts its writer.
func NewWriter(path string, opts Options) (*Writer, error) {
	if opts.MaxSize <= 0 {
		opts.MaxSize = 10 << 20
	}
	if opts.MaxFiles < 2 {
		opts.MaxFiles = 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("container log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("container log: %w", err)
	}
	return newWriter(path, f, st.Size(), fileIno(st), opts), nil
}

func newWriter(path string, f *os.File, size int64, ino uint64, opts Options) *Writer {
	w := &Writer{path: path, opts: opts, f: f, size: size, ino: ino,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

// Copy reads r until EOF and logs it as stream. It never stops reading
// because of the disk, so the process writing to r is never blocked by the
// log. Call it on its own goroutine, once per stream.
func (w *Writer) Copy(stream string, r io.Reader) {
	w.readers.Add(1)
	defer w.readers.Done()
	br := bufio.NewReaderSize(r, MaxLine)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 || (err == nil && !isPrefix) {
			w.enqueue(entry{stream: stream, partial: isPrefix, data: bytes.Clone(line), at: w.opts.Now()})
		}
		if err != nil {
			return
		}
	}
}

func (w *Writer) enqueue(e entry) {
	w.mu.Lock()
	if w.queued+len(e.data) > queueBytes {
		w.drops++
		w.mu.Unlock()
		return
	}
	w.queue = append(w.queue, e)
	w.queued += len(e.data)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Close waits for every Copy to reach EOF, flushes the queue and closes the
// file. It returns the first write error, if any.
func (w *Writer) Close() error {
	w.readers.Wait()
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
	return w.err
}

func (w *Writer) run() {
	defer close(w.done)
	var buf []byte
	for range w.wake {
		w.mu.Lock()
		batch, drops, closing := w.queue, w.drops, w.closing
		w.queue, w.queued, w.drops = nil, 0, 0
		w.mu.Unlock()
		buf = buf[:0]
		if w.opts.FollowPath && len(batch) > 0 {
			w.follow()
		}
		for i, e := range batch {
			if drops > 0 && i == 0 {
				msg := []byte("[pelagos: " + strconv.Itoa(drops) + " log lines dropped: disk too slow]")
				buf = w.add(buf, entry{stream: Stderr, data: msg, at: e.at})
			}
			buf = w.add(buf, e)
		}
		w.flush(buf)
		if closing {
			w.mu.Lock()
			empty := len(w.queue) == 0
			w.mu.Unlock()
			if empty {
				break
			}
		}
	}
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = err
	}
}

// add appends one formatted entry to buf, first flushing and rotating when
// the entry would take the file over MaxSize.
func (w *Writer) add(buf []byte, e entry) []byte {
	n := int64(len(buf))
	line := format(nil, e)
	if !w.opts.FollowPath && w.size+n > 0 && w.size+n+int64(len(line)) > w.opts.MaxSize {
		w.flush(buf)
		buf = buf[:0]
		if err := w.rotate(); err != nil && w.err == nil {
			w.err = err
		}
	}
	return append(buf, line...)
}

func format(buf []byte, e entry) []byte {
	buf = e.at.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, e.stream...)
	buf = append(buf, ' ')
	if e.partial {
		buf = append(buf, tagPartial)
	} else {
		buf = append(buf, tagFull)
	}
	buf = append(buf, ' ')
	buf = append(buf, e.data...)
	return append(buf, '\n')
}

func (w *Writer) flush(b []byte) {
	if len(b) == 0 {
		return
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("container log %s: %w", w.path, err)
	}
}

// follow switches to the file at the path when it is no longer the one
// open. A missing file is not created: whoever renamed it away creates its
// successor (ReopenContainerLog), and until then lines go on in the old one.
// A symlink put there is never followed: the log writer runs as root, and
// the link could name any file of the host.
func (w *Writer) follow() {
	st, err := os.Lstat(w.path)
	if err != nil || fileIno(st) == w.ino || !st.Mode().IsRegular() {
		return
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return // gone again: the next batch looks once more
	}
	if st, err = f.Stat(); err != nil {
		f.Close()
		return
	}
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = fmt.Errorf("container log %s: %w", w.path, err)
	}
	w.f, w.ino, w.size = f, fileIno(st), st.Size()
}

// rotate shifts path.N-1 -> path.N ... path -> path.1 and reopens path. The
// oldest file beyond MaxFiles is removed.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("container log %s: rotate: %w", w.path, err)
	}
	oldest := w.opts.MaxFiles - 1
	if err := os.Remove(w.path + "." + strconv.Itoa(oldest)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("container log %s: rotate: %w", w.path, err)
	}
	for i := oldest - 1; i >= 1; i-- {
		from := w.path + "." + strconv.Itoa(i)
		if err := os.Rename(from, w.path+"."+strconv.Itoa(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("container log %s: rotate: %w", w.path, err)
		}
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		return fmt.Errorf("container log %s: rotate: %w", w.path, err)
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("container log %s: rotate: %w", w.path, err)
	}
	w.f, w.size = f, 0
	return nil
}

// Files lists the log files of path from oldest to newest (rotated files
// first, the current one last). Missing files are skipped.
func Files(path string) []string {
	var out []string
	for i := 64; i >= 1; i-- {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out
}

// RemoveAll removes the log and its rotated files.
func RemoveAll(path string) error {
	for _, p := range Files(path) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
