package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile/agent"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// BenchmarkSideBySide is the benchmark of issue 13: the agent side by side
// with `podman kube play`/`kube down` of the same manifests, and with the
// kernel's floor, in one run, rounds interleaved, printing medians and p90s
// with the load average next to each figure as a Markdown report:
//
//   - 1, 10 and 50 pods: manifest written -> every container running;
//     manifest removed -> every pod gone (the watcher's removal settle time
//     included, as a user waits for it) and the agent's teardown alone
//     (first container stop -> last pod gone); podman: `kube play` and
//     `kube down` of one file holding the pods;
//   - the floor: fork+exec of /bin/true into new network, UTS, IPC, PID and
//     mount namespaces;
//   - per-pod memory (private and Pss) of our pause and shim against
//     podman's catatonit and two conmons, while ten pods run;
//   - the agent's RSS at idle, after start-up and after the rounds;
//   - 110 pods written at once: all running, per-pod p50/p90/p99, then the
//     CPU the agent and its helpers use while the node idles;
//   - a churn of pods (ten live; each cycle adds one and removes the
//     oldest): the agent's live heap, goroutines and descriptors after
//     cycle 10 and after the last.
//
// Run it as root with `make bench-podman` (docs/benchmarks.md). Settings,
// from the environment:
//
//	PELAGOS_BENCH_AGENT   agent binary under test (default: built from this tree)
//	PELAGOS_BENCH_BEFORE  a second agent binary, measured interleaved as "before"
//	PELAGOS_BENCH_ROUNDS  rounds of 1, 10 and 50 pods, and of 1 pod after a quiet spell (default 20,5,3,3)
//	PELAGOS_BENCH_IDLE    how long the idle CPU of 110 pods is measured (default 60s)
//	PELAGOS_BENCH_CHURN   pod cycles of the churn (default 1000; 0: none)
//	PELAGOS_BENCH_PODMAN  0: leave podman out
func BenchmarkSideBySide(b *testing.B) {
	linuxtest.RequireRoot(b)
	imagetest.RequireBusybox(b)
	cfg := sideSettings(b)
	for range b.N {
		runSideBySide(b, cfg)
	}
	b.ReportMetric(0, "ns/op") // the report is the result
}

type sideConfig struct {
	agent, before string
	rounds        [4]int // of 1, 10, 50 pods, and of 1 pod after idleSettle
	idle          time.Duration
	churn         int
	podman        bool
}

func sideSettings(b *testing.B) sideConfig {
	cfg := sideConfig{agent: os.Getenv("PELAGOS_BENCH_AGENT"), before: os.Getenv("PELAGOS_BENCH_BEFORE"),
		rounds: [4]int{20, 5, 3, 3}, idle: time.Minute, churn: 1000, podman: os.Getenv("PELAGOS_BENCH_PODMAN") != "0"}
	if cfg.agent == "" {
		cfg.agent = buildAgentBinary(b)
	}
	if v := os.Getenv("PELAGOS_BENCH_ROUNDS"); v != "" {
		f := strings.Split(v, ",")
		if len(f) != 3 && len(f) != 4 {
			b.Fatalf("PELAGOS_BENCH_ROUNDS=%q: want three or four counts: rounds of 1, 10 and 50 pods, and of 1 pod after a quiet spell (e.g. 20,5,3,3)", v)
		}
		for i, s := range f {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				b.Fatalf("PELAGOS_BENCH_ROUNDS=%q: %q is not a count of rounds", v, s)
			}
			cfg.rounds[i] = n
		}
	}
	if v := os.Getenv("PELAGOS_BENCH_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("PELAGOS_BENCH_IDLE=%q: not a duration", v)
		}
		cfg.idle = d
	}
	if v := os.Getenv("PELAGOS_BENCH_CHURN"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 0 && n < 10 {
			b.Fatalf("PELAGOS_BENCH_CHURN=%q: want 0 or a count of cycles of at least 10", v)
		}
		cfg.churn = n
	}
	return cfg
}

