package prober

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// recorder collects updates on a channel so tests wait for events rather
// than for time.
type recorder chan Update

func (r recorder) on(u Update) { r <- u }

func (r recorder) next(t *testing.T) Update {
	t.Helper()
	select {
	case u := <-r:
		return u
	case <-time.After(10 * time.Second):
		t.Fatal("no probe update within 10s")
		return Update{}
	}
}

func execProbe(cmd string, failure, success int) *Probe {
	return &Probe{Exec: &ExecAction{Command: []string{cmd}}, Period: time.Millisecond,
		Timeout: time.Second, FailureThreshold: failure, SuccessThreshold: success}
}

type step struct {
	Kind    Kind
	Result  Result
	Restart bool
}

func steps(us ...Update) []step {
	var s []step
	for _, u := range us {
		s = append(s, step{u.Kind, u.Result, u.Restart})
	}
	return s
}

func newTestManager(t *testing.T, ex Execer) (*Manager, recorder, *prometheus.Registry) {
	t.Helper()
	rec := make(recorder, 64)
	reg := prometheus.NewRegistry()
	m, err := NewManager(Options{Exec: ex, OnUpdate: rec.on, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, rec, reg
}

func TestNormalizeDefaults(t *testing.T) {
	got := Probe{SuccessThreshold: 5}.Normalize(Liveness)
	want := Probe{Period: 10 * time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("liveness defaults (-want +got):\n%s", d)
	}
	if got := (Probe{SuccessThreshold: 5}).Normalize(Readiness); got.SuccessThreshold != 5 {
		t.Fatalf("readiness keeps its success threshold, got %d", got.SuccessThreshold)
	}
}

func TestLivenessFailureThresholdThenHold(t *testing.T) {
	// Two failures do not reach the threshold of 3; a success resets the
	// streak; three failures in a row ask for a restart, then probing stops.
	ex := newScriptExec(map[string][]int{"live": {1, 1, 0, 1, 1, 1, 0}})
	m, rec, reg := newTestManager(t, ex)
	if err := m.Add(Target{Namespace: "ns", Pod: "p", ContainerName: "c", ContainerID: "c1", StartedAt: time.Now()},
		Probes{Liveness: execProbe("live", 3, 1)}); err != nil {
		t.Fatal(err)
	}
	u := rec.next(t)
	if d := cmp.Diff([]step{{Liveness, Failure, true}}, steps(u)); d != "" {
		t.Fatalf("updates (-want +got):\n%s", d)
	}
	if n := ex.count("live"); n != 6 {
		t.Fatalf("restart requested after %d attempts, want 6", n)
	}
	if st, _ := m.Status("c1"); !st.Started || !st.Ready {
		t.Fatalf("status %+v: a container without readiness/startup probes is started and ready", st)
	}
	m.Remove("c1")
	if n := ex.count("live"); n != 6 {
		t.Fatalf("%d attempts: probing continued while the container was on hold", n)
	}
	if n := series(t, reg); n != 0 {
		t.Fatalf("%d metric series left for a removed container", n)
	}
	if _, ok := m.Status("c1"); ok {
		t.Fatal("removed container still has a status")
	}
}

func series(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}

func TestReadinessThresholds(t *testing.T) {
	// Initially not ready; two successes needed; then three failures flip
	// it back; a later success (streak of 2) flips it again.
	ex := newScriptExec(map[string][]int{"ready": {0, 1, 0, 0, 1, 1, 1, 0, 0}})
	m, rec, reg := newTestManager(t, ex)
	if err := m.Add(Target{Namespace: "ns", Pod: "p", ContainerName: "c", ContainerID: "c1", StartedAt: time.Now()},
		Probes{Readiness: execProbe("ready", 3, 2)}); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.Status("c1"); st.Ready || !st.Started {
		t.Fatalf("initial status %+v: want started, not ready", st)
	}
	got := steps(rec.next(t), rec.next(t), rec.next(t))
	want := []step{{Readiness, Success, false}, {Readiness, Failure, false}, {Readiness, Success, false}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("updates (-want +got):\n%s", d)
	}
	if st, _ := m.Status("c1"); !st.Ready {
		t.Fatalf("status %+v after the final success", st)
	}
	if n := series(t, reg); n != 2 {
		t.Fatalf("%d metric series, want 2 (success and failure)", n)
	}
	m.Remove("c1")
	if n := series(t, reg); n != 0 {
		t.Fatalf("%d series left after Remove", n)
	}
}

func TestStartupGatesOthers(t *testing.T) {
	ex := newScriptExec(map[string][]int{"start": {1, 1, 0}, "live": {0}, "ready": {0}})
	m, rec, _ := newTestManager(t, ex)
	if err := m.Add(Target{Namespace: "ns", Pod: "p", ContainerName: "c", ContainerID: "c1", StartedAt: time.Now()},
		Probes{Startup: execProbe("start", 5, 1), Liveness: execProbe("live", 1, 1), Readiness: execProbe("ready", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.Status("c1"); st.Started || st.Ready {
		t.Fatalf("initial status %+v: want neither started nor ready", st)
	}
	u := rec.next(t)
	if u.Kind != Startup || u.Result != Success {
		t.Fatalf("first update %v, want startup success", u)
	}
	// Nothing but the startup probe ran before it passed.
	if n := ex.count("start"); n != 3 {
		t.Fatalf("startup attempts %d, want 3", n)
	}
	u = rec.next(t)
	if u.Kind != Readiness || u.Result != Success {
		t.Fatalf("second update %v, want readiness success", u)
	}
	if st, _ := m.Status("c1"); !st.Started || !st.Ready {
		t.Fatalf("status %+v after startup and readiness passed", st)
	}
	before := ex.count("start")
	m.Remove("c1")
	if ex.count("start") != before || before != 3 {
		t.Fatalf("startup probe ran again after it passed (%d attempts)", ex.count("start"))
	}
}

func TestGatedProbesDoNotRunBeforeStartup(t *testing.T) {
	ex := newScriptExec(map[string][]int{"start": {1}, "live": {1}})
	m, rec, _ := newTestManager(t, ex)
	grace := 7 * time.Second
	sp := execProbe("start", 4, 1)
	sp.TerminationGracePeriod = &grace
	if err := m.Add(Target{Namespace: "ns", Pod: "p", ContainerName: "c", ContainerID: "c1", StartedAt: time.Now()},
		Probes{Startup: sp, Liveness: execProbe("live", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	u := rec.next(t)
	if d := cmp.Diff([]step{{Startup, Failure, true}}, steps(u)); d != "" {
		t.Fatalf("updates (-want +got):\n%s", d)
	}
	if u.GracePeriod == nil || *u.GracePeriod != grace {
		t.Fatalf("grace period %v, want the probe's %v", u.GracePeriod, grace)
	}
	m.Remove("c1")
	if n := ex.count("live"); n != 0 {
		t.Fatalf("liveness ran %d times before startup passed", n)
	}
	if n := ex.count("start"); n != 4 {
		t.Fatalf("startup attempts %d, want exactly the failure threshold 4", n)
	}
}

func TestInitialDelayFromContainerStart(t *testing.T) {
	// A container adopted long after it started is probed at once, however
	// long its initial delay.
	ex := newScriptExec(map[string][]int{"live": {1}})
	m, rec, _ := newTestManager(t, ex)
	p := execProbe("live", 1, 1)
	p.InitialDelay = time.Hour
	if err := m.Add(Target{Namespace: "ns", Pod: "p", ContainerName: "c", ContainerID: "c1", StartedAt: time.Now().Add(-2 * time.Hour)},
		Probes{Liveness: p}); err != nil {
		t.Fatal(err)
	}
	if u := rec.next(t); u.Kind != Liveness || !u.Restart {
		t.Fatalf("update %v", u)
	}
	// A fresh container with a long delay is not probed before Remove.
	if err := m.Add(Target{Namespace: "ns", Pod: "p", ContainerName: "c", ContainerID: "c2", StartedAt: time.Now()},
		Probes{Liveness: p}); err != nil {
		t.Fatal(err)
	}
	m.Remove("c2")
	if n := ex.count("live"); n != 1 {
		t.Fatalf("%d attempts, want 1 (only the adopted container)", n)
	}
}

func TestAddValidatesAndIsIdempotent(t *testing.T) {
	m, _, _ := newTestManager(t, nil)
	tg := Target{Namespace: "ns", Pod: "p", ContainerName: "c", ContainerID: "c1", StartedAt: time.Now()}
	if err := m.Add(tg, Probes{Liveness: &Probe{}}); err == nil {
		t.Fatal("probe without action accepted")
	}
	if err := m.Add(tg, Probes{Liveness: execProbe("x", 1, 1)}); err == nil {
		t.Fatal("exec probe accepted without an exec runtime")
	}
	tcp := &Probe{TCPSocket: &TCPSocketAction{Port: Port{Number: 1}}, InitialDelay: time.Hour}
	if err := m.Add(tg, Probes{Readiness: tcp}); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(tg, Probes{Readiness: tcp}); err != nil {
		t.Fatalf("second Add: %v", err)
	}
	if ids := m.Containers(); len(ids) != 1 {
		t.Fatalf("containers %v", ids)
	}
}

func TestSuspendStopsJudging(t *testing.T) {
	ex := newScriptExec(map[string][]int{"live": {1}})
	m, rec, _ := newTestManager(t, ex)
	if err := m.Add(Target{Namespace: "ns", Pod: "p", ContainerName: "c", ContainerID: "c1", StartedAt: time.Now()},
		Probes{Liveness: execProbe("live", 1000000, 1)}); err != nil {
		t.Fatal(err)
	}
	for ex.count("live") < 3 {
		time.Sleep(time.Millisecond)
	}
	m.Suspend("c1")
	n := ex.count("live")
	// Many periods pass; at most the attempt already under way completes.
	time.Sleep(50 * time.Millisecond)
	m.Remove("c1")
	if got := ex.count("live"); got > n+1 {
		t.Fatalf("%d attempts after Suspend (had %d)", got, n)
	}
	select {
	case u := <-rec:
		t.Fatalf("unexpected update %v", u)
	default:
	}
}
