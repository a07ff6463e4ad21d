package spec

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
)

// validateScheduling checks the scheduling fields with Kubernetes' rules,
// so that a selector or toleration that a cluster would refuse is refused
// here too, rather than matching nothing in silence.
func validateScheduling(l *errList, sp fieldPath, s *PodSpec) {
	if a := s.Affinity; a != nil {
		ap := sp.Field("affinity")
		if na := a.NodeAffinity; na != nil {
			np := ap.Field("nodeAffinity")
			if req := na.RequiredDuringSchedulingIgnoredDuringExecution; req != nil {
				rp := np.Field("requiredDuringSchedulingIgnoredDuringExecution")
				if len(req.NodeSelectorTerms) == 0 {
					l.add(rp.Field("nodeSelectorTerms"), "must have at least one term")
				}
				for i := range req.NodeSelectorTerms {
					validateNodeSelectorTerm(l, rp.Field("nodeSelectorTerms").Index(i), &req.NodeSelectorTerms[i])
				}
			}
			for i := range na.PreferredDuringSchedulingIgnoredDuringExecution {
				pp := np.Field("preferredDuringSchedulingIgnoredDuringExecution").Index(i)
				validateNodeSelectorTerm(l, pp.Field("preference"), &na.PreferredDuringSchedulingIgnoredDuringExecution[i].Preference)
			}
		}
		if pa := a.PodAffinity; pa != nil {
			validatePodAffinity(l, ap.Field("podAffinity"), pa.RequiredDuringSchedulingIgnoredDuringExecution, pa.PreferredDuringSchedulingIgnoredDuringExecution)
		}
		if pa := a.PodAntiAffinity; pa != nil {
			validatePodAffinity(l, ap.Field("podAntiAffinity"), pa.RequiredDuringSchedulingIgnoredDuringExecution, pa.PreferredDuringSchedulingIgnoredDuringExecution)
		}
	}
	for i, t := range s.Tolerations {
		validateToleration(l, sp.Field("tolerations").Index(i), t)
	}
	for i, c := range s.TopologySpreadConstraints {
		cp := sp.Field("topologySpreadConstraints").Index(i)
		if c.MaxSkew <= 0 {
			l.add(cp.Field("maxSkew"), "%d must be greater than zero", c.MaxSkew)
		}
		validateTopologyKey(l, cp.Field("topologyKey"), c.TopologyKey)
		switch c.WhenUnsatisfiable {
		case "DoNotSchedule", "ScheduleAnyway":
		default:
			l.add(cp.Field("whenUnsatisfiable"), "%q is not one of: DoNotSchedule, ScheduleAnyway", c.WhenUnsatisfiable)
		}
		if c.MinDomains != nil {
			if *c.MinDomains <= 0 {
				l.add(cp.Field("minDomains"), "%d must be greater than zero", *c.MinDomains)
			} else if c.WhenUnsatisfiable != "DoNotSchedule" {
				l.add(cp.Field("minDomains"), "may be set only when whenUnsatisfiable is DoNotSchedule")
			}
		}
		for _, pol := range []struct {
			name string
			v    *string
		}{{"nodeAffinityPolicy", c.NodeAffinityPolicy}, {"nodeTaintsPolicy", c.NodeTaintsPolicy}} {
			if pol.v != nil && *pol.v != "Honor" && *pol.v != "Ignore" {
				l.add(cp.Field(pol.name), "%q is not one of: Honor, Ignore", *pol.v)
			}
		}
		validateLabelSelector(l, cp.Field("labelSelector"), c.LabelSelector)
	}
}

