package main

import (
	"context"
	"fmt"
	"math"
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
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

const benchPod = `apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
`

// BenchmarkAgent measures what the agent adds to the runtime it drives:
// a manifest written -> every container running, and the manifest removed
// -> everything gone, for 1, 10 and 50 pods at once, measured by the client
// through the agent's event stream. The baseline, measured in the same run
// with rounds interleaved, is the same work done by calling the runtime
// directly (no watch, no reconcile loop). BenchmarkSideBySide compares the
// agent with podman.
//
//	go test -run '^$' -bench BenchmarkAgent -benchtime 10x ./cmd/pelagos-agent
func BenchmarkAgent(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) { benchAgent(b, n) })
	}
}

func median(d []time.Duration) time.Duration { return quantile(d, 0.5) }

// quantile is the q-quantile of d by the nearest-rank method (0.5: the
// median, 0.9: p90).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchAgent(b *testing.B, n int) {
	linuxtest.RequireRoot(b)
	imagetest.RequireBusybox(b)
	e := newBenchEnv(b)

	var agentRun, agentGone, directRun, directGone []time.Duration
	var mem helperMem
	for i := 0; i < b.N; i++ {
		r := e.agent.round(b, benchNames(fmt.Sprintf("b%d", i+1), n), &mem)
		agentRun, agentGone = append(agentRun, r.running), append(agentGone, r.gone)
		run, gone := e.directRound(b, n, i)
		directRun, directGone = append(directRun, run), append(directGone, gone)
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
	if m, err := linuxtest.ProcKiB(fmt.Sprintf("/proc/%d/status", e.agent.pid()), "VmRSS", "RssAnon"); err == nil {
		b.ReportMetric(float64(m["VmRSS"]), "agent-rss-KiB")
		line += fmt.Sprintf("; agent RSS after the rounds %d KiB (anonymous %d KiB)", m["VmRSS"], m["RssAnon"])
	}
	b.Log(line)
}

// benchNames names n pods of one round.
func benchNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return names
}

// agentProc is one pelagos-agent process run for a benchmark, with names
// and roots of its own, and the events it publishes, stamped on arrival.
type agentProc struct {
	tag, subnet, runRoot, stateRoot, sock, dir string
	cmd                                        *exec.Cmd
	client                                     *api.Client
	events                                     chan timedEvent
	cancel                                     context.CancelFunc
	tmp                                        []string
}

type timedEvent struct {
	reconcile.Event
	at time.Time
}

func (a *agentProc) mkdir(b *testing.B) string {
	d, err := os.MkdirTemp("", "pelagos-bench-")
	if err != nil {
		b.Fatal(err)
	}
	a.tmp = append(a.tmp, d)
	return d
}