// subject is one agent measured: the binary under test, or the one before.
type subject struct {
	name string
	bin  string
	a    *agentProc
	mem  helperMem
	rss  [2]map[string]int // idle after start-up, after the rounds
}

// report collects samples by row and column, with the load average at
// each sample.
type report struct {
	rows  []string
	cells map[string]map[string][]time.Duration
	loads map[string][]float64
}

func newReport() *report {
	return &report{cells: map[string]map[string][]time.Duration{}, loads: map[string][]float64{}}
}

func (r *report) add(row, col string, d time.Duration) {
	if r.cells[row] == nil {
		r.rows = append(r.rows, row)
		r.cells[row] = map[string][]time.Duration{}
	}
	r.cells[row][col] = append(r.cells[row][col], d)
	r.loads[row] = append(r.loads[row], loadAverage())
}

func (r *report) median(row, col string) time.Duration { return median(r.cells[row][col]) }

// loadAverage is the one-minute load average.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}

func loadRange(l []float64) string {
	if len(l) == 0 {
		return "–"
	}
	lo, hi := slices.Min(l), slices.Max(l)
	if fmt.Sprintf("%.1f", lo) == fmt.Sprintf("%.1f", hi) {
		return fmt.Sprintf("%.1f", lo)
	}
	return fmt.Sprintf("%.1f–%.1f", lo, hi)
}

