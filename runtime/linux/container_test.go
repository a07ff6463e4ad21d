package linux

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/caps"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/shim"
)

func TestContainerSmoke(t *testing.T) {
	e := newCtrEnv(t, nil)
	c, out := e.run(t, e.config("smoke", "/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"))
	if c.ExitCode != 3 || c.Reason != runtime.ReasonError {
		t.Errorf("exit = %d %q, want 3 Error", c.ExitCode, c.Reason)
	}
	if out != "hello\noops\n" && out != "oops\nhello\n" {
		t.Errorf("log = %q", out)
	}
	// Both streams are in the file in CRI format.
	raw, _ := os.ReadFile(c.LogPath)
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		ent, err := crilog.Parse([]byte(line))
		if err != nil {
			t.Errorf("log line %q: %v", line, err)
			continue
		}
		if want := map[string]string{"hello": "stdout", "oops": "stderr"}[string(ent.Content)]; want != ent.Stream {
			t.Errorf("line %q on %s", ent.Content, ent.Stream)
		}
	}
	if c.StartedAt.IsZero() || c.FinishedAt.Before(c.StartedAt) {
		t.Errorf("times: started %v finished %v", c.StartedAt, c.FinishedAt)
	}
	if err := e.rt.RemoveContainer(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.RemoveContainer(context.Background(), c.ID); err != nil {
		t.Errorf("second remove: %v", err)
	}
	e.check(t)
}

func TestContainerSecurityDefaults(t *testing.T) {
	e := newCtrEnv(t, nil)
	_, out := e.run(t, e.config("probe", "/usr/local/bin/ctrprobe"))
	kv := keyValues(out)
	want, _ := caps.Mask(caps.Default)
	wantHex := fmt.Sprintf("%016x", want)
	eperm := unix.EPERM.Error()
	for k, v := range map[string]string{
		"CapEff": wantHex, "CapPrm": wantHex, "CapBnd": wantHex,
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2",
		"keyctl": eperm, "bpf": eperm, "unshare": eperm, "mount": eperm,
	} {
		if kv[k] != v {
			t.Errorf("%s = %q, want %q", k, kv[k], v)
		}
	}
	// Drop ALL, run as a user: nothing effective, nothing bounding.
	uid := int64(1000)
	cfg := e.config("probe-nonroot", "/usr/local/bin/ctrprobe")
	cfg.Security = runtime.SecurityConfig{CapDrop: []string{"ALL"}, CapAdd: []string{"NET_BIND_SERVICE"}, RunAsUser: &uid, RunAsNonRoot: true}
	_, out = e.run(t, cfg)
	kv = keyValues(out)
	nbs, _ := caps.Mask([]string{"NET_BIND_SERVICE"})
	for k, v := range map[string]string{
		"CapEff": "0000000000000000", "CapBnd": fmt.Sprintf("%016x", nbs), "NoNewPrivs": "1", "Seccomp": "2",
		// The primary group is a supplementary group too, as containerd
		// does it; 3000 is the image's /etc/group membership of the user.
		"Uid": "1000 1000 1000 1000", "Gid": "1000 1000 1000 1000", "Groups": "1000 3000",
	} {
		if kv[k] != v {
			t.Errorf("non-root: %s = %q, want %q", k, kv[k], v)
		}
	}
	// Unconfined and escalation allowed: the filter and the bit are gone.
	cfg = e.config("probe-unconfined", "/usr/local/bin/ctrprobe")
	cfg.Security = runtime.SecurityConfig{Seccomp: runtime.SeccompProfile{Type: "Unconfined"}, AllowPrivilegeEscalation: true}
	_, out = e.run(t, cfg)
	kv = keyValues(out)
	if kv["Seccomp"] != "0" || kv["NoNewPrivs"] != "0" {
		t.Errorf("unconfined: Seccomp %q NoNewPrivs %q, want 0 0", kv["Seccomp"], kv["NoNewPrivs"])
	}
	// A Localhost profile from the state root's seccomp directory.
	os.MkdirAll(filepath.Join(e.cfg.StateRoot, "seccomp"), 0o700)
	os.WriteFile(filepath.Join(e.cfg.StateRoot, "seccomp", "nomkdir.json"),
		[]byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o600)
	cfg = e.config("localhost", "/bin/sh", "-c", "mkdir /tmp/x")
	cfg.Security.Seccomp = runtime.SeccompProfile{Type: "Localhost", LocalhostProfile: "nomkdir.json"}
	c, out := e.run(t, cfg)
	if c.ExitCode == 0 || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("localhost profile: exit %d, log %q", c.ExitCode, out)
	}
	// runAsNonRoot refuses root before anything starts.
	cfg = e.config("root-refused", "/bin/true")
	cfg.Security.RunAsNonRoot = true
	if _, err := e.rt.StartContainer(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "runAsNonRoot") {
		t.Errorf("runAsNonRoot with root: %v", err)
	}
	e.check(t)
}

