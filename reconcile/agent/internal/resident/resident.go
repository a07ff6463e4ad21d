// Package resident gives back the memory a long-running process holds
// without using it once it goes quiet: the pages of its own executable
// that only start-up (or a burst of work) touched.
package resident

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procmaps"
)

// Release drops the executable's resident pages (DropExecutable). It
// leaves the heap to the runtime's scavenger, which returns free pages by
// itself: a forced collection and release (debug.FreeOSMemory) gained
// ~0.2 MiB here, and the heap goal it left behind put a collection on the
// path of the next pod start (+8 ms median, measured in
// BenchmarkSideBySide's start after a quiet spell).
func Release() error {
	_, err := DropExecutable()
	return err
}

// DropExecutable unmaps the resident pages of this process's executable
// from its read-only private mappings (code, read-only data, the
// function tables): pages that package initialisers and start-up touched
// once stay mapped, and counted in the RSS, for the life of the process.
// MADV_DONTNEED on a private file mapping only takes the pages out of the
// process: they stay in the page cache, and the next access maps them
// again from it (a minor fault). Writable mappings (data, bss, the heap)
// are never touched: there MADV_DONTNEED would discard what was written.
// It returns the bytes of the mappings it covered.
func DropExecutable() (int, error) {
	ranges, err := procmaps.Executable("r-xp", "r--p")
	if err != nil {
		return 0, err
	}
	total := 0
	for _, r := range ranges {
		// By address: the ranges are not Go memory, and a slice over
		// them is not needed to advise the kernel.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.Start, r.End-r.Start, unix.MADV_DONTNEED); errno != 0 {
			return total, os.NewSyscallError("madvise", errno)
		}
		total += int(r.End - r.Start)
	}
	return total, nil
}

// Quiet calls a release function once the process has done no work for a
// while: each Kick (work done) restarts the wait, and after a release
// nothing runs until the next Kick. It starts as if kicked, so that
// start-up counts as work. No timer runs while the process is quiet.
type Quiet struct {
	d  time.Duration
	mu sync.Mutex
	t  *time.Timer
}

// NewQuiet calls release d after the last Kick (or after now).
func NewQuiet(d time.Duration, release func()) *Quiet {
	return &Quiet{d: d, t: time.AfterFunc(d, release)}
}

// Kick records work: the release waits d from now.
func (q *Quiet) Kick() {
	q.mu.Lock()
	q.t.Reset(q.d)
	q.mu.Unlock()
}

// Stop cancels a pending release.
func (q *Quiet) Stop() {
	q.mu.Lock()
	q.t.Stop()
	q.mu.Unlock()
}