// floor is one fork+exec of /bin/true into fresh network, UTS, IPC, PID
// and mount namespaces, to its exit: the least a pod's first process can
// cost on this machine at this moment.
func floor(b *testing.B) time.Duration {
	start := time.Now()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

const (
	rowFloor   = "kernel floor: fork+exec into new net, UTS, IPC, PID, mount namespaces"
	rowNsenter = "podman only: the nsenter in front of each podman command (included above)"
	colOurs    = "ours"
	colBefore  = "before"
	colPodman  = "podman"
	rowIdleRun = "1 pod after 15 s idle (idleSettle): manifest written → running"
	memRounds  = 10 // pods at once while memory is sampled
	// idleSettle is how long the agents idle before their RSS is read:
	// longer than the agent's quiet time before it releases memory
	// (agent.ReleaseAfter).
	idleSettle   = agent.ReleaseAfter + 5*time.Second
	churnLive    = 10
	removalNote  = "removed → gone"
	teardownNote = "teardown (first stop → gone)"
)

func runSideBySide(b *testing.B, cfg sideConfig) {
	busybox := imagetest.Busybox(b)
	subjects := []*subject{{name: colOurs, bin: cfg.agent}}
	if cfg.before != "" {
		subjects = append(subjects, &subject{name: colBefore, bin: cfg.before})
	}
	for i, s := range subjects {
		// Each agent its own /24 (10.203.X.0/24), away from the tests'.
		// The kube API on TCP too, as a user of kubectl would run it;
		// an agent from before it existed runs without.
		var extra []string
		if out, _ := exec.Command(s.bin, "run", "--help").Output(); strings.Contains(string(out), "--api-listen") {
			extra = []string{"--api-listen", "127.0.0.1:0"}
		}
		s.a = startAgent(b, s.bin, 210+i*10+time.Now().Nanosecond()%10, extra...)
	}
	var pm *podmanPeer
	why := "left out (PELAGOS_BENCH_PODMAN=0)"
	if cfg.podman {
		var err error
		if pm, err = newPodmanPeer(b, busybox); err != nil {
			why = "not measured: " + err.Error()
			pm = nil
		}
	}
	// Warm every agent (bridge, nftables table, cgroup parent, the spare
	// pool) and let it settle, then read its idle RSS.
	for _, s := range subjects {
		s.a.round(b, []string{"warm"}, nil)
	}
	time.Sleep(idleSettle)
	for _, s := range subjects {
		s.rss[0] = agentRSS(s.a.pid())
	}

	rep := newReport()
	var pmMem podmanMem
	for si, n := range []int{1, 10, 50} {
		for round := range cfg.rounds[si] {
			names := func(who string) []string { return benchNames(fmt.Sprintf("%s%d-%d", who, n, round), n) }
			// Rotate who goes first, so that no one always follows the
			// same neighbour.
			order := make([]func(), 0, 3)
			for _, s := range subjects {
				order = append(order, func() {
					var mem *helperMem
					if n == memRounds {
						mem = &s.mem
					}
					r := s.a.round(b, names(s.name[:1]), mem)
					rep.add(rowRun(n), s.name, r.running)
					rep.add(rowGone(n), s.name, r.gone)
					rep.add(rowTeardown(n), s.name, r.teardown)
				})
			}
			if pm != nil {
				order = append(order, func() {
					var mem *podmanMem
					if n == memRounds {
						mem = &pmMem
					}
					run, gone := pm.round(b, names("p"), mem)
					rep.add(rowRun(n), colPodman, run)
					rep.add(rowGone(n), colPodman, gone)
					if n == 1 {
						rep.add(rowNsenter, colPodman, pm.nsenterFloor())
					}
				})
			}
			for i := range order {
				order[(i+round)%len(order)]()
			}
			if n == 1 {
				for range 3 {
					rep.add(rowFloor, colOurs, floor(b))
				}
			}
		}
	}
	time.Sleep(idleSettle)
	for _, s := range subjects {
		s.rss[1] = agentRSS(s.a.pid())
	}
	// A start after a quiet spell: the agent has released what it held
	// (the heap's free pages, its executable's pages) and takes back what
	// the start needs.
	for round := range cfg.rounds[3] {
		if round > 0 {
			time.Sleep(idleSettle)
		}
		for _, s := range subjects {
			r := s.a.round(b, []string{fmt.Sprintf("%sidle-%d", s.name[:1], round)}, nil)
			rep.add(rowIdleRun, s.name, r.running)
		}
	}
	big := map[string]*bigRun{}
	for _, s := range subjects {
		big[s.name] = runBig(b, s.a, s.name[:1], cfg.idle)
	}
	churns := map[string]*churn{}
	if cfg.churn > 0 {
		for _, s := range subjects {
			churns[s.name] = runChurn(b, s.a, s.name[:1], cfg.churn)
		}
	}
	printReport(os.Stdout, cfg, subjects, rep, pm, why, &pmMem, big, churns)
}

func rowRun(n int) string      { return fmt.Sprintf("%d pod(s): manifest written → running", n) }
func rowGone(n int) string     { return fmt.Sprintf("%d pod(s): manifest %s", n, removalNote) }
func rowTeardown(n int) string { return fmt.Sprintf("%d pod(s): %s", n, teardownNote) }

// agentRSS reads the agent's resident memory, in KiB.
func agentRSS(pid int) map[string]int {
	m, _ := linuxtest.ProcKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS", "RssAnon", "RssFile")
	return m
}

// cpuTicks is the user+system CPU of pid, in clock ticks (1/100 s).
func cpuTicks(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// bigRun is 110 pods written at once.
type bigRun struct {
	pods                  int
	allRunning, gone      time.Duration
	perPod                []time.Duration
	idle                  time.Duration
	agentCPU, helpersCPU  float64 // % of one core while idle
	loadStart, loadFinish float64
}

func runBig(b *testing.B, a *agentProc, prefix string, idle time.Duration) *bigRun {
	const pods = 110 // kubelet's default pod capacity, and the agent's
	r := &bigRun{pods: pods, idle: idle, loadStart: loadAverage()}
	names := benchNames(prefix+"big", pods)
	start := time.Now()
	a.write(b, names)
	for _, t := range a.await(b, "Started", names) {
		r.perPod = append(r.perPod, t.Sub(start))
	}
	r.allRunning = slices.Max(r.perPod)
	// Let the start's tail (the spare pool's refill, confirming passes)
	// finish before measuring the idle node.
	time.Sleep(5 * time.Second)
	helpers := linuxtest.ProcessesWithArg(a.runRoot)
	agent0, helpers0 := cpuTicks(a.pid()), 0
	for _, p := range helpers {
		helpers0 += cpuTicks(p)
	}
	t0 := time.Now()
	time.Sleep(idle)
	agent1, helpers1 := cpuTicks(a.pid()), 0
	for _, p := range helpers {
		helpers1 += cpuTicks(p)
	}
	secs := time.Since(t0).Seconds()
	r.agentCPU = float64(agent1-agent0) / secs
	r.helpersCPU = float64(helpers1-helpers0) / secs
	r.loadFinish = loadAverage()
	r.gone, _ = a.removeAll(b, names)
	return r
}

// churn is the agent's state over many pod cycles.
type churn struct {
	cycles int
	at     map[int]map[string]float64 // cycle -> figure
	cycle  []time.Duration
}

func runChurn(b *testing.B, a *agentProc, prefix string, cycles int) *churn {
	c := &churn{cycles: cycles, at: map[int]map[string]float64{}}
	var live []string
	for i := 1; i <= cycles; i++ {
		start := time.Now()
		name := fmt.Sprintf("%schurn-%d", prefix, i)
		a.write(b, []string{name})
		a.await(b, "Started", []string{name})
		live = append(live, name)
		if len(live) > churnLive {
			a.removeAll(b, live[:1])
			live = live[1:]
		}
		c.cycle = append(c.cycle, time.Since(start))
		if i == 10 || i == cycles {
			c.at[i] = a.state(b)
		}
	}
	a.removeAll(b, live)
	return c
}

// state reads what must not grow: the live heap (at the last collection)
// and goroutines from the agent's metrics, its descriptors and RSS.
func (a *agentProc) state(b *testing.B) map[string]float64 {
	out := map[string]float64{}
	m, err := a.metrics()
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range []string{"go_gc_heap_live_bytes", "go_memstats_heap_alloc_bytes", "go_goroutines", "go_threads"} {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", a.pid())); err == nil {
		out["fds"] = float64(len(fds))
	}
	for k, v := range agentRSS(a.pid()) {
		out[k] = float64(v)
	}
	return out
}

// metrics scrapes the agent's /metrics over its socket: unlabelled
// samples only.
func (a *agentProc) metrics() (map[string]float64, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", a.sock)
	}}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://agent/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}

func fmtMs(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", ms(d))
}

func cell(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s (%s)", fmtMs(median(ds)), fmtMs(quantile(ds, 0.9)))
}

func kernelRelease() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "?"
	}
	var s []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func binSize(path string) string {
	if st, err := os.Stat(path); err == nil {
		return fmt.Sprintf("%.1f MB", float64(st.Size())/1e6)
	}
	return "?"
}

