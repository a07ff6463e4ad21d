package kubeapi

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

// writeEnv is a facade with a write directory and a read-only manifest
// directory, both watched and merged as the agent does.
type writeEnv struct {
	*testEnv
	writeDir, roDir string
}

func newWriteEnv(t *testing.T) *writeEnv {
	t.Helper()
	w := &writeEnv{writeDir: t.TempDir(), roDir: t.TempDir()}
	writer, err := NewWriter(w.writeDir, manifestOpts())
	if err != nil {
		t.Fatal(err)
	}
	w.testEnv = newTestEnv(t, func(c *Config) { c.Writes = writer })
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	load := func(manifest.Load) {
		mu.Lock()
		defer mu.Unlock()
		var files []*manifest.FileResult
		for _, d := range []string{w.roDir, w.writeDir} {
			snap, err := manifest.LoadDir(d, manifestOpts())
			if err != nil {
				t.Error(err)
				return
			}
			for _, fr := range snap.Files {
				files = append(files, fr)
			}
		}
		snap := manifest.Merge(files...)
		w.rec.SetDesired(w.tr.FromSnapshot(snap, nil))
		w.srv.SetSnapshot(snap)
	}
	var wg sync.WaitGroup
	for _, d := range []string{w.roDir, w.writeDir} {
		wt, err := manifest.NewWatcher(d, manifestOpts(), manifest.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = wt.Run(ctx, load) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

func (w *writeEnv) send(method, path, contentType, body string) response {
	w.t.Helper()
	return w.req("root", GroupAdmin, method, path, contentType, body)
}

const createPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"api","labels":{"a":"1"}},
 "spec":{"containers":[{"name":"c","image":"busybox:1"}]}}`

func TestWrites(t *testing.T) {
	w := newWriteEnv(t)
	if err := os.WriteFile(filepath.Join(w.roDir, "ro.yaml"), []byte(onePod("ro", "app: x")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.writeDir, "multi.yaml"), []byte(onePod("m1", "app: x")+"---\n"+onePod("m2", "app: x")), 0o644); err != nil {
		t.Fatal(err)
	}
	w.runningPod("ro")
	w.runningPod("m1")
	pods := "/api/v1/namespaces/default/pods"
	file := filepath.Join(w.writeDir, "pod_default_api.yaml")

	// Create: a manifest file, and the pod as served.
	r := w.send("POST", pods, "application/json", createPod)
	var p corev1.Pod
	if r.code != http.StatusCreated || json.Unmarshal(r.body, &p) != nil || p.Name != "api" || p.Spec.NodeName != "node1" || p.UID == "" {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), "image: busybox:1") {
		t.Fatalf("written manifest: %v\n%s", err, b)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o644 {
		t.Errorf("manifest mode %v", st.Mode().Perm())
	}
	if r := w.send("POST", pods, "application/json", createPod); r.code != http.StatusConflict || r.status().Reason != metav1.StatusReasonAlreadyExists {
		t.Errorf("create again: %d %s", r.code, r.body)
	}
	w.runningPod("api")

	// The three patch kinds kubectl sends, and a replace.
	patches := []struct{ ct, body, want string }{
		{"application/strategic-merge-patch+json", `{"spec":{"containers":[{"name":"c","args":["smp"]}]}}`, "- smp"},
		{"application/merge-patch+json", `{"metadata":{"labels":{"b":"2"}}}`, "b: \"2\""},
		{"application/json-patch+json", `[{"op":"replace","path":"/spec/containers/0/args/0","value":"jsonpatch"}]`, "- jsonpatch"},
	}
	for _, pt := range patches {
		r := w.send("PATCH", pods+"/api", pt.ct, pt.body)
		b, _ := os.ReadFile(file)
		if r.code != http.StatusOK || !strings.Contains(string(b), pt.want) {
			t.Errorf("%s: %d %s\n%s", pt.ct, r.code, r.body, b)
		}
		if strings.Contains(string(b), "resourceVersion") || strings.Contains(string(b), "nodeName") || strings.Contains(string(b), "status:") ||
			strings.Contains(string(b), "pelagos.io/") {
			t.Errorf("%s: server fields written back:\n%s", pt.ct, b)
		}
	}
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), "image: busybox:1") || !strings.Contains(string(b), "a: \"1\"") {
		t.Errorf("patches lost fields:\n%s", b)
	}
	put := strings.Replace(createPod, `"image":"busybox:1"`, `"image":"busybox:2"`, 1)
	if r := w.send("PUT", pods+"/api", "application/json", put); r.code != http.StatusOK {
		t.Errorf("replace: %d %s", r.code, r.body)
	}
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), "busybox:2") {
		t.Errorf("replace did not write:\n%s", b)
	}

	// Refusals.
	refusals := []struct {
		name, method, path, ct, body string
		code                         int
		msg                          string
	}{
		{"invalid", "PATCH", pods + "/api", "application/merge-patch+json", `{"spec":{"restartPolicy":"Sometimes"}}`, 422, "spec.restartPolicy"},
		{"unknown field", "POST", pods, "application/json", strings.Replace(createPod, `"name":"c"`, `"name":"c","imagee":"x"`, 1), 409, ""},
		{"unknown field, new pod", "POST", pods, "application/json", strings.Replace(strings.Replace(createPod, `"name":"api"`, `"name":"typo"`, 1), `"name":"c"`, `"name":"c","imagee":"x"`, 1), 422, "imagee"},
		{"a read-only pod", "DELETE", pods + "/ro", "", "", 405, "ro.yaml"},
		{"a read-only pod, patched", "PATCH", pods + "/ro", "application/merge-patch+json", `{"metadata":{"labels":{"b":"2"}}}`, 405, "ro.yaml"},
		{"a multi-document file", "DELETE", pods + "/m1", "", "", 409, "multi.yaml"},
		{"server-side apply", "PATCH", pods + "/api", "application/apply-patch+yaml", "{}", 415, "server-side apply"},
		{"name mismatch", "PUT", pods + "/other", "application/json", put, 400, "does not match"},
		{"namespace mismatch", "POST", "/api/v1/namespaces/team/pods", "application/json", createPod, 201, ""},
		{"wrong kind", "POST", pods, "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`, 400, "not a Pod"},
		{"a node", "DELETE", "/api/v1/nodes/node1", "", "", 405, "read-only"},
		{"a missing pod", "DELETE", pods + "/nope", "", "", 404, `pods "nope" not found`},
		{"not YAML", "POST", pods, "application/yaml", "{", 400, "not YAML"},
	}
	for _, c := range refusals {
		r := w.send(c.method, c.path, c.ct, c.body)
		msg := string(r.body)
		if r.code >= 300 {
			msg = r.status().Message
		}
		if r.code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %s, want %d %q", c.name, r.code, r.body, c.code, c.msg)
		}
	}
	if _, err := os.Stat(filepath.Join(w.writeDir, "pod_default_typo.yaml")); !os.IsNotExist(err) {
		t.Errorf("an invalid pod was written: %v", err)
	}
	// The namespace comes from the URL when the body has none.
	if _, err := os.Stat(filepath.Join(w.writeDir, "pod_team_api.yaml")); err != nil {
		t.Errorf("create in namespace team: %v", err)
	}
	// A dry run writes nothing.
	if r := w.send("POST", pods+"?dryRun=All", "application/json", strings.Replace(createPod, `"name":"api"`, `"name":"dry"`, 1)); r.code != http.StatusCreated {
		t.Errorf("dry run: %d %s", r.code, r.body)
	}
	if _, err := os.Stat(filepath.Join(w.writeDir, "pod_default_dry.yaml")); !os.IsNotExist(err) {
		t.Errorf("a dry run wrote: %v", err)
	}
	// Delete: the file goes; the pod is answered as being deleted, or
	// (the fake runtime is quick) as gone.
	r = w.send("DELETE", pods+"/api", "", "")
	var answer struct {
		Kind     string
		Status   any
		Metadata struct{ Name string }
	}
	if r.code != http.StatusOK || json.Unmarshal(r.body, &answer) != nil ||
		!(answer.Kind == "Pod" && answer.Metadata.Name == "api" || answer.Kind == "Status" && answer.Status == "Success") {
		t.Errorf("delete: %d %s", r.code, r.body)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("delete left the file: %v", err)
	}
	// ConfigMaps and Secrets too; a Secret's data never reaches a viewer.
	cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"k":"v"}}`
	if r := w.send("POST", "/api/v1/namespaces/default/configmaps", "application/json", cm); r.code != http.StatusCreated {
		t.Errorf("create configmap: %d %s", r.code, r.body)
	}
	sec := `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"tok"},"stringData":{"k":"hunter2"}}`
	if r := w.send("POST", "/api/v1/namespaces/default/secrets", "application/json", sec); r.code != http.StatusCreated {
		t.Errorf("create secret: %d %s", r.code, r.body)
	}
	var s corev1.Secret
	w.getJSON("/api/v1/namespaces/default/secrets/tok", &s)
	if string(s.Data["k"]) != "hunter2" || s.Type != corev1.SecretTypeOpaque {
		t.Errorf("secret as served: %+v", s)
	}
	if r := w.req("pelagos-viewer", GroupViewer, "GET", "/api/v1/namespaces/default/secrets/tok", "", ""); r.code != http.StatusForbidden ||
		strings.Contains(string(r.body), "aHVudGVyMg") || strings.Contains(string(r.body), "hunter2") {
		t.Errorf("viewer reads a secret: %d %s", r.code, r.body)
	}
	if r := w.send("DELETE", "/api/v1/namespaces/default/configmaps/cfg", "", ""); r.code != http.StatusOK || r.status().Status != metav1.StatusSuccess {
		t.Errorf("delete configmap: %d %s", r.code, r.body)
	}
}

func TestReadOnlyByDefault(t *testing.T) {
	e := newTestEnv(t)
	r := e.req("root", GroupAdmin, "POST", "/api/v1/namespaces/default/pods", "application/json", createPod)
	if r.code != http.StatusMethodNotAllowed || !strings.Contains(r.status().Message, "--api-write-dir") {
		t.Errorf("write without a write directory: %d %s", r.code, r.body)
	}
}

// TestWrittenNumbersAreExact: a write keeps int64 values digit for digit
// (through float64, 9223372036854775807 would become ...808).
func TestWrittenNumbersAreExact(t *testing.T) {
	s := New(Config{NodeName: "n"})
	var obj map[string]any
	body := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"terminationGracePeriodSeconds":9223372036854775807,` +
		`"securityContext":{"runAsUser":9007199254740993},"containers":[{"name":"c","image":"i"}]}}`
	if err := decodeObject([]byte(body), &obj); err != nil {
		t.Fatal(err)
	}
	y, err := s.manifestOf(obj, s.resources["/v1/pods"])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"terminationGracePeriodSeconds: 9223372036854775807", "runAsUser: 9007199254740993"} {
		if !strings.Contains(string(y), want) {
			t.Errorf("written manifest lacks %q:\n%s", want, y)
		}
	}
}

func TestDocumentsOfAFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) *manifest.FileResult {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return manifest.LoadFile(p, manifestOpts())
	}
	broken := strings.Replace(onePod("a", "app: x"), "image: busybox:1", "image: busybox:1, imagee: x, restartPolicy: x", 1)
	for name, c := range map[string]struct {
		content string
		want    int
	}{
		"one.yaml":        {onePod("a", "app: x"), 1},
		"one-broken.yaml": {broken, 1},
		"two.yaml":        {onePod("a", "app: x") + "---\n" + onePod("b", "app: x"), 2},
		"two-broken.yaml": {onePod("a", "app: x") + "---\n" + broken, 2},
		"not-yaml.yaml":   {"{", 1},
	} {
		if got := documents(write(name, c.content)); got != c.want {
			t.Errorf("%s: %d documents, want %d", name, got, c.want)
		}
	}
}
