// Package oomscore sets a process's oom_score_adj, the kernel's bias when
// it picks a process to kill under memory pressure, and says plainly what
// value is in effect when the kernel refuses one.
package oomscore

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Agent is the agent's own oom_score_adj, kubelet's value for node
// agents (the pause gets it too): under memory pressure the kernel kills
// workloads long before the process that restarts them.
const Agent = -998

// RefusedError says that the kernel kept a different value than asked.
type RefusedError struct {
	Wanted, Kept int
	Err          error
}

func (e *RefusedError) Error() string {
	why := e.Err.Error()
	if errors.Is(e.Err, syscall.EACCES) || errors.Is(e.Err, syscall.EPERM) {
		why = "lowering it needs CAP_SYS_RESOURCE, which this process lacks"
	}
	return fmt.Sprintf("oom_score_adj stays %d instead of %d: %s", e.Kept, e.Wanted, why)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// SetSelf sets this process's oom_score_adj; see Set.
func SetSelf(adj int) (int, error) { return Set("/proc/self/oom_score_adj", adj) }

// Set writes adj to an oom_score_adj file (/proc/<pid>/oom_score_adj) and
// returns the value in effect afterwards. Without CAP_SYS_RESOURCE the
// kernel refuses to go below the lowest value a privileged process set;
// the error is then a *RefusedError naming the value kept and why.
func Set(file string, adj int) (int, error) {
	if adj < -1000 || adj > 1000 {
		return 0, fmt.Errorf("oom_score_adj %d: outside [-1000, 1000]", adj)
	}
	werr := os.WriteFile(file, []byte(strconv.Itoa(adj)), 0o644)
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, errors.Join(werr, err)
	}
	kept, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %q: %w", file, b, err)
	}
	if werr != nil {
		var pe *os.PathError
		if errors.As(werr, &pe) {
			werr = pe.Err
		}
		return kept, &RefusedError{Wanted: adj, Kept: kept, Err: werr}
	}
	return kept, nil
}
