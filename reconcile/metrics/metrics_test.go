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
		`pelagos_container_restarts{container="app",namespace="default",pod="web"} 3`,
		`pelagos_reconcile_passes_total{result="ok"} 1`,
		`pelagos_reconcile_actions_total{kind="StartContainer",result="error"} 1`,
		`pelagos_action_duration_seconds_count{kind="CreateSandbox"} 1`,
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