// startAgent runs bin as `pelagos-agent run` on a manifest directory of
// its own, with the busybox image imported, and waits until it is ready.
// subnet is the third octet of its 10.203.X.0/24 pod network. The agent
// and everything it made are removed at the end of the benchmark.
func startAgent(b *testing.B, bin string, subnet int, extra ...string) *agentProc {
	b.Helper()
	a := &agentProc{tag: linuxtest.RandomName("pb", 5), subnet: fmt.Sprintf("10.203.%d.0/24", subnet)}
	// Registered first, so a failure while starting cannot leave the
	// agent and its bridge behind.
	b.Cleanup(a.close)
	a.runRoot, a.stateRoot, a.dir = a.mkdir(b), a.mkdir(b), a.mkdir(b)
	for _, d := range []string{a.runRoot, a.stateRoot, a.dir} {
		os.Chmod(d, 0o755)
	}
	a.sock = filepath.Join(a.runRoot, "agent.sock")
	st, err := image.Open(image.Options{Root: a.stateRoot})
	if err != nil {
		b.Fatal(err)
	}
	imagetest.ImportBusybox(b, st, "busybox:1.36")
	args := []string{"--root", a.stateRoot, "--run-root", a.runRoot, "--socket", a.sock, "--bridge", a.tag,
		"--subnet", a.subnet, "--netns-prefix", a.tag + "-", "--nft-table", a.tag, "--cgroup-parent", a.tag,
		"--log-level", "error", "run", "--manifests", a.dir}
	a.cmd = exec.Command(bin, append(args, extra...)...)
	a.cmd.Stderr = os.Stderr
	if err := a.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	a.client = api.NewClient(a.sock)
	deadline := time.Now().Add(time.Minute)
	for a.client.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			b.Fatal("agent not ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.events = make(chan timedEvent, 8192)
	go a.client.WatchEvents(ctx, func(ev reconcile.Event) error { a.events <- timedEvent{ev, time.Now()}; return nil })
	return a
}

func (a *agentProc) pid() int { return a.cmd.Process.Pid }

// await reads events until every name has had one with reason, and
// returns when each arrived.
func (a *agentProc) await(b *testing.B, reason string, names []string) map[string]time.Time {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	got := make(map[string]time.Time, len(names))
	deadline := time.After(5 * time.Minute)
	for len(want) > 0 {
		select {
		case ev := <-a.events:
			if ev.Reason == reason && want[ev.InvolvedObject.Name] {
				delete(want, ev.InvolvedObject.Name)
				got[ev.InvolvedObject.Name] = ev.at
			}
			if ev.Type == reconcile.EventWarning && ev.Reason != "BackOff" {
				b.Logf("warning event: %s %s: %s", ev.InvolvedObject.Name, ev.Reason, ev.Message)
			}
		case <-deadline:
			b.Fatalf("timed out waiting for %s of %d pods", reason, len(want))
		}
	}
	return got
}

// write drops one manifest per name into the watched directory, each
// written aside and renamed into place as a deployment tool would.
func (a *agentProc) write(b *testing.B, names []string) {
	for _, name := range names {
		tmp := filepath.Join(a.dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, fmt.Appendf(nil, benchPod, name), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(a.dir, name+".yaml")); err != nil {
			b.Fatal(err)
		}
	}
}

func (a *agentProc) remove(b *testing.B, names []string) {
	for _, name := range names {
		if err := os.Remove(filepath.Join(a.dir, name+".yaml")); err != nil {
			b.Fatal(err)
		}
	}
}

// roundTimes is one round of pods through the agent: written -> every
// container started; removed -> every pod gone; and the teardown alone,
// from the first container stop (the Killing event, after the watcher's
// removal settle time) to the last pod gone.
type roundTimes struct {
	running, gone, teardown time.Duration
	perPod                  []time.Duration // written -> started, per pod
}

func (a *agentProc) round(b *testing.B, names []string, mem *helperMem) roundTimes {
	var r roundTimes
	start := time.Now()
	a.write(b, names)
	started := a.await(b, "Started", names)
	for _, t := range started {
		r.perPod = append(r.perPod, t.Sub(start))
	}
	r.running = slices.Max(r.perPod)
	if mem != nil {
		mem.sample(a.runRoot, a.pid())
	}
	r.gone, r.teardown = a.removeAll(b, names)
	return r
}

// removeAll removes the manifests of names and waits for the pods to go;
// it returns removed -> gone and the teardown (first Killing -> last gone).
func (a *agentProc) removeAll(b *testing.B, names []string) (gone, teardown time.Duration) {
	start := time.Now()
	a.remove(b, names)
	// Killing and Removed interleave across pods: collect both at once.
	want := map[string]int{}
	for _, n := range names {
		want[n] = 2
	}
	var firstKill, lastGone time.Time
	deadline := time.After(5 * time.Minute)
	for len(want) > 0 {
		select {
		case ev := <-a.events:
			if _, ok := want[ev.InvolvedObject.Name]; !ok {
				continue
			}
			switch ev.Reason {
			case "Killing":
				if firstKill.IsZero() {
					firstKill = ev.at
				}
			case "Removed":
				lastGone = ev.at
				delete(want, ev.InvolvedObject.Name)
			}
		case <-deadline:
			b.Fatalf("timed out waiting for %d pods to go", len(want))
		}
	}
	if firstKill.IsZero() {
		firstKill = start
	}
	return lastGone.Sub(start), lastGone.Sub(firstKill)
}

func (a *agentProc) close() {
	if a.cancel != nil {
		a.cancel()
	}
	if a.cmd != nil && a.cmd.Process != nil {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		_ = a.cmd.Wait()
	}
	cleanupHostNames(a.tag)
	for _, d := range a.tmp {
		_ = os.RemoveAll(d)
	}
}

// cleanupHostNames removes what outlives pods by design: the bridge, the
// nftables table and the cgroup parent called name.
func cleanupHostNames(name string) {
	_ = exec.Command("ip", "link", "del", name).Run()
	_ = linuxtest.DeleteNFTable(name)
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	dirs2, _ := filepath.Glob("/sys/fs/cgroup/" + name)
	for _, d := range append(dirs, dirs2...) {
		removeCgroupTree(d)
	}
}

// benchEnv is BenchmarkAgent's pair: the agent and, for the baseline, the
// runtime driven directly.
type benchEnv struct {
	agent *agentProc
	rt    *linux.Runtime
	tag   string
	tmp   string
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	e := &benchEnv{agent: startAgent(b, buildAgentBinary(b), 200+time.Now().Nanosecond()%50, "--api-listen", ""),
		tag: linuxtest.RandomName("pb", 5)}
	b.Cleanup(e.close)
	st, err := image.Open(image.Options{Root: e.agent.stateRoot})
	if err != nil {
		b.Fatal(err)
	}
	// The baseline runtime: the same kind of configuration, its own names
	// (a state root of its own too: a state root belongs to one agent),
	// the agent's images.
	e.tmp = e.agent.mkdir(b)
	cfg := linux.Config{StateRoot: e.agent.mkdir(b), RunRoot: e.tmp, Bridge: e.tag,
		Subnet: fmt.Sprintf("10.203.%d.0/24", 150+time.Now().Nanosecond()%50), NetNSPrefix: e.tag + "-",
		CgroupParent: e.tag, NFTable: e.tag}
	e.rt, err = linux.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	e.rt.SetImageStore(st)
	// Warm both paths once (bridge, nftables table, cgroup parent).
	e.agent.round(b, []string{"warm"}, nil)
	e.directRound(b, 1, -1)
	b.ResetTimer()
	return e
}

func (e *benchEnv) close() {
	if e.rt != nil {
		e.rt.Close()
	}
	cleanupHostNames(e.tag)
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
				if err := e.rt.StopContainer(ctx, ctrs[i].ID, 0); err != nil {
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
