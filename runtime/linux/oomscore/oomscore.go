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
