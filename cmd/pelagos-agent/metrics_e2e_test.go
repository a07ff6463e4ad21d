package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// getSocket GETs path from the agent's API socket.
func getSocket(t *testing.T, sock, path string) string {
	t.Helper()
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://agent" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", path, resp.Status, err)
	}
	return string(b)
}

// docMetric is one row of the metrics table in docs/agent.md.
type docMetric struct {
	typ    string
	labels []string
}

// docMetrics reads the table under "## Metrics" in docs/agent.md.
func docMetrics(t *testing.T) map[string]docMetric {
	t.Helper()
	b, err := os.ReadFile("../../docs/agent.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("docs/agent.md has no Metrics section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	row := regexp.MustCompile("^\\| `(pelagos_[a-z_]+)` \\| *([a-z]*) *\\| *([^|]*?) *\\|")
	out := map[string]docMetric{}
	for _, line := range strings.Split(sec, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		out[m[1]] = docMetric{typ: m[2], labels: labels}
	}
	if len(out) == 0 {
		t.Fatal("no metrics found in the table of docs/agent.md")
	}
	return out
}

// TestAgentMetricsMatchDocs scrapes a real agent running a probed pod and
// compares every pelagos_ family it serves — name, type, labels — with
// the table in docs/agent.md, both ways.
func TestAgentMetricsMatchDocs(t *testing.T) {
	e := newAgentEnv(t)
	e.start()
	e.write("rev1", "probed.yaml", `apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    readinessProbe:
      exec: {command: ["true"]}
      periodSeconds: 1
`)
	e.running("probed")
	e.eventually("a probe counted", func() error {
		if !strings.Contains(getSocket(t, e.sock, "/metrics"), "pelagos_prober_probe_total{") {
			return os.ErrNotExist
		}
		return nil
	})
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(getSocket(t, e.sock, "/metrics")))
	if err != nil {
		t.Fatal(err)
	}
	doc := docMetrics(t)
	for name, f := range families {
		if !strings.HasPrefix(name, "pelagos_") {
			continue
		}
		d, ok := doc[name]
		if !ok {
			t.Errorf("%s is served but not in docs/agent.md", name)
			continue
		}
		if typ := strings.ToLower(f.GetType().String()); typ != d.typ {
			t.Errorf("%s: served as a %s, documented as a %s", name, typ, d.typ)
		}
		if labels := labelNames(f); !slices.Equal(labels, d.labels) {
			t.Errorf("%s: served with labels %v, documented with %v", name, labels, d.labels)
		}
	}
	for name := range doc {
		if _, ok := families[name]; !ok {
			t.Errorf("%s is in docs/agent.md but not served", name)
		}
	}
	if err := os.Remove(e.current + "/probed.yaml"); err != nil {
		t.Fatal(err)
	}
	e.gone("probed")
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}

func labelNames(f *dto.MetricFamily) []string {
	var out []string
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if !slices.Contains(out, l.GetName()) {
				out = append(out, l.GetName())
			}
		}
	}
	slices.Sort(out)
	return out
}