// startSleeper starts a long-running container and returns it running.
func (e *ctrEnv) startSleeper(t testing.TB, name string, mutate func(*runtime.ContainerConfig)) *runtime.Container {
	t.Helper()
	cfg := e.config(name, "/bin/sleep", "1000")
	if mutate != nil {
		mutate(cfg)
	}
	c, err := e.rt.StartContainer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	if c.State != runtime.ContainerRunning || c.PID == 0 {
		t.Fatalf("%s: state %s pid %d, want running", name, c.State, c.PID)
	}
	return c
}

func ctrNS(t testing.TB, pid int, ns string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestContainerNamespaces(t *testing.T) {
	for _, tc := range []struct{ shared, spare bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		shared := tc.shared
		t.Run(fmt.Sprintf("sharedPID-%v-spare-%v", tc.shared, tc.spare), func(t *testing.T) {
			sbCfg := &runtime.SandboxConfig{}
			if shared {
				sbCfg.Namespaces.PID = runtime.NamespacePod
			}
			e := newCtrEnv(t, sbCfg)
			if tc.spare {
				// A spare shim with a pre-started init: the init joins the
				// pod's namespaces itself (or is replaced when the PID
				// namespace is shared).
				e.rt.EnableSpareShim()
				defer e.rt.DisableSpareShim() // before the census too, below
				for ok, _ := e.rt.spareReady(); !ok; ok, _ = e.rt.spareReady() {
					time.Sleep(5 * time.Millisecond)
				}
			}
			c := e.startSleeper(t, "ns", nil)
			pause := e.sb.PausePID
			for _, ns := range []string{"net", "ipc", "uts"} {
				if a, b := ctrNS(t, c.PID, ns), ctrNS(t, pause, ns); a != b {
					t.Errorf("%s: container %s, pause %s", ns, a, b)
				}
			}
			if a, b := ctrNS(t, c.PID, "mnt"), ctrNS(t, pause, "mnt"); a == b {
				t.Errorf("mnt namespace shared with the pause")
			}
			if a, b := ctrNS(t, c.PID, "pid"), ctrNS(t, pause, "pid"); (a == b) != shared {
				t.Errorf("pid namespace: container %s pause %s, shared=%v", a, b, shared)
			}
			// Only 0, 1, 2 are open in the workload.
			ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.PID))
			if err != nil {
				t.Fatal(err)
			}
			var fds []string
			for _, e := range ents {
				fds = append(fds, e.Name())
			}
			if diff := cmp.Diff([]string{"0", "1", "2"}, fds); diff != "" {
				t.Errorf("open fds (-want +got)\n%s", diff)
			}
			// cgroup: the workload is in the container's cgroup.
			cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.PID))
			if !strings.Contains(string(cg), c.CgroupPath) {
				t.Errorf("/proc/%d/cgroup does not name %s:\n%s", c.PID, c.CgroupPath, cg)
			}
			if err := e.rt.StopContainer(context.Background(), c.ID, time.Second); err != nil {
				t.Fatal(err)
			}
			got, _ := e.rt.GetContainer(context.Background(), c.ID)
			if got.State != runtime.ContainerExited || got.ExitCode != 137 || got.Signal != "SIGKILL" {
				// sleep as PID 1 ignores SIGTERM; shared: it gets it and dies.
				if !(shared && got.ExitCode == 143) {
					t.Errorf("after stop: %s code %d signal %q", got.State, got.ExitCode, got.Signal)
				}
			}
			e.rt.DisableSpareShim()
			e.check(t)
		})
	}
}

