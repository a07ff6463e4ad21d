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
	w := newWriter("pipe", pw, 0, 0, Options{MaxSize: 1 << 40, MaxFiles: 2, Now: fixedClock()})
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

// TestFollowPath is kubelet's rotation: the log is renamed away, the
// runtime is asked to reopen it (a new empty file at the path), and the
// lines after that land in the new file, none in the renamed one; a writer
// that follows the path never rotates by size on its own.
func TestFollowPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	w, err := NewWriter(path, Options{MaxSize: 100, FollowPath: true, Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() { w.Copy(Stdout, pr); close(done) }()
	// Each line is one batch: Write returns once Copy has read it, and
	// the file is read until the line is there.
	waitFor := func(p, want string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q never appeared; it holds %q", p, want, b)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i := range 10 {
		fmt.Fprintf(pw, "before %d, a line long enough to pass MaxSize soon\n", i)
	}
	waitFor(path, "before 9")
	if got := Files(path); len(got) != 1 {
		t.Fatalf("a FollowPath writer rotated on its own: %v", got)
	}
	rotated := path + ".20260101-000000"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(pw, "between")
	waitFor(rotated, "between") // no file at the path yet: the old one goes on
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(pw, "after")
	waitFor(path, "after")
	pw.Close()
	<-done
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(rotated)
	if strings.Contains(string(old), "after") {
		t.Errorf("the renamed log got lines written after the reopen:\n%s", old)
	}
	cur, _ := os.ReadFile(path)
	if strings.Contains(string(cur), "before") || strings.Contains(string(cur), "between") {
		t.Errorf("the new log got lines written before the reopen:\n%s", cur)
	}
}

// TestFollowPathNoSymlink: a symlink put at the log's path (by anyone who
// can write the log directory) is not followed: the writer, which runs as
// root, never appends to the file it names.
func TestFollowPathNoSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("root:x:0:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(path, Options{FollowPath: true, Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() { w.Copy(Stdout, pr); close(done) }()
	fmt.Fprintln(pw, "first")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		fmt.Fprintf(pw, "line %d\n", i)
	}
	pw.Close()
	<-done
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root:x:0:0\n" {
		t.Errorf("the writer followed a symlink into another file:\n%s", b)
	}
	if b, _ := os.ReadFile(path + ".1"); !strings.Contains(string(b), "line 19") {
		t.Errorf("the lines did not stay in the log it had open:\n%s", b)
	}
}
