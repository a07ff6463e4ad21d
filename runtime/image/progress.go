package image

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// progress reports a pull to a person. On a terminal it redraws one line
// per layer with bytes done and a total line; elsewhere (logs, pipes) it
// prints one plain line per finished layer. A nil *progress reports nothing.
type progress struct {
	w     io.Writer
	tty   bool
	title string

	mu     sync.Mutex
	order  []string
	layers map[string]*layerProgress
	drawn  int // lines drawn last time (tty)
	last   time.Time
}

type layerProgress struct {
	size, done int64
	state      string
}

func newProgress(w io.Writer, title string) *progress {
	if w == nil {
		return nil
	}
	p := &progress{w: w, title: title, layers: map[string]*layerProgress{}}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		p.tty = true
	}
	if !p.tty {
		fmt.Fprintf(w, "%s: resolving\n", title)
	}
	return p
}

func (p *progress) addLayer(digest string, size int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.layers[digest]; !ok {
		p.order = append(p.order, digest)
		p.layers[digest] = &layerProgress{size: size, state: "waiting"}
	}
}

func (p *progress) skip(digest string) { p.finishLayer(digest, "already present") }

func (p *progress) restart(digest string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.layers[digest]; l != nil {
		l.done, l.state = 0, "retrying"
	}
	p.drawLocked(false)
}

func (p *progress) finishLayer(digest, state string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.layers[digest]
	if l == nil || l.state == state {
		return
	}
	l.state = state
	if state == "downloaded" {
		l.done = l.size
	}
	if !p.tty {
		fmt.Fprintf(p.w, "%s: layer %s: %s (%s)\n", p.title, shortID(digest), state, humanBytes(l.size))
		return
	}
	p.drawLocked(true)
}

// reader counts bytes read from r towards the layer's progress.
func (p *progress) reader(digest string, r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	p.mu.Lock()
	if l := p.layers[digest]; l != nil {
		l.state = "downloading"
	}
	p.mu.Unlock()
	return &countingReader{r: r, p: p, digest: digest}
}

type countingReader struct {
	r      io.Reader
	p      *progress
	digest string
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.mu.Lock()
	if l := c.p.layers[c.digest]; l != nil {
		l.done += int64(n)
	}
	if c.p.tty {
		c.p.drawLocked(false)
	}
	c.p.mu.Unlock()
	if err == io.EOF {
		c.p.finishLayer(c.digest, "downloaded")
	}
	return n, err
}

// done prints the final line.
func (p *progress) done(msg string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.drawLocked(true)
	}
	fmt.Fprintf(p.w, "%s: %s\n", p.title, msg)
}

// drawLocked redraws the per-layer block on a terminal, at most ten times
// a second unless forced.
func (p *progress) drawLocked(force bool) {
	if !p.tty || (!force && time.Since(p.last) < 100*time.Millisecond) {
		return
	}
	p.last = time.Now()
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\033[%dA", p.drawn)
	}
	var done, total int64
	for _, d := range p.order {
		l := p.layers[d]
		done += l.done
		total += l.size
		fmt.Fprintf(&b, "\r\033[K  %s  %-16s %10s / %s\n", shortID(d), l.state, humanBytes(l.done), humanBytes(l.size))
	}
	fmt.Fprintf(&b, "\r\033[K%s: %s / %s\n", p.title, humanBytes(done), humanBytes(total))
	p.drawn = len(p.order) + 1
	io.WriteString(p.w, b.String())
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// HumanBytes formats a byte count for people (SI units, as docker does).
func HumanBytes(n int64) string { return humanBytes(n) }
