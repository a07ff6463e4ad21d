package workload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/spec"
)

func TestNames(t *testing.T) {
	a, b := suffix("default", "web", "h1", "0"), suffix("default", "web", "h1", "1")
	if a == b || len(a) != 5 || a != suffix("default", "web", "h1", "0") {
		t.Errorf("suffixes %q %q: want five characters, stable, distinct per replica", a, b)
	}
	for _, s := range []string{a, b, safeEncode("1234567890")} {
		if strings.Trim(s, alphabet) != "" {
			t.Errorf("%q uses characters outside Kubernetes' alphabet", s)
		}
	}
	long := strings.Repeat("a", 100)
	if n := generatedName(long+"-", a); len(n) != 63 || !strings.HasSuffix(n, a) {
		t.Errorf("generated name %q: want the base cut to 58 and the suffix kept", n)
	}
}

func workloadOf(t *testing.T, src string) spec.Workload {
	t.Helper()
	docs, _ := spec.ParseFile("w.yaml", []byte(src), spec.Limits{})
	if len(docs) != 1 || !docs[0].Valid() {
		t.Fatalf("%v", docs[0].Errs)
	}
	return docs[0].Workload
}

// The template hash moves with what restarts a pod or a container, and
// only with that: a label or the grace period is applied in place.
func TestTemplateHash(t *testing.T) {
	base := deployment("web", 1, "busybox:1", "")
	h := templateHash(workloadOf(t, base))
	for _, tc := range []struct {
		name    string
		src     string
		changes bool
	}{
		{"same bytes", base, false},
		{"another replica count", deployment("web", 5, "busybox:1", ""), false},
		{"a label", strings.Replace(base, "labels: {app: web}", "labels: {app: web, tier: x}", 1), false},
		{"the grace period", strings.Replace(base, "      containers:", "      terminationGracePeriodSeconds: 5\n      containers:", 1), false},
		{"a default written out", strings.Replace(base, "      containers:", "      restartPolicy: Always\n      dnsPolicy: ClusterFirst\n      containers:", 1), false},
		{"the image", deployment("web", 1, "busybox:2", ""), true},
		{"an env var", strings.Replace(base, "image: busybox:1\n", "image: busybox:1\n        env: [{name: A, value: b}]\n", 1), true},
		{"a hostPort", strings.Replace(base, "image: busybox:1\n", "image: busybox:1\n        ports: [{containerPort: 80, hostPort: 80}]\n", 1), true},
	} {
		if got := templateHash(workloadOf(t, tc.src)) != h; got != tc.changes {
			t.Errorf("%s: hash changed %v, want %v", tc.name, got, tc.changes)
		}
	}
}

func TestPortClaims(t *testing.T) {
	pod := func(ip string, port int32, proto spec.Protocol) *spec.Pod {
		return &spec.Pod{Spec: spec.PodSpec{Containers: []spec.Container{{Ports: []spec.ContainerPort{
			{ContainerPort: 80, HostPort: port, HostIP: ip, Protocol: proto}, {ContainerPort: 81}}}}}}
	}
	for _, tc := range []struct {
		name       string
		first, sec *spec.Pod
		clash      bool
	}{
		{"same port", pod("", 8080, "TCP"), pod("", 8080, "TCP"), true},
		{"other protocol", pod("", 8080, "TCP"), pod("", 8080, "UDP"), false},
		{"other port", pod("", 8080, "TCP"), pod("", 8081, "TCP"), false},
		{"two addresses", pod("127.0.0.1", 8080, "TCP"), pod("127.0.0.2", 8080, "TCP"), false},
		{"an address and the wildcard", pod("127.0.0.1", 8080, "TCP"), pod("0.0.0.0", 8080, "TCP"), true},
		{"the wildcard and an address", pod("", 8080, "TCP"), pod("127.0.0.1", 8080, "TCP"), true},
		{"no hostPort", pod("", 0, "TCP"), pod("", 0, "TCP"), false},
	} {
		h := ports{}
		h.claim("a", tc.first)
		holder, port := h.claim("b", tc.sec)
		if (holder != "") != tc.clash || (tc.clash && (holder != "a" || !strings.HasPrefix(port, "8080/"))) {
			t.Errorf("%s: holder %q port %q, want clash %v", tc.name, holder, port, tc.clash)
		}
	}
}

func TestDirStore(t *testing.T) {
	s := DirStore{Dir: filepath.Join(t.TempDir(), "workloads")}
	if b, err := s.Load("Job_default_x"); b != nil || err != nil {
		t.Fatalf("missing record: %q %v", b, err)
	}
	if err := s.Save("Job_default_x", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Save("Job_default_x", []byte(`{"a":2}`)); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Load("Job_default_x"); string(b) != `{"a":2}` || err != nil {
		t.Fatalf("record %q %v", b, err)
	}
	entries, _ := os.ReadDir(s.Dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries: a temporary file was left", len(entries))
	}
	if err := s.Delete("Job_default_x"); err != nil || s.Delete("Job_default_x") != nil {
		t.Fatalf("delete: %v", err)
	}
}