func validateNodeSelectorTerm(l *errList, tp fieldPath, t *NodeSelectorTerm) {
	for i, r := range t.MatchExpressions {
		rp := tp.Field("matchExpressions").Index(i)
		if msgs := content.IsLabelKey(r.Key); len(msgs) > 0 {
			l.add(rp.Field("key"), "%q is invalid: %s", r.Key, strings.Join(msgs, "; "))
		}
		validateRequirement(l, rp, string(r.Operator), r.Values, true)
	}
	for i, r := range t.MatchFields {
		rp := tp.Field("matchFields").Index(i)
		if r.Key != "metadata.name" {
			l.add(rp.Field("key"), "%q is not a supported field: the only node field is metadata.name", r.Key)
		}
		switch r.Operator {
		case NodeSelectorOpIn, NodeSelectorOpNotIn:
			if len(r.Values) != 1 {
				l.add(rp.Field("values"), "must have exactly one value for operator %s on a field", r.Operator)
			}
		default:
			l.add(rp.Field("operator"), "%q is not one of: In, NotIn (the operators of matchFields)", r.Operator)
		}
	}
}

// validateRequirement checks a selector requirement's operator and values
// as Kubernetes does: In and NotIn need values, Exists and DoesNotExist
// none, and (for node selectors, gtLt) Gt and Lt exactly one integer.
func validateRequirement(l *errList, rp fieldPath, op string, values []string, gtLt bool) {
	switch {
	case op == "In" || op == "NotIn":
		if len(values) == 0 {
			l.add(rp.Field("values"), "must have at least one value for operator %s", op)
		}
	case op == "Exists" || op == "DoesNotExist":
		if len(values) > 0 {
			l.add(rp.Field("values"), "must be empty for operator %s", op)
		}
	case gtLt && (op == "Gt" || op == "Lt"):
		if len(values) != 1 {
			l.add(rp.Field("values"), "must have exactly one value for operator %s", op)
		} else if _, err := strconv.ParseInt(values[0], 10, 64); err != nil {
			l.add(rp.Field("values").Index(0), "%q must be an integer for operator %s", values[0], op)
		}
	case gtLt:
		l.add(rp.Field("operator"), "%q is not one of: In, NotIn, Exists, DoesNotExist, Gt, Lt", op)
	default:
		l.add(rp.Field("operator"), "%q is not one of: In, NotIn, Exists, DoesNotExist", op)
	}
}

func validatePodAffinity(l *errList, p fieldPath, req []PodAffinityTerm, pref []WeightedPodAffinityTerm) {
	one := func(tp fieldPath, t *PodAffinityTerm) {
		validateTopologyKey(l, tp.Field("topologyKey"), t.TopologyKey)
		validateLabelSelector(l, tp.Field("labelSelector"), t.LabelSelector)
		validateLabelSelector(l, tp.Field("namespaceSelector"), t.NamespaceSelector)
		for i, ns := range t.Namespaces {
			if msgs := content.IsDNS1123Label(ns); len(msgs) > 0 {
				l.add(tp.Field("namespaces").Index(i), "%q is invalid: %s", ns, strings.Join(msgs, "; "))
			}
		}
	}
	for i := range req {
		one(p.Field("requiredDuringSchedulingIgnoredDuringExecution").Index(i), &req[i])
	}
	for i := range pref {
		one(p.Field("preferredDuringSchedulingIgnoredDuringExecution").Index(i).Field("podAffinityTerm"), &pref[i].PodAffinityTerm)
	}
}

func validateTopologyKey(l *errList, p fieldPath, key string) {
	if key == "" {
		l.add(p, "is required")
	} else if msgs := content.IsLabelKey(key); len(msgs) > 0 {
		l.add(p, "%q is invalid: %s", key, strings.Join(msgs, "; "))
	}
}

// validateLabelSelector checks a meta/v1 label selector; a nil one is fine.
func validateLabelSelector(l *errList, p fieldPath, s *LabelSelector) {
	if s == nil {
		return
	}
	for k, v := range s.MatchLabels {
		validateLabel(l, p.Field("matchLabels"), k, v)
	}
	for i, r := range s.MatchExpressions {
		rp := p.Field("matchExpressions").Index(i)
		if msgs := content.IsLabelKey(r.Key); len(msgs) > 0 {
			l.add(rp.Field("key"), "%q is invalid: %s", r.Key, strings.Join(msgs, "; "))
		}
		validateRequirement(l, rp, string(r.Operator), r.Values, false)
		for j, v := range r.Values {
			if msgs := content.IsLabelValue(v); len(msgs) > 0 {
				l.add(rp.Field("values").Index(j), "%q is invalid: %s", v, strings.Join(msgs, "; "))
			}
		}
	}
}

