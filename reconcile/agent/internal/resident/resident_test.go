package resident

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// roMappings are the executable's read-only data mappings (r--p):
// rodata and the function tables, which the test binary barely touches
// once it runs, unlike its code.
func roMappings(t *testing.T) [][2]uintptr {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]uintptr
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != exe || f[1] != "r--p" {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		z, _ := strconv.ParseUint(hi, 16, 64)
		out = append(out, [2]uintptr{uintptr(a), uintptr(z)})
	}
	if len(out) == 0 {
		t.Fatal("no read-only mapping of the executable")
	}
	return out
}

// pagemap reads which pages of ranges are mapped in this process (bit
// 63 of /proc/self/pagemap). Everything it needs is opened and allocated
// up front, so that reading touches as little of the executable as
// possible.
type pagemap struct {
	f      *os.File
	ranges [][2]uintptr
	bufs   [][]byte
}

func newPagemap(t *testing.T, ranges [][2]uintptr) *pagemap {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	p := &pagemap{f: f, ranges: ranges}
	page := uintptr(os.Getpagesize())
	for _, r := range ranges {
		p.bufs = append(p.bufs, make([]byte, 8*((r[1]-r[0])/page)))
	}
	return p
}

// read fills the buffers; count then counts.
func (p *pagemap) read() error {
	page := uintptr(os.Getpagesize())
	for i, r := range p.ranges {
		if _, err := p.f.ReadAt(p.bufs[i], int64(r[0]/page*8)); err != nil {
			return err
		}
	}
	return nil
}

func (p *pagemap) count() (mapped, all int) {
	for _, b := range p.bufs {
		for i := 0; i < len(b); i += 8 {
			if binary.LittleEndian.Uint64(b[i:])&(1<<63) != 0 {
				mapped++
			}
			all++
		}
	}
	return mapped, all
}

// TestDropExecutable maps every page of the executable's read-only data
// (MADV_POPULATE_READ, as if each had been read), drops them, and checks
// with /proc/self/pagemap that they are no longer mapped; the process
// runs on, mapping back only what it touches.
func TestDropExecutable(t *testing.T) {
	ro := roMappings(t)
	for _, r := range ro {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_POPULATE_READ); errno != 0 {
			t.Fatalf("MADV_POPULATE_READ: %v", errno)
		}
	}
	pm := newPagemap(t, ro)
	if err := pm.read(); err != nil {
		t.Fatal(err)
	}
	before, all := pm.count()
	if before != all {
		t.Fatalf("%d of %d pages mapped after MADV_POPULATE_READ", before, all)
	}
	n, err := DropExecutable()
	rerr := pm.read()
	if err != nil {
		t.Fatal(err)
	}
	if rerr != nil {
		t.Fatal(rerr)
	}
	after, _ := pm.count()
	t.Logf("executable mappings %d KiB; read-only data pages mapped: %d of %d before, %d after", n/1024, before, all, after)
	if after > all/2 {
		t.Errorf("%d of %d read-only data pages still mapped after DropExecutable", after, all)
	}
}

// canary lives in the executable's writable data (initialised, no
// pointers: .noptrdata), a private file mapping where MADV_DONTNEED would
// bring back the file's bytes and lose what the process wrote.
var canary = [8]uint64{1, 2, 3, 4, 5, 6, 7, 8}

func TestDropExecutableKeepsWrittenData(t *testing.T) {
	for i := range canary {
		canary[i] = 0xdead0000 + uint64(i)
	}
	if _, err := DropExecutable(); err != nil {
		t.Fatal(err)
	}
	for i, v := range canary {
		if v != 0xdead0000+uint64(i) {
			t.Fatalf("canary[%d] = %#x after DropExecutable: writable data was dropped", i, v)
		}
	}
}

func TestRelease(t *testing.T) {
	if err := Release(); err != nil {
		t.Fatal(err)
	}
}

func TestQuiet(t *testing.T) {
	var calls atomic.Int32
	released := make(chan struct{}, 4)
	q := NewQuiet(20*time.Millisecond, func() { calls.Add(1); released <- struct{}{} })
	defer q.Stop()
	wait := func() {
		t.Helper()
		select {
		case <-released:
		case <-time.After(10 * time.Second):
			t.Fatal("no release")
		}
	}
	// Start-up counts as work: a release follows without a kick.
	wait()
	// Then nothing until the next kick.
	time.Sleep(100 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d releases without work, want 1", n)
	}
	q.Kick()
	q.Kick()
	wait()
	time.Sleep(100 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d releases after two kicks in a row, want 2", n)
	}
	// Stopped: no release.
	q.Kick()
	q.Stop()
	time.Sleep(100 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Fatalf("a release after Stop (%d)", n)
	}
}
