package spec

import (
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

// podResourcesPod is a pod with pod-level resources and two containers,
// each part written by the cases below.
func podResourcesPod(podRes, ctr1, ctr2, init string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n" + podRes +
		"  containers:\n  - name: a\n    image: busybox:1.36\n" + ctr1 +
		"  - name: b\n    image: busybox:1.36\n" + ctr2 + init
}

func TestPodLevelResourcesValidation(t *testing.T) {
	tests := []struct {
		name, pod string
		want      []wantErr
		line      int // of the first error, when set
	}{
		{"the docs' example", podResourcesPod(`  resources:
    limits: {cpu: "1", memory: 200Mi}
    requests: {cpu: "1", memory: 100Mi}
`, `    resources:
      limits: {cpu: "0.5", memory: 100Mi}
      requests: {cpu: "0.5", memory: 50Mi}
`, "", ""), nil, 0},
		{"limits only, containers without", podResourcesPod("  resources:\n    limits: {memory: 64Mi}\n", "", "", ""), nil, 0},
		{"requests only", podResourcesPod("  resources:\n    requests: {cpu: 100m}\n", "", "", ""), nil, 0},
		{"empty", podResourcesPod("  resources: {}\n", "", "", ""), nil, 0},
		{"negative request", podResourcesPod("  resources:\n    requests: {cpu: -1}\n", "", "", ""),
			[]wantErr{{"spec.resources.requests.cpu", ErrInvalid, "-1 must be positive"}}, 7},
		{"zero limit", podResourcesPod("  resources:\n    limits: {memory: \"0\"}\n", "", "", ""),
			[]wantErr{{"spec.resources.limits.memory", ErrInvalid, "0 must be positive"}}, 7},
		{"cpu out of range", podResourcesPod("  resources:\n    limits:\n      cpu: \"200000000\"\n", "", "", ""),
			[]wantErr{{"spec.resources.limits.cpu", ErrInvalid, "out of range: must be at most"}}, 8},
		{"request above limit", podResourcesPod("  resources:\n    limits: {memory: 64Mi}\n    requests: {memory: 128Mi}\n", "", "", ""),
			[]wantErr{{"spec.resources.requests.memory", ErrInvalid, "request 128Mi is greater than the limit 64Mi"}}, 8},
		{"hugepages", podResourcesPod("  resources:\n    limits:\n      hugepages-2Mi: 4Mi\n", "", "", ""),
			[]wantErr{{"spec.resources.limits.hugepages-2Mi", ErrUnsupported, "pod-level hugepages-2Mi is not supported"}}, 8},
		{"ephemeral storage", podResourcesPod("  resources:\n    requests:\n      ephemeral-storage: 1Gi\n", "", "", ""),
			[]wantErr{{"spec.resources.requests.ephemeral-storage", ErrInvalid, "cannot be set for the whole pod: use cpu or memory"}}, 8},
		{"claims", podResourcesPod("  resources:\n    claims: [{name: gpu}]\n", "", "", ""),
			[]wantErr{{"spec.resources.claims", ErrUnsupported, "not supported"}}, 7},
		{"a container's limit above the pod's", podResourcesPod("  resources:\n    limits: {memory: 64Mi}\n",
			"", "    resources:\n      limits: {memory: 128Mi}\n", ""),
			[]wantErr{{"spec.resources.limits.memory", ErrInvalid, `64Mi is less than the limit 128Mi of container "b" (spec.containers[1].resources.limits.memory)`}}, 7},
		{"an init container's limit above the pod's", podResourcesPod("  resources:\n    limits: {cpu: 500m}\n", "", "",
			"  initContainers:\n  - name: i\n    image: busybox:1.36\n    resources:\n      limits: {cpu: \"1\"}\n"),
			[]wantErr{{"spec.resources.limits.cpu", ErrInvalid, `500m is less than the limit 1 of container "i" (spec.initContainers[0]`}}, 7},
		{"the containers request more than the pod", podResourcesPod("  resources:\n    requests: {memory: 100Mi}\n",
			"    resources:\n      requests: {memory: 60Mi}\n", "    resources:\n      requests: {memory: 60Mi}\n", ""),
			[]wantErr{{"spec.resources.requests.memory", ErrInvalid, "100Mi is less than the containers request together (120Mi)"}}, 7},
		{"a sidecar adds, an init container alone does not", podResourcesPod("  resources:\n    requests: {memory: 100Mi}\n",
			"    resources:\n      requests: {memory: 40Mi}\n", "",
			"  initContainers:\n  - name: i\n    image: busybox:1.36\n    resources:\n      requests: {memory: 90Mi}\n"+
				"  - name: s\n    image: busybox:1.36\n    restartPolicy: Always\n    resources:\n      requests: {memory: 50Mi}\n"),
			nil, 0},
		{"a sidecar started before an init container counts beside it", podResourcesPod("  resources:\n    requests: {memory: 100Mi}\n",
			"", "",
			"  initContainers:\n  - name: s\n    image: busybox:1.36\n    restartPolicy: Always\n    resources:\n      requests: {memory: 50Mi}\n"+
				"  - name: i\n    image: busybox:1.36\n    resources:\n      requests: {memory: 60Mi}\n"),
			[]wantErr{{"spec.resources.requests.memory", ErrInvalid, "(110Mi)"}}, 7},
		{"a defaulted pod request follows the containers and stays within the limit", podResourcesPod("  resources:\n    limits: {memory: 100Mi}\n",
			"    resources:\n      requests: {memory: 150Mi}\n", "", ""),
			[]wantErr{{"spec.resources.limits.memory", ErrInvalid, "100Mi is less than the containers request together (150Mi)"}}, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, docs := docErrs(t, tc.pod)
			checkErrs(t, got, tc.want)
			if tc.line != 0 {
				if got[0].Line != tc.line || got[0].File != "test.yaml" {
					t.Errorf("error at %s line %d, want test.yaml line %d: %v", got[0].File, got[0].Line, tc.line, got[0])
				}
			}
			if tc.want == nil && (len(docs) != 1 || docs[0].Pod == nil) {
				t.Fatalf("not decoded: %+v", docs)
			}
		})
	}
}

