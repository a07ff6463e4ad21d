package fake

import (
	"io"
	"sync"
)

// Terminal control characters the fake's line discipline acts on.
const (
	ctrlD = 0x04 // end of input at the start of a line
	cr    = '\r'
	nl    = '\n'
)

// terminal is the part of a pty's line discipline a client notices: typed
// characters are echoed, a carriage return reaches the program as a
// newline (ICRNL) and echoes as CR LF, ^D ends the program's input when
// nothing was typed since the last line or ^D (otherwise it only hands
// over what was typed), and the program's newlines leave as CR LF (ONLCR).
type terminal struct {
	mu    sync.Mutex
	out   io.Writer // the client's side; echo and program output share it
	inMid bool      // something was typed since the last newline or ^D
}

func newTerminal(out io.Writer) *terminal { return &terminal{out: out} }

// write sends program output to the client with ONLCR applied.
func (t *terminal) write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.out.Write(onlcr(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// input applies the line discipline to typed bytes: it returns what the
// program reads (which is also what the terminal echoes), and whether ^D
// ended the input.
func (t *terminal) input(p []byte) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	data := make([]byte, 0, len(p))
	for _, b := range p {
		if b == ctrlD {
			if !t.inMid {
				return data, true
			}
			t.inMid = false
			continue
		}
		if b == cr {
			b = nl
		}
		data = append(data, b)
		t.inMid = b != nl
	}
	return data, false
}

func onlcr(p []byte) []byte {
	out := make([]byte, 0, len(p))
	for _, b := range p {
		if b == nl {
			out = append(out, cr)
		}
		out = append(out, b)
	}
	return out
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
