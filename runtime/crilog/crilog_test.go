package crilog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fixedClock() func() time.Time {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	return func() time.Time { return t0 }
}

func TestWriteFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := NewWriter(path, Options{Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", MaxLine+10)
	w.Copy(Stdout, strings.NewReader("hello\n\nworld"))
	w.Copy(Stderr, strings.NewReader(long+"\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	ts := "2026-01-02T03:04:05.000000006Z"
	want := ts + " stdout F hello\n" +
		ts + " stdout F \n" +
		ts + " stdout F world\n" +
		ts + " stderr P " + long[:MaxLine] + "\n" +
		ts + " stderr F " + long[MaxLine:] + "\n"
	if string(got) != want {
		t.Errorf("log file:\n%.300q\nwant:\n%.300q", got, want)
	}
	var out bytes.Buffer
	if err := Read(path, &out, ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if want := "hello\n\nworld\n" + long + "\n"; out.String() != want {
		t.Errorf("Read joined %d bytes, want %d", out.Len(), len(want))
	}
	out.Reset()
	Read(path, &out, ReadOptions{Stream: Stderr})
	if out.String() != long+"\n" {
		t.Errorf("Read stderr only: %d bytes", out.Len())
	}
}

func TestParseMalformed(t *testing.T) {
	for _, l := range []string{"", "garbage", "2026-01-02T03:04:05Z stdin F x", "2026-01-02T03:04:05Z stdout X x", "notatime stdout F x"} {
		if _, err := Parse([]byte(l)); err == nil {
			t.Errorf("Parse(%q) accepted", l)
		}
	}
	e, err := Parse([]byte("2026-01-02T03:04:05.5Z stderr P part"))
	if err != nil || e.Stream != Stderr || !e.Partial || string(e.Content) != "part" {
		t.Errorf("Parse = %+v, %v", e, err)
	}
}

func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := NewWriter(path, Options{MaxSize: 1000, MaxFiles: 3, Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for i := range 200 {
		fmt.Fprintf(&in, "line %03d\n", i)
	}
	w.Copy(Stdout, strings.NewReader(in.String()))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := Files(path)
	if len(files) != 3 {
		t.Fatalf("files = %v, want 3 (MaxFiles)", files)
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > 1000 {
			t.Errorf("%s is %d bytes, over MaxSize", f, st.Size())
		}
	}
	var out bytes.Buffer
	Read(path, &out, ReadOptions{})
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if lines[len(lines)-1] != "line 199" {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
	// What is kept is a contiguous tail: the oldest lines were rotated away.
	for i := 1; i < len(lines); i++ {
		var a, b int
		fmt.Sscanf(lines[i-1], "line %d", &a)
		fmt.Sscanf(lines[i], "line %d", &b)
		if b != a+1 {
			t.Fatalf("gap between %q and %q", lines[i-1], lines[i])
		}
	}
	if err := RemoveAll(path); err != nil || len(Files(path)) != 0 {
		t.Errorf("RemoveAll left %v (%v)", Files(path), err)
	}
}

// TestNeverBlocks writes through a pipe nobody reads: the file side stalls,
// yet Copy must drain its whole input, dropping lines instead of blocking.
func TestNeverBlocks(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter("pipe", pw, 0, Options{MaxSize: 1 << 40, MaxFiles: 2, Now: fixedClock()})
	in := strings.Repeat(strings.Repeat("y", 100)+"\n", 100000) // 10 MB, far beyond pipe and queue
	w.Copy(Stdout, strings.NewReader(in))                       // returns only if never blocked
	w.mu.Lock()
	dropped := w.drops
	w.mu.Unlock()
	go io.Copy(io.Discard, pr) // let the writer finish
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if dropped == 0 {
		t.Error("no line was dropped although the file never drained")
	}
}

// FuzzParseRoundTrip: any content written by the writer parses back to the
// same stream, tag and bytes, and Parse never panics on arbitrary input.
func FuzzParseRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), true, false)
	f.Add([]byte(""), false, true)
	f.Add([]byte("2026-01-02T03:04:05Z stdout F nested"), false, false)
	f.Fuzz(func(t *testing.T, content []byte, stderr, partial bool) {
		Parse(content) // must not panic
		if bytes.ContainsAny(content, "\n") {
			return // the writer never puts a newline inside an entry
		}
		stream := Stdout
		if stderr {
			stream = Stderr
		}
		line := format(nil, entry{stream: stream, partial: partial, data: content, at: time.Unix(1700000000, 5)})
		e, err := Parse(line[:len(line)-1])
		if err != nil {
			t.Fatalf("Parse(%q): %v", line, err)
		}
		if e.Stream != stream || e.Partial != partial || !bytes.Equal(e.Content, content) {
			t.Fatalf("round trip of %q: got %+v", content, e)
		}
	})
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	var lines []string
	for i := range 100 {
		lines = append(lines, fmt.Sprintf("2026-11-28T10:00:00.000000000Z stderr F line %d", i))
	}
	lines = append(lines, "2026-11-28T10:00:00.000000000Z stdout P part-", "2026-11-28T10:00:00.000000000Z stdout F end")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lines, bytes int
		want         string
	}{
		{3, 1 << 10, "line 98\nline 99\npart-end"},
		{80, 12, "99\npart-end"},
		{1, 1 << 10, "part-end"},
	} {
		got, err := Tail(path, tc.lines, tc.bytes)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("Tail(%d lines, %d bytes) = %q, want %q", tc.lines, tc.bytes, got, tc.want)
		}
	}
}
