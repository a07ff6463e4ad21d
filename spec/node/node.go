// Package node is the node's identity — its name, labels and taints — and
// the evaluation of a pod's placement fields against it: whether a pod
// found in a manifest directory shared by many nodes is meant for this
// one.
//
// One model serves everything that speaks of the node: the agent's
// --node-labels and --node-taints (or the settings file) plus the labels
// Kubernetes' kubelet sets itself (kubernetes.io/hostname, kubernetes.io/os,
// kubernetes.io/arch and their beta.kubernetes.io twins) make a Node; the
// reconciler matches pods with it and the Kubernetes API serves it as the
// Node object. node.kubernetes.io/instance-type is a cloud provider's
// label and is not guessed: set it with --node-labels where it means
// something.
//
// Match follows kube-scheduler's filters for one node, in its order:
// nodeName, nodeSelector, required node affinity, then taints that are
// not tolerated (NoSchedule and NoExecute; PreferNoSchedule only ranks
// nodes and never keeps a pod off).
package node

import (
	"fmt"
	"maps"
	goruntime "runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"

	"github.com/pelagos-containers/pelagos-agent/spec"
)

// Well-known labels the agent sets on its node, as the kubelet does.
const (
	LabelHostname = "kubernetes.io/hostname"
	LabelOS       = "kubernetes.io/os"
	LabelArch     = "kubernetes.io/arch"
	labelBetaOS   = "beta.kubernetes.io/os"
	labelBetaArch = "beta.kubernetes.io/arch"
)

// Taint keeps pods that do not tolerate it off the node.
type Taint struct {
	Key    string           `json:"key"`
	Value  string           `json:"value,omitempty"`
	Effect spec.TaintEffect `json:"effect"`
}

// String is kubectl's notation: key=value:Effect (key:Effect without a
// value).
func (t Taint) String() string {
	if t.Value == "" {
		return t.Key + ":" + string(t.Effect)
	}
	return t.Key + "=" + t.Value + ":" + string(t.Effect)
}

// Node is the node as pods see it. Treat it as read-only once made.
type Node struct {
	Name   string
	Labels map[string]string // the well-known ones included
	Taints []Taint
}

// New makes the node from its name (the host name), the operator's labels
// and taints. The well-known labels are the agent's: setting one of them
// is refused, since a pod selecting on kubernetes.io/os must be able to
// trust it.
func New(name string, labels map[string]string, taints []Taint) (*Node, error) {
	if msgs := content.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return nil, fmt.Errorf("node name %q is invalid: %s (it is the host name; set a valid one)", name, strings.Join(msgs, "; "))
	}
	n := &Node{Name: name, Labels: map[string]string{
		LabelHostname: hostnameLabel(name),
		LabelOS:       goruntime.GOOS, labelBetaOS: goruntime.GOOS,
		LabelArch: goruntime.GOARCH, labelBetaArch: goruntime.GOARCH,
	}}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		v := labels[k]
		if msgs := content.IsLabelKey(k); len(msgs) > 0 {
			return nil, fmt.Errorf("node label %q: key is invalid: %s", k, strings.Join(msgs, "; "))
		}
		if msgs := content.IsLabelValue(v); len(msgs) > 0 {
			return nil, fmt.Errorf("node label %s=%s: value is invalid: %s", k, v, strings.Join(msgs, "; "))
		}
		if own, ok := n.Labels[k]; ok {
			return nil, fmt.Errorf("node label %s: set by the agent itself (%s=%s); leave it out", k, k, own)
		}
		n.Labels[k] = v
	}
	seen := map[string]bool{}
	for _, t := range taints {
		if err := checkTaint(t); err != nil {
			return nil, err
		}
		id := t.Key + ":" + string(t.Effect)
		if seen[id] {
			return nil, fmt.Errorf("node taint %s: the node already has a %s taint with key %s", t, t.Effect, t.Key)
		}
		seen[id] = true
		n.Taints = append(n.Taints, t)
	}
	return n, nil
}

// hostnameLabel is the kubelet's hostname label: the name, cut to a
// label value's length.
func hostnameLabel(name string) string {
	if len(name) > 63 {
		return strings.TrimRight(name[:63], "-.")
	}
	return name
}

// NameFromHostname is the kubelet's node name for a host name: trimmed
// and lower-cased.
func NameFromHostname(h string) string { return strings.ToLower(strings.TrimSpace(h)) }

