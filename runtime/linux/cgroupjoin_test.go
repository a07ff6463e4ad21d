package linux

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// TestWorkloadStartsInItsCgroups runs `cat /proc/self/cgroup` as the
// container's command, so the line is read by the workload's first
// process as it starts, and checks every hierarchy the container is
// limited in: on v1 the init's exec thread joins them itself (writing 0 to
// the tasks files), and a process that ran even briefly outside one, or
// that joined from another thread than the one that exec'd, would show
// its shim's cgroup there. Cold and through a spare shim, with the PID
// namespace of its own and shared.
func TestWorkloadStartsInItsCgroups(t *testing.T) {
	for _, tc := range []struct{ shared, spare bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		t.Run(fmt.Sprintf("sharedPID-%v-spare-%v", tc.shared, tc.spare), func(t *testing.T) {
			sbCfg := &runtime.SandboxConfig{}
			if tc.shared {
				sbCfg.Namespaces.PID = runtime.NamespacePod
			}
			e := newCtrEnv(t, sbCfg)
			if tc.spare {
				e.rt.EnableSpareShim()
				defer e.rt.DisableSpareShim() // before the census too, below
				for ok, _ := e.rt.spareReady(); !ok; ok, _ = e.rt.spareReady() {
					time.Sleep(5 * time.Millisecond)
				}
			}
			c, out := e.run(t, e.config("cg", "cat", "/proc/self/cgroup"))
			if c.ExitCode != 0 {
				t.Fatalf("exit %d: %s", c.ExitCode, out)
			}
			rel := ctrCgroup(e.sb.ID, c.ID)
			want := []string{""}
			if !e.cg.Unified {
				want = []string{"memory", "cpu", "cpuacct", "pids", "devices"}
			}
			for _, h := range want {
				found := false
				for _, line := range strings.Split(out, "\n") {
					parts := strings.SplitN(line, ":", 3)
					if len(parts) != 3 || !hasController(parts[1], h) {
						continue
					}
					found = true
					if !strings.HasSuffix(parts[2], "/"+e.cfg.CgroupParent+"/"+rel) {
						t.Errorf("hierarchy %q: the workload started in %s, want its cgroup %s", h, parts[2], rel)
					}
				}
				if !found {
					t.Errorf("hierarchy %q not in /proc/self/cgroup:\n%s", h, out)
				}
			}
			if err := e.rt.RemoveContainer(t.Context(), c.ID); err != nil {
				t.Fatal(err)
			}
			if tc.spare {
				e.rt.DisableSpareShim()
			}
			e.check(t)
		})
	}
}

// hasController reports whether a /proc/PID/cgroup controller list ("" on
// v2, else comma-separated) names h.
func hasController(list, h string) bool {
	if h == "" {
		return list == ""
	}
	for _, c := range strings.Split(list, ",") {
		if c == h {
			return true
		}
	}
	return false
}