func TestContainerFilesystem(t *testing.T) {
	e := newCtrEnv(t, &runtime.SandboxConfig{Hostname: "fs-test", HostAliases: []runtime.HostAlias{{IP: "10.202.255.7", Hostnames: []string{"alias.test"}}}})
	script := strings.Join([]string{
		"for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do printf '%s=%s\\n' $p $(cat $p 2>/dev/null | wc -c); done",
		"ls /sys/firmware | wc -l | sed 's/^/firmware=/'",
		"echo x > /proc/sysrq-trigger 2>/dev/null && echo sysrq=writable || echo sysrq=ro",
		"echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo procsys=writable || echo procsys=ro",
		"touch /sys/x 2>/dev/null && echo sys=writable || echo sys=ro",
		"touch /rootfile && echo root=writable || echo root=ro",
		"echo hostname=$(cat /etc/hostname)",
		"grep -q alias.test /etc/hosts && echo alias=yes",
		"ls /dev | tr '\\n' ' ' | sed 's/^/dev=/'; echo",
		"echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' ')",
	}, "; ")
	_, out := e.run(t, e.config("fs", "/bin/sh", "-c", script))
	kv := keyValues(out)
	for k, v := range map[string]string{
		"/proc/kcore": "0", "/proc/keys": "0", "/proc/timer_list": "0", "/proc/sched_debug": "0", "firmware": "0",
		"sysrq": "ro", "procsys": "ro", "sys": "ro", "root": "writable", "hostname": "fs-test", "alias": "yes",
	} {
		if kv[k] != v {
			t.Errorf("%s = %q, want %q (log %q)", k, kv[k], v, out)
		}
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd"} {
		if !slices.Contains(strings.Fields(kv["dev"]), d) {
			t.Errorf("/dev lacks %s: %q", d, kv["dev"])
		}
	}
	if !strings.HasPrefix(kv["pid1"], "/bin/sh") {
		t.Errorf("PID 1 of the container is %q, want the workload", kv["pid1"])
	}
	cfg := e.config("ro", "/bin/sh", "-c", "touch /rootfile && echo root=writable || echo root=ro")
	cfg.Security.ReadOnlyRootfs = true
	_, out = e.run(t, cfg)
	if keyValues(out)["root"] != "ro" {
		t.Errorf("readOnlyRootFilesystem: %q", out)
	}
	e.check(t)
}

func TestContainerProcessSemantics(t *testing.T) {
	e := newCtrEnv(t, nil)
	uid, gid := int64(1000), int64(2000)
	probe := `echo "args=$0 $*"; echo "cwd=$(pwd)"; echo "id=$(id -u):$(id -g):$(id -G)"; echo "A=$A"; echo "B=$B"; echo "HOME=$HOME"`
	cases := []struct {
		name   string
		mutate func(*runtime.ContainerConfig)
		want   map[string]string
	}{
		{"defaults", func(c *runtime.ContainerConfig) {}, map[string]string{"args": "sh x y", "cwd": "/", "id": "0:0:0", "A": "", "HOME": "/root"}},
		{"env and workingDir", func(c *runtime.ContainerConfig) {
			c.Env = []runtime.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "two words"}, {Name: "A", Value: "later wins"}}
			c.WorkingDir = "/work/dir"
		}, map[string]string{"A": "later wins", "B": "two words", "cwd": "/work/dir"}},
		{"runAsUser with passwd", func(c *runtime.ContainerConfig) { c.Security.RunAsUser = &uid },
			map[string]string{"id": "1000:1000:1000 3000", "HOME": "/home/app"}},
		{"runAsUser and group and supplemental", func(c *runtime.ContainerConfig) {
			c.Security.RunAsUser, c.Security.RunAsGroup, c.Security.SupplementalGroups = &uid, &gid, []int64{4000}
		}, map[string]string{"id": "1000:2000:2000 3000 4000"}},
		{"supplementalGroupsPolicy Strict", func(c *runtime.ContainerConfig) {
			c.Security.RunAsUser, c.Security.RunAsGroup, c.Security.SupplementalGroups = &uid, &gid, []int64{4000}
			c.Security.SupplementalGroupsPolicy = "Strict"
		}, map[string]string{"id": "1000:2000:2000 4000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config(strings.ReplaceAll(tc.name, " ", "-"), "/bin/sh", "-c", probe)
			cfg.Args = []string{"x", "y"}
			// command [sh -c probe] + args [x y]: $0=x... Kubernetes appends args.
			tc.mutate(cfg)
			_, out := e.run(t, cfg)
			kv := keyValues(out)
			for k, v := range tc.want {
				if k == "args" {
					v = "x y" // sh -c script x y: $0=x, $*=y
					if kv[k] != "x y" {
						t.Errorf("args = %q, want %q", kv[k], v)
					}
					continue
				}
				if kv[k] != v {
					t.Errorf("%s = %q, want %q (log %q)", k, kv[k], v, out)
				}
			}
		})
	}
	// Image Cmd used when neither command nor args is given: the image's
	// Cmd is ["sh"], whose stdin is /dev/null, so it exits 0 at once.
	c, _ := e.run(t, &runtime.ContainerConfig{SandboxID: e.sb.ID, Name: "image-cmd", Image: testImage})
	if c.ExitCode != 0 || c.Reason != runtime.ReasonCompleted {
		t.Errorf("image cmd: exit %d %s", c.ExitCode, c.Reason)
	}
	// A missing executable fails the start with the step named.
	_, err := e.rt.StartContainer(context.Background(), e.config("missing", "/no/such/binary"))
	if err == nil || !strings.Contains(err.Error(), "exec /no/such/binary") {
		t.Errorf("missing binary: %v", err)
	}
	e.check(t)
}

