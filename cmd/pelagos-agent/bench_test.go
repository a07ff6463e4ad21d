package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// TestMain removes the agent binary the end-to-end tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range []string{binDir, criToolsDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

const benchPod = `apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
`

// BenchmarkAgent is the headline number: a manifest written -> every
// container running, and the manifest removed -> everything gone, for 1, 10
// and 50 pods at once, measured by the client through the agent's event
// stream. The baseline, measured in the same run with rounds interleaved,
// is the same work done by calling the runtime directly (no watch, no
// reconcile loop): the ratio is what the agent adds. With podman installed,
// `podman kube play`/`kube down` of the same manifests is measured too.
//
//	go test -run '^$' -bench BenchmarkAgent -benchtime 10x ./cmd/pelagos-agent
func BenchmarkAgent(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) { benchAgent(b, n) })
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchAgent(b *testing.B, n int) {
	linuxtest.RequireRoot(b)
	imagetest.RequireBusybox(b)
	e := newBenchEnv(b)

	var agentRun, agentGone, directRun, directGone, podmanRun, podmanGone []time.Duration
	var mem helperMem
	// podman is measured only when it has the image locally: a pull would
	// reach for a registry outside this machine.
	havePodman := exec.Command("podman", "image", "exists", "docker.io/library/busybox:1.36").Run() == nil
	for i := 0; i < b.N; i++ {
		run, gone := e.agentRound(b, n, i, &mem)
		agentRun, agentGone = append(agentRun, run), append(agentGone, gone)
		run, gone = e.directRound(b, n, i)
		directRun, directGone = append(directRun, run), append(directGone, gone)
		if havePodman {
			run, gone = e.podmanRound(b, n, i)
			podmanRun, podmanGone = append(podmanRun, run), append(podmanGone, gone)
		}
	}
	b.StopTimer()
	ar, ag, dr, dg := median(agentRun), median(agentGone), median(directRun), median(directGone)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(ar), "agent-running-ms")
	b.ReportMetric(ms(ag), "agent-gone-ms")
	b.ReportMetric(ms(dr), "direct-running-ms")
	b.ReportMetric(ms(dg), "direct-gone-ms")
	if dr > 0 && dg > 0 {
		b.ReportMetric(float64(ar)/float64(dr), "running-ratio")
		b.ReportMetric(float64(ag)/float64(dg), "gone-ratio")
	}
	line := fmt.Sprintf("pods=%d rounds=%d: agent running %.1f ms, gone %.1f ms; direct runtime running %.1f ms, gone %.1f ms",
		n, b.N, ms(ar), ms(ag), ms(dr), ms(dg))
	line += mem.report(b)
	if m, err := linuxtest.ProcKiB(fmt.Sprintf("/proc/%d/status", e.cmd.Process.Pid), "VmRSS", "RssAnon"); err == nil {
		b.ReportMetric(float64(m["VmRSS"]), "agent-rss-KiB")
		line += fmt.Sprintf("; agent RSS after the rounds %d KiB (anonymous %d KiB)", m["VmRSS"], m["RssAnon"])
	}
	if havePodman {
		pr, pg := median(podmanRun), median(podmanGone)
		b.ReportMetric(ms(pr), "podman-running-ms")
		b.ReportMetric(ms(pg), "podman-gone-ms")
		line += fmt.Sprintf("; podman kube play %.1f ms, kube down %.1f ms", ms(pr), ms(pg))
	} else {
		line += "; podman not measured (not installed, or without docker.io/library/busybox:1.36)"
	}
	b.Log(line)
}

type benchEnv struct {
	tag, subnet, runRoot, stateRoot, sock, dir string
	bin                                        string
	cmd                                        *exec.Cmd
	events                                     chan reconcile.Event
	cancel                                     context.CancelFunc
	rt                                         *linux.Runtime
	tmp                                        []string
}