func printReport(w io.Writer, cfg sideConfig, subjects []*subject, rep *report, pm *podmanPeer, why string,
	pmMem *podmanMem, big map[string]*bigRun, churns map[string]*churn) {
	fmt.Fprintf(w, "\n## Side by side, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "%d CPUs, kernel %s, %s; rounds of 1, 10, 50 pods: %d, %d, %d (interleaved, first mover rotated); %d of 1 pod after %s idle.\n",
		goruntime.NumCPU(), kernelRelease(), goruntime.Version(), cfg.rounds[0], cfg.rounds[1], cfg.rounds[2], cfg.rounds[3], idleSettle)
	for _, s := range subjects {
		fmt.Fprintf(w, "- %s: `%s` (%s)\n", s.name, s.bin, binSize(s.bin))
	}
	if pm != nil {
		crun, _ := exec.Command("crun", "--version").Output()
		fmt.Fprintf(w, "- podman: %s, %s, `kube play`/`kube down` of one file with the pods, its own bridge network (no DNS), cgroupfs on the v1 hierarchies\n",
			pm.version, strings.SplitN(string(crun), "\n", 2)[0])
	} else {
		fmt.Fprintf(w, "- podman: %s\n", why)
	}
	cols := []string{colOurs}
	for _, s := range subjects[1:] {
		cols = append(cols, s.name)
	}
	if pm != nil {
		cols = append(cols, colPodman)
	}
	fmt.Fprintf(w, "\nMedian (p90) per figure; load average (1 min) over the figure's samples.\n\n| what | %s | podman / ours | load |\n|---|%s---:|---|\n",
		strings.Join(cols, " | "), strings.Repeat("---:|", len(cols)))
	for _, row := range rep.rows {
		fmt.Fprintf(w, "| %s |", row)
		for _, c := range cols {
			fmt.Fprintf(w, " %s |", cell(rep.cells[row][c]))
		}
		ratio := "–"
		if o, p := rep.median(row, colOurs), rep.median(row, colPodman); o > 0 && p > 0 {
			ratio = fmt.Sprintf("%.1f×", float64(p)/float64(o))
		}
		fmt.Fprintf(w, " %s | %s |\n", ratio, loadRange(rep.loads[row]))
	}

	fmt.Fprintf(w, "\nMemory per one-container pod while %d pods run (KiB, medians): private (Pss).\n\n| | pause | shim | per pod | spare shim |\n|---|---:|---:|---:|---:|\n", memRounds)
	for _, s := range subjects {
		m := &s.mem
		fmt.Fprintf(w, "| %s | %d (%d) | %d (%d) | **%d** (%d) | %d |\n", s.name, medianInt(m.pausePriv), medianInt(m.pausePss),
			medianInt(m.shimPriv), medianInt(m.shimPss), medianInt(m.pausePriv)+medianInt(m.shimPriv),
			medianInt(m.pausePss)+medianInt(m.shimPss), medianInt(m.sparePriv))
	}
	if pm != nil {
		priv, pss := pmMem.perPod()
		fmt.Fprintf(w, "| podman | catatonit %d (%d) | conmon ×2: %d (%d) each | **%d** (%d) | – |\n",
			medianInt(pmMem.catatonitPriv), medianInt(pmMem.catatonitPss), medianInt(pmMem.conmonPriv), medianInt(pmMem.conmonPss), priv, pss)
	}

	fmt.Fprintf(w, "\nAgent RSS at idle, no pods, %s after start-up and %s after the rounds (KiB): total = anonymous + file.\n\n| | after start-up | after the rounds |\n|---|---:|---:|\n", idleSettle, idleSettle)
	for _, s := range subjects {
		f := func(m map[string]int) string {
			return fmt.Sprintf("%d = %d + %d", m["VmRSS"], m["RssAnon"], m["RssFile"])
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", s.name, f(s.rss[0]), f(s.rss[1]))
	}

	fmt.Fprintf(w, "\n110 pods written at once, then idle, then removed.\n\n| | all running | per pod p50 / p90 / p99 | idle CPU, agent | idle CPU, helpers | all gone | load |\n|---|---:|---:|---:|---:|---:|---|\n")
	for _, s := range subjects {
		r := big[s.name]
		fmt.Fprintf(w, "| %s | %s | %s / %s / %s | %.2f %% over %s | %.2f %% | %s | %.1f → %.1f |\n", s.name, fmtMs(r.allRunning),
			fmtMs(quantile(r.perPod, 0.5)), fmtMs(quantile(r.perPod, 0.9)), fmtMs(quantile(r.perPod, 0.99)),
			r.agentCPU, r.idle, r.helpersCPU, fmtMs(r.gone), r.loadStart, r.loadFinish)
	}

	if len(churns) > 0 {
		fmt.Fprintf(w, "\nChurn: %d live pods, each cycle adds one and removes the oldest.\n\n| | cycle | live heap | heap allocated | goroutines | threads | fds | RSS (anon) KiB | cycle median |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n", churnLive)
		for _, s := range subjects {
			c := churns[s.name]
			for _, i := range slices.Compact([]int{10, c.cycles}) {
				m := c.at[i]
				live := "–"
				if v, ok := m["go_gc_heap_live_bytes"]; ok {
					live = fmt.Sprintf("%.0f KiB", v/1024)
				}
				fmt.Fprintf(w, "| %s | %d | %s | %.0f KiB | %.0f | %.0f | %.0f | %.0f (%.0f) | %s |\n", s.name, i, live,
					m["go_memstats_heap_alloc_bytes"]/1024, m["go_goroutines"], m["go_threads"], m["fds"], m["VmRSS"], m["RssAnon"], fmtMs(median(c.cycle)))
			}
		}
	}
	printGoals(w, subjects[0], rep, pm, pmMem, big[colOurs])
}

// printGoals states each goal of issue 13 as met or missed, by how much.
func printGoals(w io.Writer, ours *subject, rep *report, pm *podmanPeer, pmMem *podmanMem, big *bigRun) {
	fmt.Fprintf(w, "\nGoals (issue 13), ours:\n\n")
	goal := func(what string, ok bool, detail string) {
		verdict := "met"
		if !ok {
			verdict = "**missed**"
		}
		fmt.Fprintf(w, "- %s: %s — %s\n", what, verdict, detail)
	}
	run1, td1 := rep.median(rowRun(1), colOurs), rep.median(rowTeardown(1), colOurs)
	goal("1 pod start ≤ 25 ms median", run1 <= 25*time.Millisecond, fmtMs(run1))
	if pm != nil {
		p := rep.median(rowRun(1), colPodman)
		goal("1 pod start ≥ 20× faster than podman", float64(p) >= 20*float64(run1), fmt.Sprintf("%.1f×", float64(p)/float64(run1)))
	}
	goal("stop ≤ 25 ms (teardown, grace 0)", td1 <= 25*time.Millisecond, fmt.Sprintf("teardown %s; manifest removed → gone %s, of which the watcher's settle time 50 ms",
		fmtMs(td1), fmtMs(rep.median(rowGone(1), colOurs))))
	run10 := rep.median(rowRun(10), colOurs)
	goal("10 pods ≤ 10× one pod", run10 <= 10*run1, fmt.Sprintf("%.1f×", float64(run10)/float64(run1)))
	goal("110 pods all running ≤ 3 s", big.allRunning <= 3*time.Second, fmtMs(big.allRunning))
	goal("110 pods: per-pod p99 ≤ 3 s", quantile(big.perPod, 0.99) <= 3*time.Second, fmtMs(quantile(big.perPod, 0.99)))
	goal("110 idle pods < 1 % CPU", big.agentCPU+big.helpersCPU < 1, fmt.Sprintf("agent %.2f %%, helpers %.2f %%", big.agentCPU, big.helpersCPU))
	if pm != nil {
		priv, _ := pmMem.perPod()
		ourPriv := medianInt(ours.mem.pausePriv) + medianInt(ours.mem.shimPriv)
		goal("per-pod private memory ≤ podman's", ourPriv <= priv, fmt.Sprintf("%d KiB against %d KiB", ourPriv, priv))
	}
	rss := ours.rss[0]["VmRSS"]
	goal("idle agent RSS ≤ 20 MiB", rss <= 20*1024, fmt.Sprintf("%.1f MiB after start-up (%.1f MiB anonymous), %.1f MiB after the rounds",
		float64(rss)/1024, float64(ours.rss[0]["RssAnon"])/1024, float64(ours.rss[1]["VmRSS"])/1024))
}
