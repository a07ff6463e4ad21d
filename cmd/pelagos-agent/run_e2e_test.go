package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// agentEnv is one agent under test: its own roots, names and subnet (in
// 10.203.0.0/16, this area's range), the built binary and the manifest
// directory, which is a symlink (current -> revN) so a git-sync style swap
// can be tested like any other change.
type agentEnv struct {
	t                   *testing.T
	bin, tag, subnet    string
	runRoot, stateRoot  string
	sock, repo, current string
	cmd                 *exec.Cmd
	logPath             string
	extra               []string
	env                 []string // added to the agent's environment
	client              *api.Client
}

func newAgentEnv(t *testing.T, extra ...string) *agentEnv {
	t.Helper()
	linuxtest.RequireRoot(t)
	imagetest.RequireBusybox(t)
	e := &agentEnv{t: t, bin: buildAgentBinary(t), tag: linuxtest.RandomName("pa", 5),
		subnet:  linuxtest.FreeSubnet("10.203"),
		runRoot: t.TempDir(), stateRoot: t.TempDir(), repo: t.TempDir(), extra: extra}
	e.sock = filepath.Join(e.runRoot, "agent.sock")
	e.logPath = filepath.Join(t.TempDir(), "agent.log")
	e.current = filepath.Join(e.repo, "current")
	e.client = api.NewClient(e.sock)
	if err := os.Mkdir(filepath.Join(e.repo, "rev1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("rev1", e.current); err != nil {
		t.Fatal(err)
	}
	st, err := image.Open(image.Options{Root: e.stateRoot})
	if err != nil {
		t.Fatal(err)
	}
	imagetest.ImportBusybox(t, st, "busybox:1.36")
	t.Cleanup(e.cleanup)
	return e
}

func (e *agentEnv) global() []string {
	return []string{"--root", e.stateRoot, "--run-root", e.runRoot, "--socket", e.sock, "--bridge", e.tag,
		"--subnet", e.subnet, "--netns-prefix", e.tag + "-", "--nft-table", e.tag, "--cgroup-parent", e.tag}
}

// start runs the agent in the background and waits until it is ready.
func (e *agentEnv) start() {
	e.t.Helper()
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	// Each agent serves the Kubernetes API on its own loopback port.
	args := append(e.global(), "--log-format", "json", "run", "--manifests", e.current, "--api-listen", "127.0.0.1:0")
	e.cmd = exec.Command(e.bin, append(args, e.extra...)...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if e.env != nil {
		e.cmd.Env = append(os.Environ(), e.env...)
	}
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	logf.Close()
	e.eventually("the agent is ready", func() error { return e.client.Ready(context.Background()) })
}

// stop ends the agent with sig and waits for it.
func (e *agentEnv) stop(sig syscall.Signal) {
	e.t.Helper()
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(sig)
	_ = e.cmd.Wait()
	e.cmd = nil
}

// cli runs the binary as a user would: client commands get the socket,
// commands that work on the node's state get its roots and names too.
// kubeconfig gets the socket only: the agent says where its state root
// (and so its certificates) is.
func (e *agentEnv) cli(args ...string) (string, string, int) {
	e.t.Helper()
	var flags []string
	switch args[0] {
	case "run", "sandbox", "container", "image", "volume":
		flags = e.global()
	case "apply": // converges without a socket
		flags = slices.DeleteFunc(e.global(), func(s string) bool { return s == "--socket" || s == e.sock })
	default:
		flags = []string{"--socket", e.sock}
	}
	return runCLI(e.t, e.bin, append(flags, args...)...)
}

// eventually polls cond until it holds. The deadline only bounds a hang
// (the machine is shared and slow at times); nothing measures speed here.
func (e *agentEnv) eventually(what string, cond func() error) {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(e.logPath)
			if len(log) > 4000 {
				log = log[len(log)-4000:]
			}
			e.t.Fatalf("timed out waiting for %s: %v\nagent log tail:\n%s", what, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *agentEnv) pod(name string) (*reconcile.Pod, error) {
	return e.client.Pod(context.Background(), "default", name)
}

// running waits until every container of the pod runs and returns it.
func (e *agentEnv) running(name string) *reconcile.Pod {
	e.t.Helper()
	var p *reconcile.Pod
	e.eventually("pod "+name+" running", func() error {
		var err error
		p, err = e.pod(name)
		if err != nil {
			return err
		}
		if p.Status.Phase != reconcile.PhaseRunning || len(p.Status.ContainerStatuses) == 0 {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.State.Running == nil || !c.Ready {
				return fmt.Errorf("container %s not running: %+v", c.Name, c.State)
			}
		}
		return nil
	})
	return p
}

func (e *agentEnv) gone(name string) {
	e.t.Helper()
	e.eventually("pod "+name+" gone", func() error {
		if _, err := e.pod(name); err == nil {
			return errors.New("still listed")
		}
		return nil
	})
}

func (e *agentEnv) write(rev, file, content string) {
	e.t.Helper()
	dir := filepath.Join(e.repo, rev)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *agentEnv) exec(pod, container string, cmd ...string) string {
	e.t.Helper()
	var out, errb bytes.Buffer
	code, err := e.client.Exec(context.Background(), "default", pod, api.ExecOptions{Container: container, Cmd: cmd, Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 {
		e.t.Fatalf("exec %v in %s/%s: code %d err %v stderr %s", cmd, pod, container, code, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// podProcesses lists live processes in the test's cgroup parent: every
// container process of every pod this agent made.
func (e *agentEnv) podProcesses() []string {
	var out []string
	for _, pid := range linuxtest.Processes(func([]string) bool { return true }) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err == nil && strings.Contains(string(b), "/"+e.tag+"/") {
			out = append(out, fmt.Sprint(pid))
		}
	}
	return out
}

// removeAll points the manifest directory at an empty one and waits until
// every pod is gone.
func (e *agentEnv) removeAll() {
	e.t.Helper()
	if err := os.Mkdir(filepath.Join(e.repo, "empty"), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Symlink("empty", e.current+".tmp"); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(e.current+".tmp", e.current); err != nil {
		e.t.Fatal(err)
	}
	e.eventually("no pods", func() error {
		l, err := e.client.Pods(context.Background(), "")
		if err != nil || len(l.Items) != 0 {
			return fmt.Errorf("%v: %d pods", err, len(l.Items))
		}
		return nil
	})
}

func (e *agentEnv) census() linuxtest.Census {
	return linuxtest.Census{NetNSPrefix: e.tag + "-", Bridge: e.tag, MountDirs: []string{e.runRoot, e.stateRoot}, ProcessArg: e.runRoot}
}

// cleanup stops the agent and removes the test's host-global objects that
// outlive pods by design (bridge, nftables table, cgroup parent).
func (e *agentEnv) cleanup() {
	e.stop(syscall.SIGKILL)
	if e.t.Failed() {
		// A failed test may have left pods: converge to nothing with the
		// agent's own one-shot mode before removing what outlives pods.
		empty := e.t.TempDir()
		if out, errOut, code := e.cli("apply", "--once", "--timeout", "2m", empty); code != 0 {
			e.t.Logf("cleanup: apply --once %s: exit %d\n%s%s", empty, code, out, errOut)
		}
	}
	if l, err := netlink.LinkByName(e.tag); err == nil {
		_ = netlink.LinkDel(l)
	}
	if err := linuxtest.DeleteNFTable(e.tag); err != nil {
		e.t.Errorf("cleanup: nftables table %s: %v", e.tag, err)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + e.tag)
	dirs2, _ := filepath.Glob("/sys/fs/cgroup/" + e.tag)
	for _, d := range append(dirs, dirs2...) {
		removeCgroupTree(d)
	}
}

func removeCgroupTree(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		if en.IsDir() {
			removeCgroupTree(filepath.Join(dir, en.Name()))
		}
	}
	_ = os.Remove(dir)
}

// trapping is a container command that stops at once on SIGTERM, so tests
// do not wait out grace periods.
func podYAML(name, hostname, sideArg string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  hostname: %s
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; echo app started; sleep 3600 & wait"]
  - name: side
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; echo side $0; sleep 3600 & wait", "%s"]
`, name, hostname, sideArg)
}

func ids(p *reconcile.Pod) map[string]string {
	m := map[string]string{"sandbox": p.Status.Pelagos.SandboxID}
	for _, c := range p.Status.ContainerStatuses {
		m[c.Name] = c.ContainerID
	}
	return m
}

// procStart is the start time of a container's init, read inside it: the
// same value proves the same process (a PID alone could be reused).
func (e *agentEnv) procStart(pod, container string) string {
	f := strings.Fields(e.exec(pod, container, "cat", "/proc/1/stat"))
	if len(f) < 22 {
		e.t.Fatalf("bad /proc/1/stat in %s/%s: %v", pod, container, f)
	}
	return f[21]
}

func TestAgentEndToEnd(t *testing.T) {
	e := newAgentEnv(t, "--backoff-initial", "400ms", "--backoff-max", "2s", "--resync", "2s")
	e.start()

	t.Run("drop a manifest: running with IP, hostname, processes", func(t *testing.T) {
		e.write("rev1", "web.yaml", podYAML("web", "web-host", "v1"))
		p := e.running("web")
		prefix := strings.TrimSuffix(e.subnet, "0/24")
		if !strings.HasPrefix(p.Status.PodIP, prefix) {
			t.Errorf("pod IP %q not in %s", p.Status.PodIP, e.subnet)
		}
		if h := e.exec("web", "app", "hostname"); h != "web-host" {
			t.Errorf("hostname %q, want web-host", h)
		}
		addr := e.exec("web", "app", "ip", "-4", "addr")
		if !strings.Contains(addr, p.Status.PodIP+"/") {
			t.Errorf("the pod IP is not on the pod's interface:\n%s", addr)
		}
		if cmdline := e.exec("web", "side", "cat", "/proc/1/cmdline"); !strings.Contains(cmdline, "side") {
			t.Errorf("side's init is not its command: %q", cmdline)
		}
		if n := len(e.podProcesses()); n < 2 {
			t.Errorf("%d processes in the pod cgroups, want at least the two containers", n)
		}
		out, _, code := e.cli("get", "pods")
		if code != 0 || !strings.Contains(out, "web") || !strings.Contains(out, "2/2") || !strings.Contains(out, "Running") {
			t.Errorf("get pods (exit %d):\n%s", code, out)
		}
		out, _, _ = e.cli("logs", "web", "-c", "side")
		if strings.TrimSpace(out) != "side v1" {
			t.Errorf("logs -c side = %q", out)
		}
	})

	t.Run("exec from the CLI: all of the output, the command's status", func(t *testing.T) {
		e.running("web")
		// 64 MiB: interactive exec has no cap (it used to stop at 16 MiB
		// and still exit 0).
		cmd := exec.Command(e.bin, "--socket", e.sock, "exec", "web", "-c", "app", "--", "sh", "-c", "head -c 67108864 /dev/zero; exit 3")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, stdout)
		cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); n != 64<<20 || code != 3 {
			t.Errorf("exec of 64 MiB then exit 3: %d bytes, exit %d, stderr %q", n, code, errOut.String())
		}
		if _, errOut, code := e.cli("exec", "web", "-c", "app", "--", "no-such-command"); code != 127 || !strings.Contains(errOut, "no-such-command") {
			t.Errorf("exec of a missing command: exit %d, stderr %q; want 127 and the reason", code, errOut)
		}
		cmd = exec.Command(e.bin, "--socket", e.sock, "exec", "-i", "web", "-c", "side", "--", "cat")
		cmd.Stdin = strings.NewReader("through stdin\n")
		if out, err := cmd.Output(); err != nil || string(out) != "through stdin\n" {
			t.Errorf("exec -i cat: %q, %v", out, err)
		}
	})

	t.Run("edit one container: only it restarts", func(t *testing.T) {
		before := ids(e.running("web"))
		appStart := e.procStart("web", "app")
		e.write("rev1", "web.yaml", podYAML("web", "web-host", "v2"))
		var after map[string]string
		e.eventually("side restarted", func() error {
			p := e.running("web")
			after = ids(p)
			if after["side"] == before["side"] {
				return errors.New("side not restarted yet")
			}
			return nil
		})
		if after["sandbox"] != before["sandbox"] || after["app"] != before["app"] {
			t.Errorf("more than side changed: %v -> %v", before, after)
		}
		if e.procStart("web", "app") != appStart {
			t.Errorf("app's process changed")
		}
	})

	t.Run("edit the hostname: the pod is recreated", func(t *testing.T) {
		before := ids(e.running("web"))
		e.write("rev1", "web.yaml", podYAML("web", "web-two", "v2"))
		e.eventually("new sandbox", func() error {
			p := e.running("web")
			if p.Status.Pelagos.SandboxID == before["sandbox"] {
				return errors.New("same sandbox")
			}
			return nil
		})
		if h := e.exec("web", "app", "hostname"); h != "web-two" {
			t.Errorf("hostname %q, want web-two", h)
		}
		linuxtest.Census{NetNSPrefix: e.tag + "-" + before["sandbox"]}.Check(t, 5*time.Second)
	})

	t.Run("break the YAML: untouched, error visible", func(t *testing.T) {
		before := ids(e.running("web"))
		e.write("rev1", "web.yaml", strings.Replace(podYAML("web", "web-two", "v2"), "    image:", "    imagee:", 1))
		e.eventually("error in status", func() error {
			p, err := e.pod("web")
			if err != nil {
				return err
			}
			if p.Status.Pelagos.LastError == nil || !strings.Contains(p.Status.Pelagos.LastError.Message, "imagee") {
				return fmt.Errorf("no error yet: %+v", p.Status.Pelagos)
			}
			return nil
		})
		out, _, _ := e.cli("get", "pods")
		if !strings.Contains(out, "Manifest errors") || !strings.Contains(out, "web.yaml") || !strings.Contains(out, "imagee") {
			t.Errorf("get pods does not show the error:\n%s", out)
		}
		out, _, _ = e.cli("events")
		if !strings.Contains(out, "InvalidManifest") {
			t.Errorf("events lack InvalidManifest:\n%s", out)
		}
		if after := ids(e.running("web")); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("broken manifest changed the pod: %v -> %v", before, after)
		}
		// Fixed again with the same content: nothing restarts.
		e.write("rev1", "web.yaml", podYAML("web", "web-two", "v2"))
		e.eventually("error cleared", func() error {
			p, err := e.pod("web")
			if err != nil || p.Status.Pelagos.LastError != nil {
				return fmt.Errorf("error still shown: %v %+v", err, p)
			}
			return nil
		})
		if after := ids(e.running("web")); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("fixing the manifest restarted the pod: %v -> %v", before, after)
		}
	})

	t.Run("kill -9 the agent and restart: adopted, same processes", func(t *testing.T) {
		p := e.running("web")
		before, pause := ids(p), p.Status.Pelagos.PausePID
		starts := []string{e.procStart("web", "app"), e.procStart("web", "side")}
		e.stop(syscall.SIGKILL)
		e.start()
		p = e.running("web")
		if after := ids(p); fmt.Sprint(after) != fmt.Sprint(before) || p.Status.Pelagos.PausePID != pause {
			t.Errorf("restart changed the pod: %v pause %d -> %v pause %d", before, pause, after, p.Status.Pelagos.PausePID)
		}
		if now := []string{e.procStart("web", "app"), e.procStart("web", "side")}; fmt.Sprint(now) != fmt.Sprint(starts) {
			t.Errorf("containers restarted: %v -> %v", starts, now)
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.Name == "app" && c.RestartCount != 0 {
				t.Errorf("app restart count %d", c.RestartCount)
			}
		}
		_, errOut, code := e.cli("run", "--manifests", e.current)
		if code == 0 || !strings.Contains(errOut, "already uses the state root") {
			t.Errorf("a second agent was not refused: exit %d: %s", code, errOut)
		}
	})

	t.Run("delete while the agent is down: removed at start", func(t *testing.T) {
		sandbox := e.running("web").Status.Pelagos.SandboxID
		e.stop(syscall.SIGTERM)
		if err := os.Remove(filepath.Join(e.repo, "rev1", "web.yaml")); err != nil {
			t.Fatal(err)
		}
		e.start()
		e.gone("web")
		linuxtest.Census{NetNSPrefix: e.tag + "-" + sandbox}.Check(t, 5*time.Second)
		if procs := e.podProcesses(); len(procs) != 0 {
			t.Errorf("processes left in pod cgroups: %v", procs)
		}
	})

	t.Run("git-sync symlink swap", func(t *testing.T) {
		e.write("rev1", "db.yaml", podYAML("db", "db", "one"))
		e.running("db")
		e.write("rev2", "db.yaml", podYAML("db", "db", "two"))
		e.write("rev2", "cache.yaml", podYAML("cache", "cache", "one"))
		if err := os.Symlink("rev2", e.current+".tmp"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(e.current+".tmp", e.current); err != nil {
			t.Fatal(err)
		}
		e.running("cache")
		e.eventually("db at rev2", func() error {
			p := e.running("db")
			for _, c := range p.Status.ContainerStatuses {
				if c.Name == "side" && c.RestartCount == 1 {
					return nil
				}
			}
			return errors.New("db's side not restarted")
		})
		if out, _, _ := e.cli("logs", "db", "-c", "side"); strings.TrimSpace(out) != "side two" {
			t.Errorf("db side log %q", out)
		}
	})

	t.Run("a crashing container shows CrashLoopBackOff with growing delays", func(t *testing.T) {
		e.write("rev2", "crash.yaml", `apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "echo crashing; exit 3"]
`)
		var gaps []time.Duration
		var lastFinish time.Time
		seen := map[int]bool{}
		e.eventually("four restarts", func() error {
			p, err := e.pod("crash")
			if err != nil || len(p.Status.ContainerStatuses) == 0 {
				return fmt.Errorf("no status: %v", err)
			}
			c := p.Status.ContainerStatuses[0]
			if w := c.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" && c.LastState.Terminated != nil {
				if !seen[c.RestartCount] {
					seen[c.RestartCount] = true
					if c.LastState.Terminated.ExitCode != 3 {
						t.Errorf("last exit code %d, want 3", c.LastState.Terminated.ExitCode)
					}
				}
			}
			if c.State.Running != nil || c.State.Terminated != nil {
				// A new attempt started: the gap since the last finish is
				// the back-off actually waited.
				if t0 := c.LastState.Terminated; t0 != nil && !t0.FinishedAt.Equal(lastFinish) && c.State.Terminated != nil {
					gaps = append(gaps, c.State.Terminated.StartedAt.Sub(t0.FinishedAt))
					lastFinish = t0.FinishedAt
				}
			}
			if c.RestartCount < 4 {
				return fmt.Errorf("restart count %d", c.RestartCount)
			}
			return nil
		})
		if len(seen) == 0 {
			t.Errorf("CrashLoopBackOff never shown")
		}
		// Between back-offs the container runs for a moment: wait for the
		// table to show the back-off, as a person watching would see it.
		e.eventually("CrashLoopBackOff in get pods", func() error {
			out, _, _ := e.cli("get", "pods", "crash")
			if !strings.Contains(out, "CrashLoopBackOff") {
				return fmt.Errorf("get pods crash:\n%s", out)
			}
			return nil
		})
		// The agent never restarts before the back-off: 400ms, 800ms,
		// 1.6s, 2s (capped). Lower bounds only; a busy machine may be late.
		p, _ := e.pod("crash")
		if p.Status.ContainerStatuses[0].RestartCount < 4 {
			t.Errorf("restarts %d", p.Status.ContainerStatuses[0].RestartCount)
		}
		evs, _ := e.client.Events(context.Background(), "default", "crash")
		backoffs := 0
		for _, ev := range evs {
			if ev.Reason == "BackOff" {
				backoffs += ev.Count
			}
		}
		if backoffs < 3 {
			t.Errorf("%d BackOff events, want at least 3", backoffs)
		}
		// The API serves times in whole seconds (Kubernetes' format), so a
		// gap g read from it and the real one r satisfy r < g+1s: a restart
		// is proven early only when g+1s <= its back-off.
		want := []time.Duration{400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second}
		for i, g := range gaps {
			if i < len(want) && g+time.Second <= want[i] {
				t.Errorf("restart %d came after %s (to the second), before its back-off %s", i+1, g, want[i])
			}
		}
		if err := os.Remove(filepath.Join(e.repo, "rev2", "crash.yaml")); err != nil {
			t.Fatal(err)
		}
		e.gone("crash")
	})

	t.Run("the manifest directory disappears: every pod is kept", func(t *testing.T) {
		before := ids(e.running("db"))
		swap := func(target string) {
			t.Helper()
			if err := os.Symlink(target, e.current+".tmp"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(e.current+".tmp", e.current); err != nil {
				t.Fatal(err)
			}
		}
		swap("not-synced-yet") // a dangling link: no truth
		e.eventually("ManifestsUnavailable", func() error {
			evs, err := e.client.Events(context.Background(), "", "")
			if err != nil {
				return err
			}
			for _, ev := range evs {
				if ev.Reason == "ManifestsUnavailable" {
					return nil
				}
			}
			return errors.New("no ManifestsUnavailable event")
		})
		out, _, _ := e.cli("get", "pods")
		if !strings.Contains(out, "manifest directory") {
			t.Errorf("get pods does not say the directory is missing:\n%s", out)
		}
		if after := ids(e.running("db")); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("a missing directory changed the pod: %v -> %v", before, after)
		}
		swap("rev2")
		e.eventually("error cleared", func() error {
			out, _, _ := e.cli("get", "pods")
			if strings.Contains(out, "manifest directory") {
				return errors.New(out)
			}
			return nil
		})
		if after := ids(e.running("db")); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("the directory coming back changed the pod: %v -> %v", before, after)
		}
	})

	t.Run("50 pods at once converge, then all go", func(t *testing.T) {
		rev := "rev3"
		for i := range 50 {
			e.write(rev, fmt.Sprintf("p%02d.yaml", i), fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: p%02d}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
`, i))
		}
		if err := os.Symlink(rev, e.current+".tmp"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(e.current+".tmp", e.current); err != nil {
			t.Fatal(err)
		}
		e.eventually("50 pods running", func() error {
			l, err := e.client.Pods(context.Background(), "")
			if err != nil {
				return err
			}
			n := 0
			for _, p := range l.Items {
				if p.Status.Phase == reconcile.PhaseRunning && len(p.Status.ContainerStatuses) == 1 &&
					p.Status.ContainerStatuses[0].State.Running != nil {
					n++
				}
			}
			if n != 50 || len(l.Items) != 50 {
				return fmt.Errorf("%d of %d running", n, len(l.Items))
			}
			return nil
		})
		if n := len(linuxtest.NetNS(e.tag + "-")); n != 50 {
			t.Errorf("%d netns, want 50", n)
		}
		e.removeAll()
		// The agent runs: its own argv names the run root, so processes
		// are counted by cgroup here and by argv once it has stopped.
		c := e.census()
		c.ProcessArg = ""
		c.Check(t, 10*time.Second)
		if procs := e.podProcesses(); len(procs) != 0 {
			t.Errorf("processes left in pod cgroups: %v", procs)
		}
	})

	e.stop(syscall.SIGTERM)

	t.Run("apply --once: converge without a daemon, exit status says how it went", func(t *testing.T) {
		dir := filepath.Join(e.repo, "once")
		e.write("once", "web.yaml", podYAML("web", "web", "once"))
		out, errOut, code := e.cli("apply", "--once", "--settle", "500ms", dir)
		if code != 0 || !strings.Contains(out, "Running") {
			t.Errorf("apply --once: exit %d\n%s%s", code, out, errOut)
		}
		e.write("once", "crash.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: crash}\nspec:\n  containers:\n  - {name: c, image: \"busybox:1.36\", command: [sh, -c, exit 2]}\n")
		out, errOut, code = e.cli("apply", "--once", "--settle", "500ms", "--backoff-initial", "100ms", dir)
		if code != 1 || !strings.Contains(errOut, "pod default/crash: CrashLoopBackOff") {
			t.Errorf("apply --once with a crashing pod: exit %d\n%s%s", code, out, errOut)
		}
		empty := filepath.Join(e.repo, "empty")
		if out, errOut, code := e.cli("apply", "--once", empty); code != 0 {
			t.Errorf("apply --once to nothing: exit %d\n%s%s", code, out, errOut)
		}
	})

	e.census().Check(t, 10*time.Second)
	if procs := e.podProcesses(); len(procs) != 0 {
		t.Errorf("census: processes left in pod cgroups: %v", procs)
	}
}
