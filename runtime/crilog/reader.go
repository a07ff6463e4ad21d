package crilog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// Entry is one parsed log line.
type Entry struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content []byte
}

// ErrMalformed marks a line that is not in the CRI format.
var ErrMalformed = errors.New("malformed CRI log line")

// Parse parses one line (without its newline).
func Parse(line []byte) (Entry, error) {
	var e Entry
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return e, fmt.Errorf("%w: no timestamp", ErrMalformed)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return e, fmt.Errorf("%w: timestamp: %v", ErrMalformed, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != Stdout && string(stream) != Stderr) {
		return e, fmt.Errorf("%w: stream %q", ErrMalformed, stream)
	}
	tag, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		// An empty full line has no trailing space in some writers.
		tag, content = rest, nil
	}
	if len(tag) != 1 || (tag[0] != tagFull && tag[0] != tagPartial) {
		return e, fmt.Errorf("%w: tag %q", ErrMalformed, tag)
	}
	return Entry{Time: t, Stream: string(stream), Partial: tag[0] == tagPartial, Content: content}, nil
}

// ReadOptions select what Read and a Cursor print.
type ReadOptions struct {
	// Stream limits output to "stdout" or "stderr"; "" prints both.
	Stream string
	// Timestamps prefixes each line with its time.
	Timestamps bool
}

type printer struct {
	w       io.Writer
	opts    ReadOptions
	midLine map[string]bool
}

func (p *printer) line(line []byte) error {
	e, err := Parse(line)
	if err != nil {
		return nil // a torn or foreign line is skipped, not fatal
	}
	if p.opts.Stream != "" && e.Stream != p.opts.Stream {
		return nil
	}
	var out []byte
	if p.opts.Timestamps && !p.midLine[e.Stream] {
		out = e.Time.UTC().AppendFormat(out, time.RFC3339Nano)
		out = append(out, ' ')
	}
	out = append(out, e.Content...)
	if !e.Partial {
		out = append(out, '\n')
	}
	p.midLine[e.Stream] = e.Partial
	_, err = p.w.Write(out)
	return err
}

// Read prints the content of path and its rotated files, oldest first,
// joining partial entries back into whole lines.
func Read(path string, w io.Writer, opts ReadOptions) error {
	return NewCursor(w, opts).CatchUp(path)
}

// position is how far a reader got: file identity and offset. Every file
// older than it has been printed.
type position struct {
	ino uint64
	off int64
}

var errStale = errors.New("file rotated while opening")

// catchUp prints everything after pos, across any number of rotations. A
// rotation racing with it is detected by inode and the pass restarts from
// the position reached so far.
func (p *printer) catchUp(path string, pos *position) error {
	for range 100 {
		files, inos := snapshot(path)
		if f2, i2 := snapshot(path); !slices.Equal(files, f2) || !slices.Equal(inos, i2) {
			// A rotation ran while the names were listed; the listing may
			// have skipped a file. Look again.
			continue
		}
		start := 0
		for i := range files {
			if pos.ino != 0 && inos[i] == pos.ino {
				start = i
			}
		}
		if pos.ino != 0 && (len(files) == 0 || inos[start] != pos.ino) {
			// The file we were in has been rotated away entirely.
			pos.off = 0
		}
		stale := false
		for i := start; i < len(files); i++ {
			off := int64(0)
			if inos[i] == pos.ino {
				off = pos.off
			}
			n, err := readFile(files[i], off, inos[i], p)
			if errors.Is(err, errStale) {
				stale = true
				break
			}
			if err != nil {
				return err
			}
			pos.ino, pos.off = inos[i], n
		}
		if !stale {
			return nil
		}
	}
	return fmt.Errorf("log %s: rotating faster than it can be read", path)
}

func snapshot(path string) ([]string, []uint64) {
	files := Files(path)
	inos := make([]uint64, len(files))
	for i, f := range files {
		inos[i] = inode(f)
	}
	return files, inos
}

// readFile prints complete lines of file from offset and returns the offset
// after the last complete line. The open file must have inode ino.
func readFile(file string, off int64, ino uint64, p *printer) (int64, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return off, errStale
	}
	if err != nil {
		return off, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || fileIno(st) != ino {
		return off, errStale
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, err
	}
	br := bufio.NewReaderSize(f, 64*1024)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			off += int64(len(line))
			if perr := p.line(line[:len(line)-1]); perr != nil {
				return off, perr
			}
		}
		if err == io.EOF {
			return off, nil
		}
		if err != nil {
			return off, err
		}
	}
}

// Cursor prints a log's content from where its previous CatchUp stopped,
// across rotations: Read is one CatchUp, and a follower calls CatchUp each
// time the log's directory changes.
type Cursor struct {
	p   *printer
	pos position
}

// NewCursor returns a cursor at the start of the log's history.
func NewCursor(w io.Writer, opts ReadOptions) *Cursor {
	return &Cursor{p: &printer{w: w, opts: opts, midLine: map[string]bool{}}}
}

// CatchUp prints every complete line written to path (or rotated away from
// it) since the last call.
func (c *Cursor) CatchUp(path string) error { return c.p.catchUp(path, &c.pos) }

func inode(path string) uint64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fileIno(st)
}

// Tail returns the end of the log's content (both streams, partial entries
// joined): at most maxLines lines and maxBytes bytes. It backs the
// FallbackToLogsOnError termination message policy, so it reads only the end
// of the live file (as the kubelet does), never the whole rotated history.
func Tail(path string, maxLines, maxBytes int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// Each CRI line adds a timestamp, stream and tag (~40 bytes) to its
	// content: this window holds maxLines lines of maxBytes content.
	window := int64(maxBytes + maxLines*64)
	off := max(0, st.Size()-window)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	br := bufio.NewReader(f)
	if off > 0 {
		// The window starts inside a line: skip to the next whole one.
		if _, err := br.ReadBytes('\n'); err != nil {
			return nil, nil
		}
	}
	t := &tailBuffer{max: maxBytes}
	p := &printer{w: t, midLine: map[string]bool{}}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			_ = p.line(line[:len(line)-1]) // tailBuffer never fails
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	b := bytes.TrimSuffix(t.buf, []byte{'\n'})
	for i, n := len(b)-1, 0; i >= 0; i-- {
		if b[i] == '\n' {
			if n++; n == maxLines {
				b = b[i+1:]
				break
			}
		}
	}
	return b, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}
