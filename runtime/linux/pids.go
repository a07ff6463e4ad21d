package linux

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
)

// Process-count limits above the containers' own: one per pod, so a few
// containers of one pod cannot take the host's PID space together, and one
// on the cgroup parent, so all pods together leave the host room to fork
// (sshd, the agent's own helpers, a shell for whoever has to look).

// DefaultReservedPids is how many PIDs the host keeps outside all pods when
// Config.ReservedPids is 0: a tenth of its capacity, at least 1024, and at
// most half of it (a tiny pid_max still leaves pods something).
func DefaultReservedPids(capacity int64) int64 {
	return min(max(capacity/10, 1024), capacity/2)
}

// hostPidCapacity is how many tasks the host can have: the kernel refuses a
// fork past kernel.pid_max PIDs or kernel.threads-max tasks.
func hostPidCapacity() (int64, error) {
	var capacity int64
	for _, f := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, fmt.Errorf("host PID capacity: %w", err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("host PID capacity: %s: %q is not a count", f, strings.TrimSpace(string(b)))
		}
		if capacity == 0 || n < capacity {
			capacity = n
		}
	}
	return capacity, nil
}

// checkPidsLimits refuses settings that cannot work, so that New fails at
// start rather than every container start failing later.
func (r *Runtime) checkPidsLimits() error {
	if r.cfg.PodPidsLimit < -1 {
		return fmt.Errorf("pod pids limit %d: must be -1 (none), 0 (the sum of the pod's containers) or a count", r.cfg.PodPidsLimit)
	}
	_, err := r.allPodsPidsMax()
	return err
}

// allPodsPidsMax is pids.max of the cgroup parent, 0 when the parent is
// not limited.
func (r *Runtime) allPodsPidsMax() (int64, error) {
	switch {
	case r.cfg.ReservedPids == -1:
		return 0, nil
	case r.cfg.ReservedPids < -1:
		return 0, fmt.Errorf("reserved PIDs %d: must be -1 (no limit on all pods), 0 (the default) or a count", r.cfg.ReservedPids)
	}
	capacity, err := hostPidCapacity()
	if err != nil {
		return 0, err
	}
	reserved := r.cfg.ReservedPids
	if reserved == 0 {
		reserved = DefaultReservedPids(capacity)
	}
	if reserved >= capacity {
		return 0, fmt.Errorf("reserved PIDs %d leave none for pods: the host's capacity is %d (the lower of kernel.pid_max and kernel.threads-max)", reserved, capacity)
	}
	return capacity - reserved, nil
}

// podPidsMax is the pod cgroup's pids.max when a container allowed
// ctrPids processes starts in it: the configured per-pod limit, or the sum
// of what the pod's running containers and the new one may use. Exited
// containers do not count, so a restart does not add up.
func (r *Runtime) podPidsMax(cg *cgroups.Manager, sandboxID string, ctrPids int64) (int64, error) {
	switch {
	case r.cfg.PodPidsLimit > 0:
		return r.cfg.PodPidsLimit, nil
	case r.cfg.PodPidsLimit < 0:
		return 0, nil
	}
	running, err := cg.BusyChildrenPidsMax(podCgroup(sandboxID))
	if err != nil {
		return 0, fmt.Errorf("pod pids limit of sandbox %s: %w", sandboxID, err)
	}
	return min(running+ctrPids, cgroups.MaxPids), nil
}

// createPodCgroup makes (or updates) the pod cgroup of sandbox sb before a
// container allowed ctrPids processes joins it, with the pod's pids limit,
// the pod-level limits the sandbox was made with, and the parent's limit
// for all pods. A limit that cannot be written fails the start.
func (r *Runtime) createPodCgroup(cg *cgroups.Manager, sb *sandboxRecord, ctrPids int64) error {
	all, err := r.allPodsPidsMax()
	if err != nil {
		return err
	}
	if err := cg.LimitParent(cgroups.Resources{PidsMax: all}); err != nil {
		return fmt.Errorf("limit all pods: %w", err)
	}
	pod, err := r.podPidsMax(cg, sb.ID, ctrPids)
	if err != nil {
		return err
	}
	res := podCgroupResources(sb.Config.Resources)
	res.PidsMax = pod
	return cg.Create(podCgroup(sb.ID), res)
}

// podCgroupResources are the pod cgroup's limits from a sandbox's
// pod-level resources (the pids limit is the runtime's, not the caller's).
func podCgroupResources(r runtime.Resources) cgroups.Resources {
	return cgroups.Resources{MemoryMax: r.MemoryLimit, CPULimitMilli: r.CPULimitMilli, CPURequestMilli: r.CPURequestMilli}
}
