// Package oomscore sets a process's oom_score_adj, clamped to what the
// kernel allows. Without CAP_SYS_RESOURCE a value cannot be lowered below
// the minimum the process inherited (the agent may run that way); such a
// refusal is not an error, the lowest value allowed is kept instead.
package oomscore

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Range of oom_score_adj.
const (
	Min = -1000
	Max = 1000
)

// Agent is the agent's own oom_score_adj, kubelet's value for node agents
// (the pause gets it too): under memory pressure the kernel kills
// workloads long before the process that restarts them.
const Agent = -998

// RefusedError says that the kernel kept a higher value than was asked:
// lowering oom_score_adj below what a process inherited needs
// CAP_SYS_RESOURCE.
type RefusedError struct {
	Wanted, Kept int
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("oom_score_adj stays %d instead of %d: lowering it needs CAP_SYS_RESOURCE, which this process lacks", e.Kept, e.Wanted)
}

// SetSelf sets the calling process's value as Set does, and returns a
// *RefusedError (with the value in effect) when the kernel kept a higher
// one, for a caller that must say so.
func SetSelf(want int) (int, error) {
	got, err := Set(0, want)
	if err == nil && got != min(max(want, Min), Max) {
		err = &RefusedError{Wanted: want, Kept: got}
	}
	return got, err
}

func path(pid int) string {
	if pid == 0 {
		return "/proc/self/oom_score_adj"
	}
	return "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
}

// Get returns the oom_score_adj of pid (0: the calling process).
func Get(pid int) (int, error) {
	b, err := os.ReadFile(path(pid))
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path(pid), err)
	}
	return v, nil
}

func write(pid, v int) error {
	f, err := os.OpenFile(path(pid), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(v))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Set gives pid (0: the calling process) the oom_score_adj want, or the
// lowest value above it the kernel accepts, and returns the value set.
func Set(pid, want int) (int, error) {
	want = min(max(want, Min), Max)
	cur, err := Get(pid)
	if err != nil {
		return 0, err
	}
	if want == cur {
		return cur, nil
	}
	err = write(pid, want)
	if err == nil {
		return want, nil
	}
	if !errors.Is(err, os.ErrPermission) || want > cur {
		return cur, fmt.Errorf("set %s to %d: %w", path(pid), want, err)
	}
	// The minimum is a fixed value between want (refused) and cur
	// (held): find it.
	lo, hi := want, cur
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if write(pid, mid) == nil {
			hi = mid
		} else {
			lo = mid
		}
	}
	if err := write(pid, hi); err != nil {
		return cur, fmt.Errorf("set %s to %d: %w", path(pid), hi, err)
	}
	return hi, nil
}
