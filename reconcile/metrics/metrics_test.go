package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
)

type pods []reconcile.Pod

func (p pods) Pods() []reconcile.Pod { return p }

func TestExposition(t *testing.T) {
	m := New()
	m.WatchPods(pods{{Metadata: reconcile.ObjectMeta{Name: "web", Namespace: "default"},
		Status: reconcile.PodStatus{Phase: reconcile.PhaseRunning,
			ContainerStatuses: []reconcile.ContainerStatus{{Name: "app", RestartCount: 3, Ready: true}}}}})
	m.Pass(3*time.Millisecond, nil)
	m.Action(reconcile.ActCreateSandbox, nil, 5*time.Millisecond)
	m.Action(reconcile.ActStartContainer, errors.New("x"), time.Millisecond)
	m.ImagePull(nil)
	m.ManifestErrors(2)
	m.ChangeToRunning(20 * time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`pelagos_pods{phase="Running"} 1`,
		`pelagos_pods{phase="Pending"} 0`,
		`pelagos_container_restarts_total{container="app",namespace="default",pod="web"} 3`,
		`pelagos_reconcile_passes_total{result="ok"} 1`,
		`pelagos_reconcile_actions_total{kind="StartContainer",result="error"} 1`,
		`pelagos_reconcile_action_duration_seconds_count{kind="CreateSandbox"} 1`,
		`pelagos_manifest_errors 2`,
		`pelagos_image_pulls_total{result="ok"} 1`,
		`pelagos_change_to_running_seconds_count 1`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestConventions: counters end in _total, and every latency histogram
// has a finite bucket at or above the default 30 s grace period, so that a
// stop that waits out the grace does not vanish into +Inf.
func TestConventions(t *testing.T) {
	m := New()
	m.WatchPods(pods{{Metadata: reconcile.ObjectMeta{Name: "web", Namespace: "default"},
		Status: reconcile.PodStatus{Phase: reconcile.PhaseRunning,
			ContainerStatuses: []reconcile.ContainerStatus{{Name: "app", RestartCount: 1}}}}})
	m.SetAgentInfo(AgentInfo{Version: "dev"})
	m.Pass(time.Millisecond, nil)
	m.Action(reconcile.ActStopContainer, nil, 30*time.Second)
	m.ImagePull(nil)
	m.ChangeToRunning(time.Millisecond)
	m.ChangeToGone(31 * time.Second)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "pelagos_") {
			continue
		}
		switch f.GetType().String() {
		case "COUNTER":
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case "HISTOGRAM":
			if !strings.HasSuffix(name, "_seconds") {
				t.Errorf("histogram %s is not in seconds", name)
			}
			buckets := f.GetMetric()[0].GetHistogram().GetBucket()
			if top := buckets[len(buckets)-1].GetUpperBound(); top < 30 {
				t.Errorf("histogram %s: largest bucket %gs is below the 30 s grace period", name, top)
			}
		default:
			if strings.HasSuffix(name, "_total") {
				t.Errorf("%s %s ends in _total but is not a counter", f.GetType(), name)
			}
		}
	}
}

// TestAgentInfoRoundTrip: what the agent publishes, the CLI reads back,
// whatever the paths contain.
func TestAgentInfoRoundTrip(t *testing.T) {
	want := AgentInfo{Version: "v1.2.3-4-gabc", Root: `/var/lib/pela "gos"`, RunRoot: `/run/back\\slash`,
		Bridge: "pelagos0", Subnet: "172.16.128.0/20", NetNSPrefix: "pelagos-", NFTable: "pelagos", CgroupParent: ""}
	m := New()
	m.SetAgentInfo(want)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got, err := ParseAgentInfo(rec.Body)
	if err != nil || got != want {
		t.Errorf("read back %+v, %v; want %+v", got, err, want)
	}
	if _, err := ParseAgentInfo(strings.NewReader("# nothing\n")); !errors.Is(err, ErrNoAgentInfo) {
		t.Errorf("metrics without the info: %v", err)
	}
}