func (e *benchEnv) mkdir(b *testing.B) string {
	d, err := os.MkdirTemp("", "pelagos-bench-")
	if err != nil {
		b.Fatal(err)
	}
	e.tmp = append(e.tmp, d)
	return d
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	e := &benchEnv{tag: linuxtest.RandomName("pb", 5), subnet: fmt.Sprintf("10.203.%d.0/24", 200+time.Now().Nanosecond()%50)}
	// Registered first, so a failure while setting up (the warm-up rounds
	// below) cannot leave the agent and its bridges behind.
	b.Cleanup(e.close)
	e.runRoot, e.stateRoot, e.dir = e.mkdir(b), e.mkdir(b), e.mkdir(b)
	for _, d := range []string{e.runRoot, e.stateRoot, e.dir} {
		os.Chmod(d, 0o755)
	}
	e.sock = filepath.Join(e.runRoot, "agent.sock")
	e.bin = buildAgentBinary(b)
	st, err := image.Open(image.Options{Root: e.stateRoot})
	if err != nil {
		b.Fatal(err)
	}
	imagetest.ImportBusybox(b, st, "busybox:1.36")
	e.cmd = exec.Command(e.bin, "--root", e.stateRoot, "--run-root", e.runRoot, "--socket", e.sock, "--bridge", e.tag,
		"--subnet", e.subnet, "--netns-prefix", e.tag+"-", "--nft-table", e.tag, "--cgroup-parent", e.tag,
		"--log-level", "error", "run", "--manifests", e.dir, "--api-listen", "")
	e.cmd.Stderr = os.Stderr
	if err := e.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := api.NewClient(e.sock)
	deadline := time.Now().Add(time.Minute)
	for c.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			b.Fatal("agent not ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.events = make(chan reconcile.Event, 4096)
	go c.WatchEvents(ctx, func(ev reconcile.Event) error { e.events <- ev; return nil })

	// The baseline runtime: the same kind of configuration, its own names
	// (a state root of its own too: a state root belongs to one agent),
	// the agent's images.
	cfg := linux.Config{StateRoot: e.mkdir(b), RunRoot: filepath.Join(e.runRoot, "direct"), Bridge: e.tag + "d",
		Subnet: fmt.Sprintf("10.203.%d.0/24", 150+time.Now().Nanosecond()%50), NetNSPrefix: e.tag + "d-",
		CgroupParent: e.tag + "d", NFTable: e.tag + "d"}
	e.rt, err = linux.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	e.rt.SetImageStore(st)
	// Warm both paths once (bridge, nftables table, cgroup parent).
	e.agentRound(b, 1, -1, nil)
	e.directRound(b, 1, -1)
	b.ResetTimer()
	return e
}

// await reads events until want returns true for the accumulated set.
func (e *benchEnv) await(b *testing.B, reason string, names map[string]bool) {
	deadline := time.After(5 * time.Minute)
	for len(names) > 0 {
		select {
		case ev := <-e.events:
			if ev.Reason == reason {
				delete(names, ev.InvolvedObject.Name)
			}
			if ev.Type == reconcile.EventWarning && ev.Reason != "BackOff" {
				b.Logf("warning event: %s %s: %s", ev.InvolvedObject.Name, ev.Reason, ev.Message)
			}
		case <-deadline:
			b.Fatalf("timed out waiting for %s of %d pods", reason, len(names))
		}
	}
}

func (e *benchEnv) agentRound(b *testing.B, n, round int, mem *helperMem) (time.Duration, time.Duration) {
	names := map[string]bool{}
	var files []string
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("b%d-%d", round+1, i)
		names[name] = true
		f := filepath.Join(e.dir, name+".yaml")
		tmp := filepath.Join(e.dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, fmt.Appendf(nil, benchPod, name), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, f); err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	e.await(b, "Started", maps(names))
	running := time.Since(start)
	if mem != nil {
		mem.sample(e.runRoot, e.cmd.Process.Pid)
	}
	start = time.Now()
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			b.Fatal(err)
		}
	}
	e.await(b, "Removed", names)
	return running, time.Since(start)
}

func maps(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// directRound does the work of one agent round by calling the runtime:
// create the sandbox, start the container; then stop it and remove the
// sandbox; 16 pods at a time, as the agent's default worker count.
func (e *benchEnv) directRound(b *testing.B, n, round int) (time.Duration, time.Duration) {
	ctx := context.Background()
	sem := make(chan struct{}, 16)
	boxes := make([]*runtime.Sandbox, n)
	ctrs := make([]*runtime.Container, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			key := runtime.PodKey{Namespace: "default", Name: fmt.Sprintf("d%d-%d", round+1, i)}
			sb, err := e.rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: key, Hostname: key.Name, DNS: runtime.DNSConfig{UseHost: true}})
			if err != nil {
				b.Error(err)
				return
			}
			c, err := e.rt.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: sb.ID, Name: "c", Image: "busybox:1.36",
				Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"}})
			if err != nil {
				b.Error(err)
			}
			boxes[i], ctrs[i] = sb, c
		})
	}
	wg.Wait()
	running := time.Since(start)
	start = time.Now()
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctrs[i] != nil {
				if err := e.rt.StopContainer(ctx, ctrs[i].ID, 2*time.Second); err != nil {
					b.Error(err)
				}
			}
			if boxes[i] != nil {
				if err := e.rt.RemoveSandbox(ctx, boxes[i].ID); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return running, time.Since(start)
}