func validateToleration(l *errList, tp fieldPath, t Toleration) {
	if t.Key != "" {
		if msgs := content.IsLabelKey(t.Key); len(msgs) > 0 {
			l.add(tp.Field("key"), "%q is invalid: %s", t.Key, strings.Join(msgs, "; "))
		}
	}
	switch t.Operator {
	case "", TolerationOpEqual:
		if t.Key == "" {
			l.add(tp.Field("operator"), "must be Exists when key is empty (a toleration of every taint)")
		}
		if msgs := content.IsLabelValue(t.Value); len(msgs) > 0 {
			l.add(tp.Field("value"), "%q is invalid: %s", t.Value, strings.Join(msgs, "; "))
		}
	case TolerationOpExists:
		if t.Value != "" {
			l.add(tp.Field("value"), "must be empty when operator is Exists")
		}
	case "Lt", "Gt":
		l.unsupported(tp.Field("operator"), "%q is an alpha operator of Kubernetes 1.37 (feature gate TaintTolerationComparisonOperators, off by default); use Equal or Exists", t.Operator)
	default:
		l.add(tp.Field("operator"), "%q is not one of: Equal, Exists", t.Operator)
	}
	switch t.Effect {
	case "", TaintEffectNoSchedule, TaintEffectPreferNoSchedule, TaintEffectNoExecute:
	default:
		l.add(tp.Field("effect"), "%q is not one of: NoSchedule, PreferNoSchedule, NoExecute (or empty for all)", t.Effect)
	}
	if t.TolerationSeconds != nil && t.Effect != TaintEffectNoExecute {
		l.add(tp.Field("tolerationSeconds"), "may be set only when effect is NoExecute")
	}
}

// Warnings about fields that are accepted but have no effect on one node.
const (
	noEffectOneNode = "accepted with no effect: "
)

// SchedulingWarnings lists the scheduling fields of a defaulted pod that are
// accepted but have no effect on one node: each gets a warning (`validate`
// prints it, the agent records an event), never silence. Paths are
// relative to the pod (spec....); the caller adds file, document and line.
func SchedulingWarnings(s *PodSpec) FieldErrors {
	var out FieldErrors
	warn := func(p fieldPath, format string, args ...any) {
		out = append(out, &FieldError{Path: p.String(), Msg: noEffectOneNode + fmt.Sprintf(format, args...), Err: ErrWarning})
	}
	sp := fieldPath{}.Field("spec")
	if a := s.Affinity; a != nil {
		ap := sp.Field("affinity")
		if na := a.NodeAffinity; na != nil && len(na.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
			warn(ap.Field("nodeAffinity").Field("preferredDuringSchedulingIgnoredDuringExecution"),
				"a preference ranks nodes, and one node has none to rank (required node affinity is evaluated)")
		}
		if a.PodAffinity != nil {
			warn(ap.Field("podAffinity"), "pod affinity places pods next to others across nodes; this node runs every pod meant for it")
		}
		if a.PodAntiAffinity != nil {
			warn(ap.Field("podAntiAffinity"), "pod anti-affinity keeps pods apart across nodes; this node runs every pod meant for it, replicas included")
		}
	}
	if len(s.TopologySpreadConstraints) > 0 {
		warn(sp.Field("topologySpreadConstraints"), "there are no topology domains to spread over on one node")
	}
	if s.Priority != nil {
		warn(sp.Field("priority"), "there is no scheduling queue and no preemption on one node")
	}
	if s.PriorityClassName != "" {
		warn(sp.Field("priorityClassName"), "there is no scheduling queue and no preemption on one node")
	}
	if s.PreemptionPolicy != nil {
		warn(sp.Field("preemptionPolicy"), "no pod is ever preempted on one node")
	}
	if s.SchedulerName != "" && s.SchedulerName != DefaultSchedulerName {
		warn(sp.Field("schedulerName"), "no scheduler %q is consulted: the agent runs the pod itself when it is meant for this node", s.SchedulerName)
	}
	return out
}
