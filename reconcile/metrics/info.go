package metrics

import (
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// AgentInfo is what pelagos_agent_info says about a running agent: its
// version and the roots and host-global names it works with. The low-level
// CLI commands read it through the agent's socket, so that they look where
// the agent keeps its state instead of at the defaults.
type AgentInfo struct {
	Version      string
	Root         string
	RunRoot      string
	Bridge       string
	Subnet       string
	NetNSPrefix  string
	NFTable      string
	CgroupParent string
}

const agentInfoName = "pelagos_agent_info"

// agentInfoLabels are the label names, in AgentInfo's field order.
var agentInfoLabels = []string{"version", "root", "run_root", "bridge", "subnet", "netns_prefix", "nft_table", "cgroup_parent"}

func (i *AgentInfo) fields() []*string {
	return []*string{&i.Version, &i.Root, &i.RunRoot, &i.Bridge, &i.Subnet, &i.NetNSPrefix, &i.NFTable, &i.CgroupParent}
}

// SetAgentInfo publishes pelagos_agent_info (value 1, the facts as labels,
// as Prometheus' *_info convention has it). Call it once.
func (m *Metrics) SetAgentInfo(info AgentInfo) {
	labels := prometheus.Labels{}
	for i, v := range info.fields() {
		labels[agentInfoLabels[i]] = *v
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: agentInfoName, ConstLabels: labels,
		Help: "The agent's version, roots and host-global names (always 1)."})
	g.Set(1)
	m.reg.MustRegister(g)
}

// ErrNoAgentInfo means the metrics were read but carry no pelagos_agent_info.
var ErrNoAgentInfo = errors.New("no " + agentInfoName + " in the metrics")

// ParseAgentInfo reads pelagos_agent_info from metrics in the Prometheus
// text format.
func ParseAgentInfo(r io.Reader) (AgentInfo, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return AgentInfo{}, fmt.Errorf("parse metrics: %w", err)
	}
	f := families[agentInfoName]
	if f == nil || len(f.GetMetric()) != 1 {
		return AgentInfo{}, ErrNoAgentInfo
	}
	values := map[string]string{}
	for _, l := range f.GetMetric()[0].GetLabel() {
		values[l.GetName()] = l.GetValue()
	}
	var info AgentInfo
	for i, v := range info.fields() {
		*v = values[agentInfoLabels[i]]
	}
	return info, nil
}