// ParseTaints reads taints in kubectl's notation, key[=value]:Effect, as
// given to --node-taints.
func ParseTaints(specs []string) ([]Taint, error) {
	var out []Taint
	for _, s := range specs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		kv, effect, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("node taint %q: must be key[=value]:Effect, for example dedicated=gpu:NoSchedule", s)
		}
		k, v, _ := strings.Cut(kv, "=")
		t := Taint{Key: k, Value: v, Effect: spec.TaintEffect(effect)}
		if err := checkTaint(t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func checkTaint(t Taint) error {
	if msgs := content.IsLabelKey(t.Key); len(msgs) > 0 {
		return fmt.Errorf("node taint %q: key is invalid: %s", t.String(), strings.Join(msgs, "; "))
	}
	if msgs := content.IsLabelValue(t.Value); len(msgs) > 0 {
		return fmt.Errorf("node taint %q: value is invalid: %s", t.String(), strings.Join(msgs, "; "))
	}
	switch t.Effect {
	case spec.TaintEffectNoSchedule, spec.TaintEffectPreferNoSchedule, spec.TaintEffectNoExecute:
	default:
		return fmt.Errorf("node taint %q: effect %q is not one of NoSchedule, PreferNoSchedule, NoExecute", t.String(), t.Effect)
	}
	return nil
}

// Mismatch says why a pod is not meant for this node.
type Mismatch struct {
	// Field is the pod field that decided (spec.nodeName, spec.nodeSelector,
	// spec.affinity.nodeAffinity..., spec.tolerations).
	Field string
	// Message is for people: "nodeSelector disktype=ssd does not match
	// (the node has disktype=hdd)".
	Message string
}

func (m *Mismatch) Error() string { return m.Message }

// Match reports why the pod with this spec is not meant for the node, or
// nil when it is.
func (n *Node) Match(s *spec.PodSpec) *Mismatch {
	if s.NodeName != "" && s.NodeName != n.Name {
		return &Mismatch{Field: "spec.nodeName", Message: fmt.Sprintf("nodeName %s is another node (this is %s)", s.NodeName, n.Name)}
	}
	for _, k := range slices.Sorted(maps.Keys(s.NodeSelector)) {
		want := s.NodeSelector[k]
		if got, ok := n.Labels[k]; !ok || got != want {
			return &Mismatch{Field: "spec.nodeSelector", Message: fmt.Sprintf("nodeSelector %s=%s does not match (%s)", k, want, n.has(k))}
		}
	}
	if a := s.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		if why := n.matchSelector(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution); why != "" {
			return &Mismatch{Field: "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution",
				Message: "required node affinity does not match: " + why}
		}
	}
	for _, t := range n.Taints {
		if t.Effect == spec.TaintEffectPreferNoSchedule {
			continue
		}
		if ok, why := tolerated(t, s.Tolerations); !ok {
			return &Mismatch{Field: "spec.tolerations", Message: fmt.Sprintf("taint %s is not tolerated%s", t, why)}
		}
	}
	return nil
}

// has describes what the node has for a label key, for messages.
func (n *Node) has(k string) string {
	if v, ok := n.Labels[k]; ok {
		return fmt.Sprintf("the node has %s=%s", k, v)
	}
	return "the node has no label " + k
}

// matchSelector: the terms are ORed, a term's requirements ANDed, and an
// empty term matches nothing. It returns why no term matched, or "".
func (n *Node) matchSelector(sel *spec.NodeSelector) string {
	var why []string
	for i, t := range sel.NodeSelectorTerms {
		r := n.matchTerm(t)
		if r == "" {
			return ""
		}
		if len(sel.NodeSelectorTerms) > 1 {
			r = fmt.Sprintf("term %d: %s", i+1, r)
		}
		why = append(why, r)
	}
	if len(why) == 0 {
		return "no nodeSelectorTerms"
	}
	return strings.Join(why, "; ")
}

func (n *Node) matchTerm(t spec.NodeSelectorTerm) string {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return "an empty term matches no node"
	}
	for _, r := range t.MatchExpressions {
		v, ok := n.Labels[r.Key]
		if !requirementHolds(r, v, ok) {
			return fmt.Sprintf("%s (%s)", requirementString(r), n.has(r.Key))
		}
	}
	for _, r := range t.MatchFields {
		if r.Key != "metadata.name" || !requirementHolds(r, n.Name, true) {
			return fmt.Sprintf("field %s (the node is %s)", requirementString(r), n.Name)
		}
	}
	return ""
}

// requirementHolds evaluates one requirement against a label's value (ok
// false: the node has no such label), with Kubernetes' semantics: NotIn
// and DoesNotExist hold for a missing label, Gt and Lt compare integers
// and fail when either side is not one.
func requirementHolds(r spec.NodeSelectorRequirement, v string, ok bool) bool {
	switch r.Operator {
	case spec.NodeSelectorOpIn:
		return ok && slices.Contains(r.Values, v)
	case spec.NodeSelectorOpNotIn:
		return !ok || !slices.Contains(r.Values, v)
	case spec.NodeSelectorOpExists:
		return ok
	case spec.NodeSelectorOpDoesNotExist:
		return !ok
	case spec.NodeSelectorOpGt, spec.NodeSelectorOpLt:
		if !ok || len(r.Values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == spec.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}

func requirementString(r spec.NodeSelectorRequirement) string {
	switch r.Operator {
	case spec.NodeSelectorOpExists, spec.NodeSelectorOpDoesNotExist:
		return r.Key + " " + string(r.Operator)
	case spec.NodeSelectorOpGt, spec.NodeSelectorOpLt:
		return r.Key + " " + string(r.Operator) + " " + strings.Join(r.Values, ",")
	}
	vals := slices.Clone(r.Values)
	sort.Strings(vals)
	return r.Key + " " + string(r.Operator) + " (" + strings.Join(vals, ",") + ")"
}

// tolerated reports whether one of the tolerations matches the taint, and
// if not, anything more to say than "not tolerated".
func tolerated(t Taint, tols []spec.Toleration) (bool, string) {
	bounded := false
	for _, tol := range tols {
		if !matches(tol, t) {
			continue
		}
		// The taints here are permanent: a NoExecute toleration bounded
		// in time means the pod would be evicted once it ran out, and in
		// a cluster placed elsewhere; here it is not meant to run.
		if t.Effect == spec.TaintEffectNoExecute && tol.TolerationSeconds != nil {
			bounded = true
			continue
		}
		return true, ""
	}
	if bounded {
		return false, " for good (its toleration has tolerationSeconds, and the node's taints are permanent)"
	}
	return false, ""
}

// matches is Kubernetes' ToleratesTaint: an empty effect matches every
// effect, an empty key with Exists every taint, Exists any value, Equal
// (the default) the same value.
func matches(tol spec.Toleration, t Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key != "" && tol.Key != t.Key {
		return false
	}
	switch tol.Operator {
	case spec.TolerationOpExists:
		return true
	case "", spec.TolerationOpEqual:
		return tol.Value == t.Value
	}
	return false
}
