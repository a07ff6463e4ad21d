package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/shim"
	"golang.org/x/sys/unix"
)

// GCContainers removes the container leftovers a crash can leave: records
// whose sandbox is gone (with their cgroups, overlay directories and exit
// records), run directories without a record (a crash before the intent was
// written), exit records without a container, and pod cgroups below this
// runtime's parent whose sandbox has no record. A shim of this run root
// without a record is killed. It returns one line per object removed.
// GC calls it after the sandbox passes.
func (r *Runtime) GCContainers(ctx context.Context) ([]string, error) {
	var removed []string
	var errs []error
	sandboxExists := func(id string) bool {
		_, err := os.Stat(r.sandboxDir(id))
		return err == nil
	}
	ents, err := os.ReadDir(r.containersDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("gc containers: %w", err)
	}
	known := map[string]bool{}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		id := e.Name()
		if strings.Contains(id, ".tmp.") {
			continue
		}
		dir := filepath.Join(r.containersDir(), id)
		rec, err := readContainerRecord(dir)
		if record.IsCorrupt(err) {
			// Set aside; cleanQuarantine (after this pass) removes what it
			// named.
			r.setAside(kindContainer, id, err)
			continue
		}
		if err != nil {
			if _, ok := inflight.Load(dir); ok {
				continue // this process is writing its record
			}
			// No intent record: nothing was made from it.
			if os.RemoveAll(dir) == nil {
				removed = append(removed, "container directory "+id+" (no record)")
			}
			continue
		}
		known[id] = true
		if sandboxExists(rec.SandboxID) {
			continue
		}
		unlock := r.lockID("container/" + id)
		err = r.removeContainer(ctx, rec)
		unlock()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		delete(known, id)
		removed = append(removed, fmt.Sprintf("container %s (sandbox %s gone)", id, rec.SandboxID))
	}
	exits, _ := os.ReadDir(record.ExitsDir(r.cfg.RunRoot))
	for _, e := range exits {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && !known[id] {
			if os.Remove(filepath.Join(record.ExitsDir(r.cfg.RunRoot), e.Name())) == nil {
				removed = append(removed, "exit record "+id+" (no container)")
			}
		}
	}
	for _, pid := range r.orphanShims(known) {
		if unix.Kill(pid, unix.SIGKILL) == nil {
			removed = append(removed, fmt.Sprintf("shim %d (no record)", pid))
		}
	}
	if cg, err := r.cgroupManager(r.cfg.CgroupParent); err == nil {
		kids, _ := cg.Children()
		foreign := r.readOwners()
		for _, k := range kids {
			sid, ok := strings.CutPrefix(k, "pod-")
			if !ok || sandboxExists(sid) || validID(sid) != nil || foreign.ids[sid] != "" {
				continue
			}
			if err := cg.Remove(k); err != nil {
				errs = append(errs, fmt.Errorf("gc: cgroup %s: %w", cg.Path(k), err))
				continue
			}
			removed = append(removed, "cgroup "+cg.Path(k))
		}
	}
	return removed, errors.Join(errs...)
}

// orphanShims lists shim daemons of this run root whose container has no
// record, found by their arguments in /proc. Spares waiting for a
// container are left alone: they end with the agent that started them.
func (r *Runtime) orphanShims(known map[string]bool) []int {
	var out []int
	for id, pids := range shimDaemons(r.cfg.RunRoot) {
		if !known[id] && !shim.IsSpare(id) {
			out = append(out, pids...)
		}
	}
	return out
}

// shimDaemons lists the shim daemons of runRoot in /proc by the container
// ID in their arguments. A spare handed its container writes the ID over
// its spare slot, padded with NULs: they are trimmed.
func shimDaemons(runRoot string) map[string][]int {
	ents, _ := os.ReadDir("/proc")
	out := map[string][]int{}
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(argv) == 3 && argv[0] == ShimDaemonName && argv[1] == runRoot {
			out[argv[2]] = append(out[argv[2]], pid)
		}
	}
	return out
}
