package node

import (
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/spec"
)

func mustNode(t *testing.T, labels map[string]string, taints ...string) *Node {
	t.Helper()
	ts, err := ParseTaints(taints)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New("edge-1", labels, ts)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func req(key string, op spec.NodeSelectorOperator, values ...string) spec.NodeSelectorRequirement {
	return spec.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

func affinity(terms ...spec.NodeSelectorTerm) *spec.Affinity {
	return &spec.Affinity{NodeAffinity: &spec.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &spec.NodeSelector{NodeSelectorTerms: terms}}}
}

func exprs(rs ...spec.NodeSelectorRequirement) spec.NodeSelectorTerm {
	return spec.NodeSelectorTerm{MatchExpressions: rs}
}

func fieldsTerm(rs ...spec.NodeSelectorRequirement) spec.NodeSelectorTerm {
	return spec.NodeSelectorTerm{MatchFields: rs}
}

func TestMatchPlacement(t *testing.T) {
	n := mustNode(t, map[string]string{"disktype": "hdd", "zone": "a", "cores": "8", "word": "eight"})
	for _, tc := range []struct {
		name string
		s    spec.PodSpec
		want string // "" = meant for the node; else a fragment of the message
	}{
		{"nothing asked", spec.PodSpec{}, ""},
		{"nodeName is this node", spec.PodSpec{NodeName: "edge-1"}, ""},
		{"nodeName is another node", spec.PodSpec{NodeName: "edge-2"}, "nodeName edge-2 is another node (this is edge-1)"},
		{"nodeName decides before nodeSelector", spec.PodSpec{NodeName: "edge-2", NodeSelector: map[string]string{"x": "y"}}, "nodeName edge-2"},
		{"nodeSelector matches", spec.PodSpec{NodeSelector: map[string]string{"disktype": "hdd", "zone": "a"}}, ""},
		{"nodeSelector value differs", spec.PodSpec{NodeSelector: map[string]string{"disktype": "ssd"}},
			"nodeSelector disktype=ssd does not match (the node has disktype=hdd)"},
		{"nodeSelector label missing", spec.PodSpec{NodeSelector: map[string]string{"gpu": "true"}},
			"nodeSelector gpu=true does not match (the node has no label gpu)"},
		{"nodeSelector: every pair must hold", spec.PodSpec{NodeSelector: map[string]string{"disktype": "hdd", "zone": "b"}}, "zone=b"},
		{"well-known os label", spec.PodSpec{NodeSelector: map[string]string{"kubernetes.io/os": goruntime.GOOS}}, ""},
		{"well-known hostname label is lower case", spec.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": "edge-1"}}, ""},
		{"well-known arch label, another arch", spec.PodSpec{NodeSelector: map[string]string{"kubernetes.io/arch": "s390x-not"}}, "kubernetes.io/arch"},

		{"In: value listed", spec.PodSpec{Affinity: affinity(exprs(req("zone", "In", "b", "a")))}, ""},
		{"In: value not listed", spec.PodSpec{Affinity: affinity(exprs(req("zone", "In", "c", "b")))},
			"required node affinity does not match: zone In (b,c) (the node has zone=a)"},
		{"In: label missing", spec.PodSpec{Affinity: affinity(exprs(req("rack", "In", "r1")))}, "the node has no label rack"},
		{"NotIn: value listed", spec.PodSpec{Affinity: affinity(exprs(req("zone", "NotIn", "a")))}, "zone NotIn (a)"},
		{"NotIn: value not listed", spec.PodSpec{Affinity: affinity(exprs(req("zone", "NotIn", "b")))}, ""},
		{"NotIn: label missing holds", spec.PodSpec{Affinity: affinity(exprs(req("rack", "NotIn", "r1")))}, ""},
		{"Exists: present", spec.PodSpec{Affinity: affinity(exprs(req("zone", "Exists")))}, ""},
		{"Exists: missing", spec.PodSpec{Affinity: affinity(exprs(req("rack", "Exists")))}, "rack Exists (the node has no label rack)"},
		{"DoesNotExist: missing holds", spec.PodSpec{Affinity: affinity(exprs(req("rack", "DoesNotExist")))}, ""},
		{"DoesNotExist: present", spec.PodSpec{Affinity: affinity(exprs(req("zone", "DoesNotExist")))}, "zone DoesNotExist (the node has zone=a)"},
		{"Gt: greater", spec.PodSpec{Affinity: affinity(exprs(req("cores", "Gt", "4")))}, ""},
		{"Gt: equal is not greater", spec.PodSpec{Affinity: affinity(exprs(req("cores", "Gt", "8")))}, "cores Gt 8 (the node has cores=8)"},
		{"Gt: label not an integer", spec.PodSpec{Affinity: affinity(exprs(req("word", "Gt", "4")))}, "word Gt 4"},
		{"Gt: label missing", spec.PodSpec{Affinity: affinity(exprs(req("rack", "Gt", "4")))}, "rack Gt 4"},
		{"Gt: negative bound", spec.PodSpec{Affinity: affinity(exprs(req("cores", "Gt", "-1")))}, ""},
		{"Lt: less", spec.PodSpec{Affinity: affinity(exprs(req("cores", "Lt", "16")))}, ""},
		{"Lt: equal is not less", spec.PodSpec{Affinity: affinity(exprs(req("cores", "Lt", "8")))}, "cores Lt 8"},
		{"unknown operator never holds", spec.PodSpec{Affinity: affinity(exprs(req("zone", "Near", "a")))}, "zone Near"},
		{"a term's requirements are ANDed", spec.PodSpec{Affinity: affinity(exprs(req("zone", "In", "a"), req("disktype", "In", "ssd")))},
			"disktype In (ssd)"},
		{"terms are ORed: the second matches", spec.PodSpec{Affinity: affinity(exprs(req("zone", "In", "b")), exprs(req("disktype", "In", "hdd")))}, ""},
		{"terms are ORed: none matches, each told", spec.PodSpec{Affinity: affinity(exprs(req("zone", "In", "b")), exprs(req("disktype", "In", "ssd")))},
			"term 1: zone In (b) (the node has zone=a); term 2: disktype In (ssd) (the node has disktype=hdd)"},
		{"an empty term matches no node", spec.PodSpec{Affinity: affinity(spec.NodeSelectorTerm{})}, "an empty term matches no node"},
		{"no terms match no node", spec.PodSpec{Affinity: affinity()}, "no nodeSelectorTerms"},
		{"matchFields name In", spec.PodSpec{Affinity: affinity(fieldsTerm(req("metadata.name", "In", "edge-1")))}, ""},
		{"matchFields name In another", spec.PodSpec{Affinity: affinity(fieldsTerm(req("metadata.name", "In", "edge-2")))},
			"field metadata.name In (edge-2) (the node is edge-1)"},
		{"matchFields name NotIn this", spec.PodSpec{Affinity: affinity(fieldsTerm(req("metadata.name", "NotIn", "edge-1")))}, "NotIn"},
		{"matchFields name NotIn another", spec.PodSpec{Affinity: affinity(fieldsTerm(req("metadata.name", "NotIn", "edge-2")))}, ""},
		{"matchFields other field never holds", spec.PodSpec{Affinity: affinity(fieldsTerm(req("metadata.uid", "In", "x")))}, "field metadata.uid"},
		{"fields and expressions are ANDed", spec.PodSpec{Affinity: affinity(spec.NodeSelectorTerm{
			MatchExpressions: []spec.NodeSelectorRequirement{req("zone", "In", "a")},
			MatchFields:      []spec.NodeSelectorRequirement{req("metadata.name", "In", "edge-2")}})}, "field metadata.name"},
		{"preferred affinity never keeps a pod off", spec.PodSpec{Affinity: &spec.Affinity{NodeAffinity: &spec.NodeAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []spec.PreferredSchedulingTerm{{Weight: 1, Preference: exprs(req("zone", "In", "z"))}}}}}, ""},
		{"pod anti-affinity never keeps a pod off", spec.PodSpec{Affinity: &spec.Affinity{PodAntiAffinity: &spec.PodAntiAffinity{}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := n.Match(&tc.s)
			switch {
			case tc.want == "" && m != nil:
				t.Fatalf("pod not meant for the node: %v", m)
			case tc.want != "" && m == nil:
				t.Fatalf("pod meant for the node; want a mismatch %q", tc.want)
			case tc.want != "" && !strings.Contains(m.Message, tc.want):
				t.Fatalf("mismatch %q; want it to say %q", m.Message, tc.want)
			}
		})
	}
}

func TestMatchTaints(t *testing.T) {
	tol := func(key string, op spec.TolerationOperator, value string, effect spec.TaintEffect) spec.Toleration {
		return spec.Toleration{Key: key, Operator: op, Value: value, Effect: effect}
	}
	secs := int64(300)
	for _, tc := range []struct {
		name   string
		taints []string
		tols   []spec.Toleration
		want   string
	}{
		{"no taints", nil, nil, ""},
		{"NoSchedule not tolerated", []string{"dedicated=gpu:NoSchedule"}, nil, "taint dedicated=gpu:NoSchedule is not tolerated"},
		{"NoExecute not tolerated", []string{"maintenance:NoExecute"}, nil, "taint maintenance:NoExecute is not tolerated"},
		{"PreferNoSchedule never keeps a pod off", []string{"spot=true:PreferNoSchedule"}, nil, ""},
		{"Equal, same value", []string{"dedicated=gpu:NoSchedule"}, []spec.Toleration{tol("dedicated", "Equal", "gpu", "NoSchedule")}, ""},
		{"operator defaults to Equal", []string{"dedicated=gpu:NoSchedule"}, []spec.Toleration{tol("dedicated", "", "gpu", "NoSchedule")}, ""},
		{"Equal, other value", []string{"dedicated=gpu:NoSchedule"}, []spec.Toleration{tol("dedicated", "Equal", "cpu", "NoSchedule")}, "not tolerated"},
		{"Equal, empty value matches a taint without one", []string{"maintenance:NoSchedule"}, []spec.Toleration{tol("maintenance", "Equal", "", "NoSchedule")}, ""},
		{"Exists, any value", []string{"dedicated=gpu:NoSchedule"}, []spec.Toleration{tol("dedicated", "Exists", "", "")}, ""},
		{"Exists, other key", []string{"dedicated=gpu:NoSchedule"}, []spec.Toleration{tol("other", "Exists", "", "")}, "not tolerated"},
		{"empty key with Exists tolerates everything", []string{"a=b:NoSchedule", "c:NoExecute"}, []spec.Toleration{tol("", "Exists", "", "")}, ""},
		{"empty effect matches every effect", []string{"dedicated=gpu:NoExecute"}, []spec.Toleration{tol("dedicated", "Equal", "gpu", "")}, ""},
		{"other effect does not match", []string{"dedicated=gpu:NoExecute"}, []spec.Toleration{tol("dedicated", "Equal", "gpu", "NoSchedule")}, "not tolerated"},
		{"every taint must be tolerated", []string{"a=b:NoSchedule", "c=d:NoSchedule"}, []spec.Toleration{tol("a", "Equal", "b", "")}, "taint c=d:NoSchedule"},
		{"NoExecute bounded in time is not tolerated here", []string{"maintenance:NoExecute"},
			[]spec.Toleration{{Key: "maintenance", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: &secs}}, "is not tolerated for good"},
		{"a bounded toleration beside an unbounded one", []string{"maintenance:NoExecute"},
			[]spec.Toleration{{Key: "maintenance", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: &secs}, tol("maintenance", "Exists", "", "")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := mustNode(t, nil, tc.taints...)
			m := n.Match(&spec.PodSpec{Tolerations: tc.tols})
			switch {
			case tc.want == "" && m != nil:
				t.Fatalf("pod not meant for the node: %v", m)
			case tc.want != "" && m == nil:
				t.Fatalf("pod meant for the node; want %q", tc.want)
			case tc.want != "" && (!strings.Contains(m.Message, tc.want) || m.Field != "spec.tolerations"):
				t.Fatalf("mismatch %+v; want it to say %q", m, tc.want)
			}
		})
	}
}

func TestNewNode(t *testing.T) {
	n, err := New("edge-1", map[string]string{"site": "lab"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"site": "lab", LabelHostname: "edge-1", LabelOS: goruntime.GOOS, LabelArch: goruntime.GOARCH,
		"beta.kubernetes.io/os": goruntime.GOOS, "beta.kubernetes.io/arch": goruntime.GOARCH} {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if _, ok := n.Labels["node.kubernetes.io/instance-type"]; ok {
		t.Error("instance-type is a cloud provider's label and must not be guessed")
	}
	for _, tc := range []struct {
		name   string
		node   string
		labels map[string]string
		taints []Taint
		want   string
	}{
		{"well-known label is the agent's", "n", map[string]string{"kubernetes.io/os": "windows"}, nil, "set by the agent itself"},
		{"bad label key", "n", map[string]string{"a b": "c"}, nil, `node label "a b": key is invalid`},
		{"bad label value", "n", map[string]string{"a": "b c"}, nil, "value is invalid"},
		{"bad taint effect", "n", nil, []Taint{{Key: "a", Effect: "Sometimes"}}, "not one of NoSchedule"},
		{"same key and effect twice", "n", nil, []Taint{{Key: "a", Value: "1", Effect: "NoSchedule"}, {Key: "a", Value: "2", Effect: "NoSchedule"}}, "already has"},
		{"bad node name", "under_score", nil, nil, "node name"},
		{"upper-case node name (NameFromHostname lowers it)", "Edge-1", nil, nil, "node name"},
	} {
		if _, err := New(tc.node, tc.labels, tc.taints); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}

func TestParseTaints(t *testing.T) {
	got, err := ParseTaints([]string{"dedicated=gpu:NoSchedule", " maintenance:NoExecute", ""})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (Taint{"dedicated", "gpu", "NoSchedule"}) || got[1] != (Taint{"maintenance", "", "NoExecute"}) {
		t.Fatalf("got %+v", got)
	}
	if got[0].String() != "dedicated=gpu:NoSchedule" || got[1].String() != "maintenance:NoExecute" {
		t.Errorf("String: %s, %s", got[0], got[1])
	}
	for _, bad := range []string{"dedicated=gpu", "dedicated=gpu:Never", "=x:NoSchedule", "a=b c:NoSchedule"} {
		if _, err := ParseTaints([]string{bad}); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestNameFromHostname(t *testing.T) {
	if got := NameFromHostname(" Edge-1.Lab\n"); got != "edge-1.lab" {
		t.Errorf("got %q", got)
	}
}
