package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/netconf"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
)

// damages are the ways a record file is found broken: emptied by a crash
// between create and write, overwritten with garbage, cut short, or
// written by a newer agent.
var damages = []struct {
	name, reason string // reason: a word the reported reason must contain
	damage       func(b []byte) []byte
}{
	{"empty", "empty", func([]byte) []byte { return nil }},
	{"garbage", "not a JSON record", func([]byte) []byte { return []byte("\x00\xff\xfe garbage \x7f") }},
	{"truncated", "not a JSON record", func(b []byte) []byte { return b[:len(b)/2] }},
	{"future-version", "newer than this agent", func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"version":1`), []byte(`"version":99`), 1)
	}},
}

func damageFile(t *testing.T, path string, damage func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, damage(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// takeProblems asks rt for the records it set aside: the reconciler's
// view (runtime.ProblemReporter).
func takeProblems(t *testing.T, rt runtime.Runtime) []runtime.RecordProblem {
	t.Helper()
	pr, ok := rt.(runtime.ProblemReporter)
	if !ok {
		t.Fatal("the runtime does not report set-aside records (runtime.ProblemReporter)")
	}
	return pr.TakeProblems()
}

// checkProblem wants exactly one problem: the record of kind and id, with
// its pod, moved to a quarantine entry that says why.
func checkProblem(t *testing.T, e *ctrEnv, probs []runtime.RecordProblem, kind, id string, pod runtime.PodKey, reason string) {
	t.Helper()
	if len(probs) != 1 {
		t.Fatalf("problems reported: %+v, want one for %s %s", probs, kind, id)
	}
	p := probs[0]
	if p.Kind != kind || p.ID != id || p.Pod == nil || *p.Pod != pod || !strings.Contains(p.Reason, reason) {
		t.Errorf("problem %+v: want %s %s of pod %s, reason with %q", p, kind, id, pod, reason)
	}
	if !strings.HasPrefix(p.Path, filepath.Join(e.cfg.RunRoot, "quarantine")+"/") {
		t.Errorf("set aside at %s, want below the run root's quarantine", p.Path)
	}
	b, err := os.ReadFile(filepath.Join(p.Path, "set-aside.json"))
	if err != nil || !strings.Contains(string(b), reason) {
		t.Errorf("quarantine entry's reason file: %q, %v", b, err)
	}
}

// processesOf lists live processes of the run root whose argv[0] is name
// and last argument id (pauses, shims).
func processesOf(runRoot, name, id string) []int {
	return linuxtest.Processes(func(argv []string) bool {
		return len(argv) == 3 && argv[0] == name && argv[1] == runRoot && strings.TrimRight(argv[2], "\x00") == id
	})
}

// TestCorruptSandboxRecord damages the record of one sandbox in each way
// while the runtime runs another pod: listing keeps working, the bad record
// is moved aside and reported with its pod, and its pause, netns, veth,
// lease and pod cgroup are removed from the kernel.
func TestCorruptSandboxRecord(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	other := e.startSleeper(t, "other", nil)
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			pod := runtime.PodKey{Namespace: "default", Name: "victim-" + d.name}
			sb, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: pod})
			if err != nil {
				t.Fatal(err)
			}
			// A container too: the pod cgroup exists, and it goes with
			// the sandbox.
			c, err := e.rt.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: sb.ID, Name: "app", Image: testImage, Command: []string{"/bin/sleep", "1000"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(processesOf(e.cfg.RunRoot, PauseName, sb.ID)) != 1 {
				t.Fatal("no pause to lose")
			}
			workload, err := procid.Of(c.PID)
			if err != nil {
				t.Fatal(err)
			}
			damageFile(t, filepath.Join(e.rt.sandboxDir(sb.ID), "sandbox.json"), d.damage)

			boxes, err := e.rt.ListSandboxes(ctx)
			if err != nil {
				t.Fatalf("one damaged record stops the listing: %v", err)
			}
			if ids := sandboxIDs(boxes); slices.Contains(ids, sb.ID) || !slices.Contains(ids, e.sb.ID) {
				t.Fatalf("listing %v: want %s (healthy) without %s (damaged)", ids, e.sb.ID, sb.ID)
			}
			checkProblem(t, e, takeProblems(t, e.rt), "sandbox", sb.ID, pod, d.reason)
			if again := takeProblems(t, e.rt); len(again) != 0 {
				t.Errorf("reported twice: %+v", again)
			}
			if _, err := e.rt.GetSandbox(ctx, sb.ID); !errors.Is(err, runtime.ErrNotFound) {
				t.Errorf("get of the set-aside sandbox: %v, want not found", err)
			}
			eventually(t, "the set-aside sandbox's kernel objects are removed", func() error {
				return setAsideSandboxLeft(e, sb, c, workload)
			})
			// The healthy pod was not touched.
			got, err := e.rt.GetContainer(ctx, other.ID)
			if err != nil || got.State != runtime.ContainerRunning || got.PID != other.PID {
				t.Fatalf("the healthy pod's container: %+v, %v", got, err)
			}
			if sb, err := e.rt.GetSandbox(ctx, e.sb.ID); err != nil || sb.State != runtime.SandboxReady {
				t.Fatalf("the healthy sandbox: %+v, %v", sb, err)
			}
		})
	}
	// A new sandbox still gets an address and runs beside the healthy one.
	if _, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "after"}}); err != nil {
		t.Fatal(err)
	}
	removeQuarantine(t, e)
	for _, sb := range must(e.rt.ListSandboxes(ctx)) {
		if sb.ID != e.sb.ID {
			e.rt.RemoveSandbox(ctx, sb.ID)
		}
	}
	e.check(t)
}

func sandboxIDs(boxes []*runtime.Sandbox) []string {
	var ids []string
	for _, b := range boxes {
		ids = append(ids, b.ID)
	}
	return ids
}

// setAsideSandboxLeft says what of a set-aside sandbox is still there.
func setAsideSandboxLeft(e *ctrEnv, sb *runtime.Sandbox, c *runtime.Container, workload procid.ID) error {
	var left []string
	if p := processesOf(e.cfg.RunRoot, PauseName, sb.ID); len(p) > 0 {
		left = append(left, fmt.Sprintf("pause %v", p))
	}
	if _, err := os.Lstat(sb.NetNSPath); err == nil {
		left = append(left, "netns "+sb.NetNSName)
	}
	if l := linuxtest.Links(sb.VethHost); len(l) > 0 {
		left = append(left, "veth "+sb.VethHost)
	}
	for _, l := range linuxtest.Leases(e.cfg.StateRoot) {
		if strings.HasSuffix(l, "/"+sb.IP) {
			left = append(left, "lease "+l)
		}
	}
	if e.cg.Exists(podCgroup(sb.ID)) {
		left = append(left, "cgroup "+podCgroup(sb.ID))
	}
	if p := processesOf(e.cfg.RunRoot, ShimDaemonName, c.ID); len(p) > 0 {
		left = append(left, fmt.Sprintf("shim %v", p))
	}
	if workload.Alive() {
		left = append(left, fmt.Sprintf("workload %d", workload.PID))
	}
	if _, err := os.Stat(e.rt.containerDir(c.ID)); err == nil {
		left = append(left, "container record "+c.ID)
	}
	if _, err := os.Stat(e.rt.containerStateDir(c.ID)); err == nil {
		left = append(left, "write layer of "+c.ID)
	}
	if _, err := os.Stat(e.rt.sandboxLogDir(sb.ID)); err == nil {
		left = append(left, "logs of "+sb.ID)
	}
	if len(left) > 0 {
		return errors.New(strings.Join(left, ", "))
	}
	return nil
}

// removeQuarantine checks that every set-aside record was cleaned up, then
// removes the quarantine so the census of the run root holds.
func removeQuarantine(t *testing.T, e *ctrEnv) {
	t.Helper()
	dir := filepath.Join(e.cfg.RunRoot, "quarantine")
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		if _, err := os.Stat(filepath.Join(dir, en.Name(), "cleaned")); err != nil {
			t.Errorf("quarantine entry %s not marked cleaned", en.Name())
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptContainerRecords damages a container's record, its start
// record or its exit record in each way, and a restarted runtime (which
// reads them afresh) lists on: the container is moved aside and reported
// with its pod, its processes, shim, cgroup and write layer are removed,
// and the other pod runs on.
func TestCorruptContainerRecords(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	other := e.startSleeper(t, "other", nil)
	pod := runtime.PodKey{Namespace: "default", Name: "victims"}
	victims, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	files := []struct {
		name   string
		exited bool // the record exists once the container exited
		path   func(c *runtime.Container) string
	}{
		{"container", false, func(c *runtime.Container) string {
			return filepath.Join(e.rt.containerDir(c.ID), record.ContainerFile)
		}},
		{"state", false, func(c *runtime.Container) string { return filepath.Join(e.rt.containerDir(c.ID), record.StateFile) }},
		{"exit", true, func(c *runtime.Container) string { return record.ExitPath(e.cfg.RunRoot, c.ID) }},
	}
	for _, f := range files {
		for _, d := range damages {
			t.Run(f.name+"/"+d.name, func(t *testing.T) {
				name := f.name + "-" + d.name
				cfg := &runtime.ContainerConfig{SandboxID: victims.ID, Name: name, Image: testImage, Command: []string{"/bin/sleep", "1000"}}
				if f.exited {
					cfg.Command = []string{"/bin/true"}
				}
				c, err := e.rt.StartContainer(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				workload, err := procid.Of(c.PID)
				if err != nil && !f.exited {
					t.Fatal(err)
				}
				if f.exited {
					e.waitExit(t, c.ID)
				}
				damageFile(t, f.path(c), d.damage)

				// A restarted agent reads every record afresh.
				rt := e.open(t)
				ctrs, err := rt.ListContainers(ctx, runtime.ContainerFilter{})
				if err != nil {
					t.Fatalf("one damaged record stops the listing: %v", err)
				}
				var ids []string
				for _, c := range ctrs {
					ids = append(ids, c.ID)
				}
				if slices.Contains(ids, c.ID) || !slices.Contains(ids, other.ID) {
					t.Fatalf("listing %v: want %s (healthy) without %s (damaged)", ids, other.ID, c.ID)
				}
				checkProblem(t, e, takeProblems(t, rt), "container", c.ID, pod, d.reason)
				if _, err := rt.GetContainer(ctx, c.ID); !errors.Is(err, runtime.ErrNotFound) {
					t.Errorf("get of the set-aside container: %v, want not found", err)
				}
				eventually(t, "the set-aside container's processes and files are removed", func() error {
					var left []string
					if p := processesOf(e.cfg.RunRoot, ShimDaemonName, c.ID); len(p) > 0 {
						left = append(left, fmt.Sprintf("shim %v", p))
					}
					if !f.exited && workload.Alive() {
						left = append(left, fmt.Sprintf("workload %d", c.PID))
					}
					if e.cg.Exists(ctrCgroup(victims.ID, c.ID)) {
						left = append(left, "cgroup")
					}
					if _, err := os.Stat(e.rt.containerStateDir(c.ID)); err == nil {
						left = append(left, "write layer")
					}
					if _, err := os.Stat(record.ExitPath(e.cfg.RunRoot, c.ID)); err == nil {
						left = append(left, "exit record")
					}
					if len(left) > 0 {
						return errors.New(strings.Join(left, ", "))
					}
					return nil
				})
				// The same pod can start the container again.
				cfg.Attempt = 1
				if _, err := rt.StartContainer(ctx, cfg); err != nil {
					t.Fatalf("start again: %v", err)
				}
				got, err := rt.GetContainer(ctx, other.ID)
				if err != nil || got.State != runtime.ContainerRunning || got.PID != other.PID {
					t.Fatalf("the healthy pod's container: %+v, %v", got, err)
				}
			})
		}
	}
	if err := e.rt.RemoveSandbox(ctx, victims.ID); err != nil {
		t.Fatal(err)
	}
	removeQuarantine(t, e)
	e.check(t)
}

// TestCorruptRecordWithoutOwner damages both a sandbox's record and its
// owner file: the problem is still reported (without a pod) and the kernel
// objects, whose names derive from the ID, still go.
func TestCorruptRecordWithoutOwner(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	sb, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "anonymous"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"sandbox.json", "owner.json"} {
		if err := os.WriteFile(filepath.Join(e.rt.sandboxDir(sb.ID), f), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// GC meets the record, sets it aside and (whether it or the
	// background cleanup gets there first) returns once what the record
	// named is gone.
	if _, err := e.rt.GC(ctx); err != nil {
		t.Fatalf("GC: %v", err)
	}
	probs := takeProblems(t, e.rt)
	if len(probs) != 1 || probs[0].ID != sb.ID || probs[0].Pod != nil {
		t.Fatalf("problems %+v: want one for %s without a pod", probs, sb.ID)
	}
	if _, err := os.Lstat(filepath.Join(netconf.NetNSDir, sb.NetNSName)); err == nil {
		t.Errorf("netns %s left", sb.NetNSName)
	}
	if p := processesOf(e.cfg.RunRoot, PauseName, sb.ID); len(p) > 0 {
		t.Errorf("pause %v left", p)
	}
	removeQuarantine(t, e)
	e.check(t)
}

// TestCorruptRecordFoundAtStart: a restarted agent meets the damaged
// record while its runtime is being made (the lease pool is checked
// against the records): the runtime starts, reports it, and removes what
// it named once it is whole.
func TestCorruptRecordFoundAtStart(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	pod := runtime.PodKey{Namespace: "default", Name: "found-at-start"}
	sb, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.rt.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: sb.ID, Name: "app", Image: testImage, Command: []string{"/bin/sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	workload, err := procid.Of(c.PID)
	if err != nil {
		t.Fatal(err)
	}
	damageFile(t, filepath.Join(e.rt.sandboxDir(sb.ID), "sandbox.json"), damages[1].damage)
	rt := e.open(t)
	checkProblem(t, e, takeProblems(t, rt), "sandbox", sb.ID, pod, damages[1].reason)
	eventually(t, "the set-aside sandbox's kernel objects are removed", func() error {
		return setAsideSandboxLeft(e, sb, c, workload)
	})
	removeQuarantine(t, e)
	e.check(t)
}
