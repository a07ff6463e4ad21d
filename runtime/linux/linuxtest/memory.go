package linuxtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcKiB reads "Key: N kB" lines of a /proc file (status, smaps_rollup)
// and returns the values of keys, in KiB.
func ProcKiB(path string, keys ...string) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				out[k], _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			}
		}
	}
	return out, nil
}

// Smaps returns the proportional (Pss) and private (clean + dirty) memory
// of pid in KiB, from /proc/PID/smaps_rollup.
func Smaps(pid int) (pss, private int, err error) {
	m, err := ProcKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss", "Private_Clean", "Private_Dirty")
	if err != nil {
		return 0, 0, err
	}
	return m["Pss"], m["Private_Clean"] + m["Private_Dirty"], nil
}
