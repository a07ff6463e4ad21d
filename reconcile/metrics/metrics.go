// Package metrics exports the agent's Prometheus metrics: pods by phase,
// container restarts, reconcile passes and their duration, actions by kind
// and result, manifest errors, image pulls, sandbox create/remove latency,
// the latency from a manifest change to running (or gone), and the agent
// process itself.
package metrics

import (
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
)

// PodLister is what the pod-state collectors read.
type PodLister interface {
	Pods() []reconcile.Pod
}

// Metrics implements reconcile.Metrics on its own registry.
type Metrics struct {
	reg            *prometheus.Registry
	passes         *prometheus.CounterVec
	passDuration   prometheus.Histogram
	actions        *prometheus.CounterVec
	actionDuration *prometheus.HistogramVec
	manifestErrors prometheus.Gauge
	pulls          *prometheus.CounterVec
	toRunning      prometheus.Histogram
	toGone         prometheus.Histogram
}

var _ reconcile.Metrics = (*Metrics)(nil)

// latencyBuckets span 1 ms to ~65 s: the agent's budget is 25 ms, an image
// pull takes seconds, and stopping a container that ignores SIGTERM takes
// its whole grace period (30 s by default) — which must land in a bucket of
// its own, not in +Inf with everything slower.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)

// New registers every metric, plus Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pelagos_reconcile_passes_total",
			Help: "Reconcile passes by result (ok, error)."}, []string{"result"}),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pelagos_reconcile_pass_duration_seconds",
			Help: "Duration of one reconcile pass for one pod.", Buckets: latencyBuckets}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pelagos_reconcile_actions_total",
			Help: "Plan actions applied, by kind and result."}, []string{"kind", "result"}),
		actionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pelagos_reconcile_action_duration_seconds",
			Help:    "Duration of plan actions by kind (CreateSandbox and RemoveSandbox are sandbox create/remove latency).",
			Buckets: latencyBuckets}, []string{"kind"}),
		manifestErrors: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pelagos_manifest_errors",
			Help: "Problems found in the manifest directory by the last load."}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pelagos_image_pulls_total",
			Help: "Image ensure/pull calls by result."}, []string{"result"}),
		toRunning: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pelagos_change_to_running_seconds",
			Help: "From a manifest change seen to every container of the pod running.", Buckets: latencyBuckets}),
		toGone: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pelagos_change_to_gone_seconds",
			Help: "From a manifest removal seen to everything of the pod gone.", Buckets: latencyBuckets}),
	}
	m.reg.MustRegister(m.passes, m.passDuration, m.actions, m.actionDuration, m.manifestErrors, m.pulls, m.toRunning, m.toGone,
		// The live heap as of the last collection (go_gc_heap_live_bytes)
		// is the figure that shows a leak; the allocated heap swings with
		// garbage between collections.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// WatchPods registers the collectors that read pod state at scrape time.
func (m *Metrics) WatchPods(l PodLister) {
	m.reg.MustRegister(&podCollector{l: l})
}

// Registry is where the metrics live (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (m *Metrics) Pass(d time.Duration, err error) {
	m.passes.WithLabelValues(result(err)).Inc()
	m.passDuration.Observe(d.Seconds())
}

func (m *Metrics) Action(kind reconcile.ActionKind, err error, d time.Duration) {
	m.actions.WithLabelValues(string(kind), result(err)).Inc()
	m.actionDuration.WithLabelValues(string(kind)).Observe(d.Seconds())
}

func (m *Metrics) ImagePull(err error)             { m.pulls.WithLabelValues(result(err)).Inc() }
func (m *Metrics) ManifestErrors(n int)            { m.manifestErrors.Set(float64(n)) }
func (m *Metrics) ChangeToRunning(d time.Duration) { m.toRunning.Observe(d.Seconds()) }
func (m *Metrics) ChangeToGone(d time.Duration)    { m.toGone.Observe(d.Seconds()) }

var (
	podsDesc = prometheus.NewDesc("pelagos_pods", "Pods by phase.", []string{"phase"}, nil)
	restarts = prometheus.NewDesc("pelagos_container_restarts_total", "Restarts of each container (its restartCount).",
		[]string{"namespace", "pod", "container"}, nil)
	ready = prometheus.NewDesc("pelagos_container_ready", "1 when the container is ready.",
		[]string{"namespace", "pod", "container"}, nil)
)

type podCollector struct{ l PodLister }

func (c *podCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- restarts
	ch <- ready
}

func (c *podCollector) Collect(ch chan<- prometheus.Metric) {
	phases := map[string]int{reconcile.PhasePending: 0, reconcile.PhaseRunning: 0, reconcile.PhaseSucceeded: 0,
		reconcile.PhaseFailed: 0, reconcile.PhaseUnknown: 0}
	for _, p := range c.l.Pods() {
		phases[p.Status.Phase]++
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			ch <- prometheus.MustNewConstMetric(restarts, prometheus.CounterValue, float64(cs.RestartCount),
				p.Metadata.Namespace, p.Metadata.Name, cs.Name)
			r := 0.0
			if cs.Ready {
				r = 1
			}
			ch <- prometheus.MustNewConstMetric(ready, prometheus.GaugeValue, r, p.Metadata.Namespace, p.Metadata.Name, cs.Name)
		}
	}
	for phase, n := range phases {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(n), phase)
	}
}