func TestPodLevelResourcesDefaults(t *testing.T) {
	q := resource.MustParse
	tests := []struct {
		name, podRes, ctr string
		want              ResourceList // pod-level requests after defaults
	}{
		{"a limit without a request: the limit", "  resources:\n    limits: {cpu: \"2\", memory: 1Gi}\n", "",
			ResourceList{ResourceCPU: q("2"), ResourceMemory: q("1Gi")}},
		{"containers request: their sum", "  resources:\n    limits: {memory: 1Gi}\n",
			"    resources:\n      requests: {memory: 100Mi, cpu: 100m}\n",
			ResourceList{ResourceCPU: q("100m"), ResourceMemory: q("100Mi")}},
		{"a request set stays", "  resources:\n    limits: {memory: 1Gi}\n    requests: {memory: 200Mi}\n", "",
			ResourceList{ResourceMemory: q("200Mi")}},
		{"requests without limits are not filled", "  resources:\n    requests: {memory: 200Mi}\n",
			"    resources:\n      requests: {cpu: 100m}\n", ResourceList{ResourceMemory: q("200Mi")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, docs := docErrs(t, podResourcesPod(tc.podRes, tc.ctr, "", ""))
			if len(got) != 0 {
				t.Fatal(got)
			}
			req := docs[0].Pod.Spec.Resources.Requests
			if len(req) != len(tc.want) {
				t.Fatalf("requests %v, want %v", req, tc.want)
			}
			for name, w := range tc.want {
				if g := req[name]; g.Cmp(w) != 0 {
					t.Errorf("requests.%s = %s, want %s", name, g.String(), w.String())
				}
			}
		})
	}
}

// The Kubernetes documentation's pod-level resources example, which
// validate refused before pod-level resources were implemented.
func TestPodLevelResourcesDocsExample(t *testing.T) {
	const file = "testdata/corpus/k8s-docs-pod-level-resources.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "Pending:") {
		t.Errorf("%s is still marked Pending", file)
	}
	docs, errs := ParseFile(file, data, Limits{})
	if len(errs) != 0 || len(docs) != 1 || !docs[0].Valid() {
		t.Fatalf("refused: %v %v", errs, docs)
	}
	s := docs[0].Pod.Spec
	if !s.PodLevelResourcesSet() {
		t.Fatal("pod-level resources not seen")
	}
	if lim, _ := s.PodLimit(ResourceMemory); lim.Cmp(resource.MustParse("200Mi")) != 0 {
		t.Errorf("pod memory limit %s, want 200Mi", lim.String())
	}
}

func TestPodLevelResourcesHash(t *testing.T) {
	parse := func(t *testing.T, src string) *Pod {
		t.Helper()
		docs, errs := ParseFile("h.yaml", []byte(src), Limits{})
		if len(errs) != 0 || len(docs) != 1 || docs[0].Pod == nil {
			t.Fatalf("%v %v", errs, docs)
		}
		return docs[0].Pod
	}
	none := parse(t, podResourcesPod("", "", "", ""))
	a := parse(t, podResourcesPod("  resources:\n    limits: {memory: 64Mi}\n", "", "", ""))
	same := parse(t, podResourcesPod("  resources:\n    limits: {memory: 65536Ki}\n    requests: {memory: 64Mi}\n", "", "", ""))
	b := parse(t, podResourcesPod("  resources:\n    limits: {memory: 65Mi}\n", "", "", ""))
	if SandboxHash(a) == SandboxHash(none) || SandboxHash(a) == SandboxHash(b) {
		t.Error("a pod-level limit change keeps the sandbox hash")
	}
	if SandboxHash(a) != SandboxHash(same) {
		t.Error("the same limit spelled differently, with its default request written out, changes the sandbox hash")
	}
	// Pods without spec.resources keep the hash they had before the field
	// existed, so an upgrade restarts nothing.
	if h := SandboxHash(none); !strings.HasPrefix(h, SandboxHashVersion+"-") {
		t.Errorf("hash %s", h)
	}
	for i := range none.Spec.Containers {
		if ContainerHash(none, &none.Spec.Containers[i]) != ContainerHash(a, &a.Spec.Containers[i]) {
			t.Error("a pod-level change changes a container hash: the sandbox hash covers it")
		}
	}
}