// podmanRound plays the same manifests with podman, the reference.
func (e *benchEnv) podmanRound(b *testing.B, n, round int) (time.Duration, time.Duration) {
	var files []string
	for i := range n {
		f := filepath.Join(e.tmp[0], fmt.Sprintf("podman-%d-%d.yaml", round+1, i))
		if err := os.WriteFile(f, fmt.Appendf(nil, benchPod, fmt.Sprintf("pm%d-%d", round+1, i)), 0o644); err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	start := time.Now()
	for _, f := range files {
		if out, err := exec.Command("podman", "kube", "play", f).CombinedOutput(); err != nil {
			b.Fatalf("podman kube play: %v\n%s", err, out)
		}
	}
	running := time.Since(start)
	start = time.Now()
	for _, f := range files {
		if out, err := exec.Command("podman", "kube", "down", f).CombinedOutput(); err != nil {
			b.Fatalf("podman kube down: %v\n%s", err, out)
		}
	}
	return running, time.Since(start)
}

func (e *benchEnv) close() {
	if e.cancel != nil {
		e.cancel()
	}
	if e.rt != nil {
		e.rt.Close()
	}
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		_ = e.cmd.Wait()
	}
	for _, name := range []string{e.tag, e.tag + "d"} {
		_ = exec.Command("ip", "link", "del", name).Run()
		_ = linuxtest.DeleteNFTable(name)
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
		dirs2, _ := filepath.Glob("/sys/fs/cgroup/" + name)
		for _, d := range append(dirs, dirs2...) {
			removeCgroupTree(d)
		}
	}
	for _, d := range e.tmp {
		_ = os.RemoveAll(d)
	}
}

// helperMem collects the private and proportional memory of the agent's
// helper processes (pauses, shims, spare shims), read from
// /proc/PID/smaps_rollup while the pods run.
type helperMem struct {
	pausePriv, pausePss, shimPriv, shimPss, sparePriv []int
}

// sample reads every helper of the agent's run root: pauses and shims are
// recognised by their arguments, spare shims (which have no run root yet)
// by being shims whose parent is the agent's parent.
func (m *helperMem) sample(runRoot string, agentPID int) {
	ents, _ := os.ReadDir("/proc")
	agentParent := procParent(agentPID)
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + en.Name() + "/cmdline")
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		pss, priv, err := linuxtest.Smaps(pid)
		if err != nil {
			continue
		}
		// A spare waiting for its container: "pelagos-shimd <run root>
		// spare…" (before process model v2: "pelagos-shimd spare", and a
		// spare kept that argv once handed a container).
		spare := len(argv) == 3 && argv[0] == linux.ShimDaemonName && argv[1] == runRoot && strings.TrimRight(argv[2], " ") == "spare" ||
			len(argv) == 2 && argv[0] == linux.ShimDaemonName && argv[1] == "spare" && procParent(pid) == agentParent
		switch {
		case len(argv) == 3 && argv[0] == linux.PauseName && argv[1] == runRoot:
			m.pausePriv, m.pausePss = append(m.pausePriv, priv), append(m.pausePss, pss)
		case spare:
			m.sparePriv = append(m.sparePriv, priv)
		case len(argv) == 3 && argv[0] == linux.ShimDaemonName && argv[1] == runRoot:
			m.shimPriv, m.shimPss = append(m.shimPriv, priv), append(m.shimPss, pss)
		}
	}
}

func medianInt(v []int) int {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func (m *helperMem) report(b *testing.B) string {
	if len(m.pausePriv) == 0 {
		return "; no helper memory sampled"
	}
	b.ReportMetric(float64(medianInt(m.pausePriv)), "pause-private-KiB")
	b.ReportMetric(float64(medianInt(m.shimPriv)), "shim-private-KiB")
	return fmt.Sprintf("; per pod: pause %d KiB private / %d KiB Pss, shim %d KiB private / %d KiB Pss; spare shim %d KiB private (%d samples)",
		medianInt(m.pausePriv), medianInt(m.pausePss), medianInt(m.shimPriv), medianInt(m.shimPss), medianInt(m.sparePriv), len(m.sparePriv))
}

func procParent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
