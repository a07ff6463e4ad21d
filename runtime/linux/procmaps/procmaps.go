// Package procmaps reads which address ranges of this process map its own
// executable read-only (/proc/self/maps): the pages a process may give
// back with MADV_DONTNEED, since the kernel maps them again from the page
// cache on the next access.
package procmaps

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Range is [Start, End) of one mapping.
type Range struct{ Start, End uintptr }

// Executable returns the private mappings of this process's executable
// whose permissions are one of perms ("r--p", "r-xp").
func Executable(perms ...string) ([]Range, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Range
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || !slices.Contains(perms, fields[1]) {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || b <= a {
			continue
		}
		out = append(out, Range{uintptr(a), uintptr(b)})
	}
	return out, sc.Err()
}