func TestContainerOOMKilled(t *testing.T) {
	e := newCtrEnv(t, nil)
	cfg := e.config("oom", "/bin/sh", "-c", "tail /dev/zero")
	cfg.Resources.MemoryLimit = 32 << 20
	c, _ := e.run(t, cfg)
	if c.Reason != runtime.ReasonOOMKilled || c.ExitCode != 137 {
		t.Errorf("exit %d reason %q, want 137 OOMKilled", c.ExitCode, c.Reason)
	}
	e.check(t)
}

func TestContainerPidsLimit(t *testing.T) {
	e := newCtrEnv(t, nil)
	cfg := e.config("forkbomb", "/bin/sh", "-c", "i=0; while [ $i -lt 64 ]; do sleep 1000 & i=$((i+1)); done; echo spawned-all")
	cfg.Resources.PidsLimit = 8
	c, out := e.run(t, cfg)
	if !strings.Contains(out, "can't fork") || strings.Contains(out, "spawned-all") {
		t.Errorf("the pids limit did not stop the loop: exit %d, log %q", c.ExitCode, out)
	}
	if c.ExitCode == 0 {
		t.Errorf("fork bomb exited 0")
	}
	// The kernel counted the refusals (v1 pids.events, v2 likewise).
	if !e.cg.Unified {
		dir, _ := e.cg.Dir("pids", ctrCgroup(e.sb.ID, c.ID))
		ev, err := os.ReadFile(filepath.Join(dir, "pids.events"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(ev)) == "max 0" {
			t.Errorf("pids.events = %q, want refusals", ev)
		}
		max, _ := os.ReadFile(filepath.Join(dir, "pids.max"))
		if strings.TrimSpace(string(max)) != "8" {
			t.Errorf("pids.max = %q", max)
		}
	}
	// The host is unharmed and the sleeps die with the container.
	if err := e.rt.RemoveContainer(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

func TestContainerLogRotation(t *testing.T) {
	e := newCtrEnv(t, nil)
	// About 3 MiB of output with a 1 MiB limit and 3 files kept.
	c, _ := e.run(t, e.config("chatty", "/bin/sh", "-c",
		`i=0; while [ $i -lt 30000 ]; do echo "line-$i-................................................................................"; i=$((i+1)); done; echo last-line`))
	files := crilog.Files(c.LogPath)
	if len(files) != 3 {
		t.Errorf("log files %v, want 3 (rotated)", files)
	}
	for _, f := range files {
		if st, _ := os.Stat(f); st.Size() > 1<<20 {
			t.Errorf("%s: %d bytes, over the limit", f, st.Size())
		}
	}
	var out bytes.Buffer
	crilog.Read(c.LogPath, &out, crilog.ReadOptions{})
	if !strings.HasSuffix(out.String(), "last-line\n") {
		t.Errorf("last line missing: ...%q", out.String()[max(0, out.Len()-80):])
	}
	e.check(t)
}

func TestContainerExec(t *testing.T) {
	e := newCtrEnv(t, nil)
	uid := int64(1000)
	c := e.startSleeper(t, "exec", func(c *runtime.ContainerConfig) {
		c.Command = []string{"/bin/sh", "-c", "echo made-by-ctr > /tmp/marker; exec sleep 1000"}
		c.Security.RunAsUser = &uid
	})
	ctx := context.Background()
	for _, tc := range []struct {
		cmd  []string
		code int
		out  string
	}{
		{[]string{"/bin/sh", "-c", "exit 5"}, 5, ""},
		{[]string{"true"}, 0, ""},
		{[]string{"/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9; do [ -e /tmp/marker ] && break; sleep 0.1; done; cat /tmp/marker"}, 0, "made-by-ctr\n"},
		{[]string{"id", "-u"}, 0, "1000\n"},
		{[]string{"/bin/sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '"}, 0, "NoNewPrivs: 1\nSeccomp: 2\n"},
		{[]string{"/bin/sh", "-c", "kill -9 $$"}, 137, ""},
	} {
		var out bytes.Buffer
		code, err := e.rt.Exec(ctx, c.ID, runtime.ExecOptions{Cmd: tc.cmd, Stdout: &out, Stderr: &out})
		if err != nil {
			t.Errorf("exec %v: %v", tc.cmd, err)
			continue
		}
		if code != tc.code || (tc.out != "" && out.String() != tc.out) {
			t.Errorf("exec %v = %d %q, want %d %q", tc.cmd, code, out.String(), tc.code, tc.out)
		}
	}
	// The exec'd process sees the container's PID namespace.
	var out bytes.Buffer
	if _, err := e.rt.Exec(ctx, c.ID, runtime.ExecOptions{Cmd: []string{"cat", "/proc/1/cmdline"}, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "sleep") {
		t.Errorf("exec sees PID 1 %q, want the container's sleep", out.String())
	}
	// A timeout ends the exec.
	if _, err := e.rt.Exec(ctx, c.ID, runtime.ExecOptions{Cmd: []string{"sleep", "100"}, Timeout: 100 * time.Millisecond}); err == nil {
		t.Error("exec past its timeout returned no error")
	}
	// A command that cannot run: a shell's status, the reason on stderr.
	for _, tc := range []struct {
		cmd  string
		code int
	}{{"/nope", 127}, {"nope", 127}, {"/etc/passwd", 126}, {"/etc", 126}} {
		var errOut bytes.Buffer
		code, err := e.rt.Exec(ctx, c.ID, runtime.ExecOptions{Cmd: []string{tc.cmd}, Stderr: &errOut})
		if err != nil || code != tc.code || !strings.Contains(errOut.String(), tc.cmd) {
			t.Errorf("exec %s: code %d, %v, stderr %q; want %d and the reason", tc.cmd, code, err, errOut.String(), tc.code)
		}
	}
	if err := e.rt.RemoveContainer(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

// TestContainerSpareShim starts a container through a spare shim daemon
// started ahead of need; the spare is replaced, and the replacement exits
// when spares are disabled.
func TestContainerSpareShim(t *testing.T) {
	e := newCtrEnv(t, nil)
	e.rt.EnableSpareShim()
	waitSpare := func(not int) int {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if ok, pid := e.rt.spareReady(); ok && pid != not {
				return pid
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatal("no spare shim after a minute")
		return 0
	}
	first := waitSpare(-1)
	c, out := e.run(t, e.config("via-spare", "/bin/sh", "-c", "echo through the spare"))
	if c.ExitCode != 0 || out != "through the spare\n" {
		t.Errorf("exit %d log %q", c.ExitCode, out)
	}
	rec, _ := e.rt.containerRecord(c.ID)
	st, _ := rec.State()
	if first != 0 && st.Shim.PID != first {
		t.Errorf("container shim %d, want the spare %d", st.Shim.PID, first)
	}
	second := waitSpare(first)
	// A shim that was a spare names its container in /proc like any
	// other, so GC recognises it; a waiting spare is never GC's.
	sl := e.startSleeper(t, "spare-sleeper", nil)
	slRec, _ := e.rt.containerRecord(sl.ID)
	slSt, _ := slRec.State()
	argv, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", slSt.Shim.PID))
	if got, want := strings.Split(strings.TrimRight(string(argv), "\x00"), "\x00"), []string{ShimDaemonName, e.cfg.RunRoot, sl.ID}; !slices.Equal(got, want) {
		t.Errorf("shim argv %q, want %q", got, want)
	}
	if orphans := e.rt.orphanShims(map[string]bool{sl.ID: true}); len(orphans) != 0 {
		t.Errorf("GC would kill shims %v (spares or known containers)", orphans)
	}
	if err := e.rt.RemoveContainer(context.Background(), sl.ID); err != nil {
		t.Fatal(err)
	}
	e.rt.DisableSpareShim()
	if second != 0 {
		deadline := time.Now().Add(time.Minute)
		for (procid.ID{PID: second, Start: ctrProcStart(second)}).Alive() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", second)); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", second)); strings.Contains(string(b), shim.SpareArg) {
				t.Errorf("spare %d still running after DisableSpareShim", second)
			}
		}
	}
	if err := e.rt.RemoveContainer(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

func ctrProcStart(pid int) uint64 {
	id, err := procid.Of(pid)
	if err != nil {
		return 0
	}
	return id.Start
}

// TestContainerHostNamespaces: hostNetwork, hostIPC and hostPID containers
// share the node's namespaces; the mount namespace is still their own.
func TestContainerHostNamespaces(t *testing.T) {
	e := newCtrEnv(t, &runtime.SandboxConfig{Namespaces: runtime.NamespaceOptions{
		Network: runtime.NamespaceNode, IPC: runtime.NamespaceNode, PID: runtime.NamespaceNode}})
	c := e.startSleeper(t, "host-ns", nil)
	self := os.Getpid()
	for _, ns := range []string{"net", "ipc", "pid"} {
		if a, b := ctrNS(t, c.PID, ns), ctrNS(t, self, ns); a != b {
			t.Errorf("%s: container %s, host %s", ns, a, b)
		}
	}
	if a, b := ctrNS(t, c.PID, "mnt"), ctrNS(t, self, "mnt"); a == b {
		t.Error("mount namespace shared with the host")
	}
	if a, b := ctrNS(t, c.PID, "uts"), ctrNS(t, e.sb.PausePID, "uts"); a != b {
		t.Errorf("uts: container %s, pause %s", a, b)
	}
	if err := e.rt.RemoveContainer(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

// TestSpareSeesMountsMadeAfterIt: a spare's init waits from before the pod
// existed. The pod's files (a tmpfs) and a Secret volume (another tmpfs)
// are mounted afterwards; on a host whose mounts do not propagate, an init
// whose mount namespace was copied when it started would not find them
// and the first start would fail (it did, with "bind /etc/hosts: open
// mount source …: no such file or directory").
func TestSpareSeesMountsMadeAfterIt(t *testing.T) {
	e := newCtrEnv(t, nil)
	e.rt.EnableSpareShim()
	defer e.rt.DisableSpareShim()
	deadline := time.Now().Add(time.Minute)
	for ok, _ := e.rt.spareReady(); !ok; ok, _ = e.rt.spareReady() {
		if time.Now().After(deadline) {
			t.Fatal("no spare shim after a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx := context.Background()
	sb, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{
		Pod: runtime.PodKey{Namespace: "default", Name: "late"},
		Volumes: []runtime.VolumeConfig{{Name: "token", Files: &runtime.ProjectedVolume{Sensitive: true,
			Files: []runtime.ProjectedFile{{Path: "key", Data: []byte("s3cr3t"), Mode: 0o644}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.rt.RemoveSandbox(ctx, sb.ID)
	cfg := e.config("late", "/bin/sh", "-c", "cat /etc/hostname /secret/key")
	cfg.SandboxID = sb.ID
	cfg.Mounts = []runtime.Mount{{Volume: "token", ContainerPath: "/secret", ReadOnly: true}}
	c, out := e.run(t, cfg)
	if c.ExitCode != 0 || out != "late\ns3cr3t\n" {
		t.Errorf("first start in a sandbox made after the spare: exit %d, log %q", c.ExitCode, out)
	}
}
