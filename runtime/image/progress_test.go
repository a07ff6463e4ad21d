package image

import (
	"io"
	"strings"
	"testing"
)

// TestProgressTerminal: on a terminal each layer has a line that is
// redrawn in place (cursor up), with bytes done and a total line.
func TestProgressTerminal(t *testing.T) {
	var out strings.Builder
	p := &progress{w: &out, tty: true, title: "busybox:1.36", layers: map[string]*layerProgress{}}
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	p.addLayer(a, 2000)
	p.addLayer(b, 3000)
	if _, err := io.Copy(io.Discard, p.reader(a, strings.NewReader(strings.Repeat("x", 2000)))); err != nil {
		t.Fatal(err)
	}
	p.skip(b)
	p.done("pulled")
	s := out.String()
	for _, want := range []string{"\033[3A", "aaaaaaaaaaaa  downloaded", "2.0 kB / 2.0 kB", "bbbbbbbbbbbb  already present", "busybox:1.36: 2.0 kB / 5.0 kB", "busybox:1.36: pulled\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("terminal progress lacks %q:\n%q", want, s)
		}
	}
}

// TestProgressPlain: elsewhere, one plain line per event and no escapes.
func TestProgressPlain(t *testing.T) {
	var out strings.Builder
	p := newProgress(&out, "app:1")
	a := "sha256:" + strings.Repeat("c", 64)
	p.addLayer(a, 10)
	if _, err := io.Copy(io.Discard, p.reader(a, strings.NewReader("0123456789"))); err != nil {
		t.Fatal(err)
	}
	p.done("pulled")
	want := "app:1: resolving\napp:1: layer cccccccccccc: downloaded (10 B)\napp:1: pulled\n"
	if out.String() != want {
		t.Errorf("plain progress:\n%q\nwant\n%q", out.String(), want)
	}
	var nilProgress *progress // a pull without Progress reports nothing
	nilProgress.addLayer(a, 1)
	nilProgress.done("x")
}
