package kubeapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/spec"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

// testEnv is the facade over a real reconciler driving the fake runtime,
// served by httptest. Requests carry their identity in X-Test-User and
// X-Test-Groups.
type testEnv struct {
	t      *testing.T
	f      *fake.Runtime
	rec    *reconcile.Reconciler
	srv    *Server
	hs     *httptest.Server
	logDir string
	tr     reconcile.Translator
}

// logBackend points container logs at files the test writes (the fake
// runtime writes none).
type logBackend struct {
	*reconcile.Reconciler
	logDir string
}

func (b logBackend) Observe(ctx context.Context, key runtime.PodKey) (reconcile.ObservedPod, error) {
	obs, err := b.Reconciler.Observe(ctx, key)
	for _, c := range obs.Containers {
		c.LogPath = filepath.Join(b.logDir, c.ID+".log")
	}
	return obs, err
}

func testIdentity(r *http.Request) (Identity, bool) {
	u := r.Header.Get("X-Test-User")
	if u == "" {
		return Identity{}, false
	}
	return Identity{User: u, Groups: strings.Split(r.Header.Get("X-Test-Groups"), ",")}, true
}

func newTestEnv(t *testing.T, tweak ...func(*Config)) *testEnv {
	t.Helper()
	f := fake.New()
	changes := NewChanges()
	rec := reconcile.New(reconcile.Config{Runtime: f, Images: f, Log: zerolog.Nop(), Resync: time.Hour,
		Hooks: reconcile.Hooks{Prober: changes.Chain(nil)}})
	ctx, cancel := context.WithCancel(context.Background())
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Run(ctx) }()
	rec.SetDesired(reconcile.DesiredSet{})
	e := &testEnv{t: t, f: f, rec: rec, logDir: t.TempDir(), tr: reconcile.Translator{NodeName: "node1"}}
	cfg := Config{Backend: logBackend{rec, e.logDir}, Runtime: f, NodeName: "node1", Version: "1.2.3", Changes: changes, Log: zerolog.Nop()}
	for _, tw := range tweak {
		tw(&cfg)
	}
	e.srv = New(cfg)
	srvDone := make(chan struct{})
	go func() { e.srv.Run(ctx); close(srvDone) }()
	e.hs = httptest.NewServer(WithIdentity(e.srv.Handler(), testIdentity))
	t.Cleanup(func() {
		e.hs.CloseClientConnections()
		e.hs.Close()
		cancel()
		<-recDone
		<-srvDone
	})
	e.eventually("the reconciler is ready", func() error {
		if !rec.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	return e
}

// podSpec decodes one manifest as the loader does (defaults, validation).
func podSpec(t *testing.T, manifest string) *spec.Pod {
	t.Helper()
	docs, errs := spec.ParseFile("test.yaml", []byte(manifest), spec.DefaultLimits)
	if len(errs) > 0 || len(docs) != 1 || !docs[0].Valid() || docs[0].Pod == nil {
		t.Fatalf("bad test manifest: %v %v\n%s", errs, docs[0].Errs, manifest)
	}
	return docs[0].Pod
}

func (e *testEnv) desire(manifests ...string) {
	e.t.Helper()
	var set reconcile.DesiredSet
	for _, m := range manifests {
		p := podSpec(e.t, m)
		d, err := e.tr.Pod(p, "/manifests/"+p.Metadata.Name+".yaml", nil)
		if err != nil {
			e.t.Fatal(err)
		}
		set.Pods = append(set.Pods, d)
	}
	e.rec.SetDesired(set)
}

type response struct {
	code int
	hdr  http.Header
	body []byte
}

func (r response) status() metav1.Status {
	var st metav1.Status
	_ = json.Unmarshal(r.body, &st)
	return st
}

// req makes a request as user (groups after a comma-free list).
func (e *testEnv) req(user, groups, method, path, contentType, body string, hdr ...string) response {
	e.t.Helper()
	r, err := http.NewRequest(method, e.hs.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		r.Header.Set("X-Test-User", user)
		r.Header.Set("X-Test-Groups", groups)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func (e *testEnv) get(path string, hdr ...string) response {
	e.t.Helper()
	return e.req("root", GroupAdmin, http.MethodGet, path, "", "", hdr...)
}

func (e *testEnv) getJSON(path string, v any) {
	e.t.Helper()
	r := e.get(path)
	if r.code != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, r.code, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		e.t.Fatalf("GET %s: %v\n%.2000s", path, err, r.body)
	}
}

// eventually polls cond until it holds (10 s bound a hang; nothing is timed).
func (e *testEnv) eventually(what string, cond func() error) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watchStream is an open watch.
type watchStream struct {
	events chan watchEventJSON
	cancel context.CancelFunc
}

type watchEventJSON struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

func (e *testEnv) watch(path string, hdr ...string) *watchStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.hs.URL+path, nil)
	r.Header.Set("X-Test-User", "root")
	r.Header.Set("X-Test-Groups", GroupAdmin)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		e.t.Fatalf("watch %s: %d %s", path, resp.StatusCode, b)
	}
	ws := &watchStream{events: make(chan watchEventJSON, 1024), cancel: cancel}
	go func() {
		defer close(ws.events)
		defer resp.Body.Close()
		dec := json.NewDecoder(bufio.NewReader(resp.Body))
		for {
			var ev watchEventJSON
			if dec.Decode(&ev) != nil {
				return
			}
			ws.events <- ev
		}
	}()
	e.t.Cleanup(cancel)
	return ws
}

// next waits for the next event (or the end of the stream: ok false).
func (ws *watchStream) next(t *testing.T) (watchEventJSON, bool) {
	t.Helper()
	select {
	case ev, ok := <-ws.events:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
	return watchEventJSON{}, false
}

// until reads events until one satisfies match.
func (ws *watchStream) until(t *testing.T, what string, match func(watchEventJSON) bool) watchEventJSON {
	t.Helper()
	for {
		ev, ok := ws.next(t)
		if !ok {
			t.Fatalf("watch ended before %s", what)
		}
		if match(ev) {
			return ev
		}
	}
}

func TestDiscovery(t *testing.T) {
	e := newTestEnv(t)
	var v struct{ Major, Minor, GitVersion, Platform string }
	e.getJSON("/version", &v)
	// Major and Minor (the API level of k8s.io/api) come from the
	// binary's build information; the e2e test checks them.
	if v.GitVersion != "v1.2.3" || !strings.HasPrefix(v.Platform, "linux/") {
		t.Errorf("/version: %+v", v)
	}
	var core metav1.APIVersions
	e.getJSON("/api", &core)
	if len(core.Versions) != 1 || core.Versions[0] != "v1" {
		t.Errorf("/api: %+v", core)
	}
	var groups metav1.APIGroupList
	e.getJSON("/apis", &groups)
	names := []string{}
	for _, g := range groups.Groups {
		names = append(names, g.Name+"/"+g.PreferredVersion.Version)
	}
	if strings.Join(names, " ") != "events.k8s.io/v1 metrics.k8s.io/v1beta1 coordination.k8s.io/v1 authorization.k8s.io/v1" {
		t.Errorf("/apis: %v", names)
	}
	var res metav1.APIResourceList
	e.getJSON("/api/v1", &res)
	got := map[string]string{}
	for _, r := range res.APIResources {
		got[r.Name] = strings.Join(r.Verbs, ",")
	}
	want := map[string]string{"pods": "get,list,watch", "pods/log": "get", "pods/exec": "create,get", "pods/attach": "create,get",
		"pods/portforward": "create,get", "pods/status": "get", "namespaces": "get,list,watch", "nodes": "get,list,watch",
		"events": "get,list,watch", "configmaps": "get,list,watch", "secrets": "get,list,watch"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("/api/v1 %s verbs %q, want %q", k, got[k], w)
		}
	}
	// Aggregated discovery, which kubectl 1.32 asks for first.
	r := e.get("/apis", "Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
	if r.hdr.Get("Content-Type") != aggregatedType {
		t.Fatalf("aggregated /apis: content type %q", r.hdr.Get("Content-Type"))
	}
	var agg struct {
		Kind  string
		Items []struct {
			Metadata struct{ Name string }
			Versions []struct {
				Version   string
				Resources []struct {
					Resource string
					Verbs    []string
				}
			}
		}
	}
	if err := json.Unmarshal(r.body, &agg); err != nil || agg.Kind != "APIGroupDiscoveryList" || len(agg.Items) != 4 ||
		agg.Items[1].Metadata.Name != "metrics.k8s.io" || agg.Items[1].Versions[0].Resources[0].Resource != "nodes" {
		t.Errorf("aggregated /apis: %v %s", err, r.body)
	}
	if r := e.get("/apis/nope.example.com"); r.code != http.StatusNotFound {
		t.Errorf("unknown group: %d", r.code)
	}
	for _, p := range []string{"/healthz", "/livez"} {
		if r := e.get(p); r.code != http.StatusOK || string(r.body) != "ok" {
			t.Errorf("%s: %d %q", p, r.code, r.body)
		}
	}
	e.eventually("readyz", func() error {
		if r := e.get("/readyz"); r.code != http.StatusOK {
			return fmt.Errorf("%d %s", r.code, r.body)
		}
		return nil
	})
}

func TestWritesAdvertisedOnlyWithAWriteDirectory(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, manifestOpts())
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, func(c *Config) { c.Writes = w })
	var res metav1.APIResourceList
	e.getJSON("/api/v1", &res)
	for _, r := range res.APIResources {
		want := "get,list,watch"
		switch r.Name {
		case "pods", "configmaps", "secrets":
			want = "create,delete,get,list,patch,update,watch"
		case "namespaces", "nodes", "events":
		default:
			continue
		}
		if got := strings.Join(r.Verbs, ","); got != want {
			t.Errorf("%s verbs %q, want %q", r.Name, got, want)
		}
	}
}

func TestIdentityAndAuthorization(t *testing.T) {
	e := newTestEnv(t)
	if r := e.req("", "", http.MethodGet, "/api/v1/pods", "", ""); r.code != http.StatusUnauthorized {
		t.Errorf("no identity: %d", r.code)
	}
	cases := []struct {
		user, groups, method, path string
		want                       int
	}{
		{"pelagos-viewer", GroupViewer, "GET", "/api/v1/pods", 200},
		{"pelagos-viewer", GroupViewer, "GET", "/api/v1/nodes", 200},
		{"pelagos-viewer", GroupViewer, "GET", "/api/v1/secrets", 403},
		{"pelagos-viewer", GroupViewer, "GET", "/api/v1/namespaces/default/secrets/x", 403},
		{"pelagos-viewer", GroupViewer, "DELETE", "/api/v1/namespaces/default/pods/web", 403},
		{"pelagos-viewer", GroupViewer, "POST", "/api/v1/namespaces/default/pods/web/exec", 403},
		{"pelagos-viewer", GroupViewer, "GET", "/api/v1/namespaces/default/pods/web/portforward", 403},
		{"stranger", "somebody", "GET", "/api/v1/pods", 403},
		{"stranger", "somebody", "GET", "/version", 200},
		{"root", GroupAdmin, "GET", "/api/v1/secrets", 200},
		{"root", GroupAdmin, "DELETE", "/api/v1/namespaces/default/pods/web", 405},
	}
	for _, c := range cases {
		if r := e.req(c.user, c.groups, c.method, c.path, "", ""); r.code != c.want {
			t.Errorf("%s %s %s: %d, want %d: %s", c.user, c.method, c.path, r.code, c.want, r.body)
		}
	}
	r := e.req("pelagos-viewer", GroupViewer, "GET", "/api/v1/namespaces/default/secrets", "", "")
	if st := r.status(); st.Reason != metav1.StatusReasonForbidden || !strings.Contains(st.Message, `User "pelagos-viewer" cannot list resource "secrets"`) {
		t.Errorf("forbidden status: %+v", st)
	}
}

func manifestOpts() manifest.Options { return manifest.Options{} }

// TestStreamsHook: exec, attach and port-forward reach the handlers
// runtime/streaming provides, with the pod in the path values and
// Resolve finding the container; without handlers they answer 501.
func TestStreamsHook(t *testing.T) {
	e := newTestEnv(t)
	e.desire(twoContainerPod)
	e.runningPod("web")
	if r := e.get("/api/v1/namespaces/default/pods/web/exec?command=true"); r.code != http.StatusNotImplemented ||
		r.status().Message != "pods/exec is not yet served by this agent" {
		t.Errorf("exec without a handler: %d %s", r.code, r.body)
	}
	var got []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg, err := e.srv.Resolve(r.Context(), r.PathValue("namespace"), r.PathValue("name"), r.URL.Query().Get("container"))
		if err != nil {
			WriteError(w, err)
			return
		}
		got = append(got, r.Method+" "+tg.Pod.String()+" "+tg.Container+" "+fmt.Sprint(tg.Running && tg.ContainerID != "" && tg.SandboxID != ""))
	})
	e.srv.SetStreams(Streams{Exec: h, Attach: h, PortForward: h})
	e.req("root", GroupAdmin, "POST", "/api/v1/namespaces/default/pods/web/exec?container=side&command=true", "", "")
	e.req("root", GroupAdmin, "GET", "/api/v1/namespaces/default/pods/web/attach?container=app", "", "")
	e.req("root", GroupAdmin, "POST", "/api/v1/namespaces/default/pods/web/portforward?ports=80", "", "")
	want := "POST default/web side true|GET default/web app true"
	if strings.Join(got, "|") != want {
		t.Errorf("handlers saw %q, want %q", strings.Join(got, "|"), want)
	}
	// A pod with two containers and no default: Resolve refuses as pods/log
	// does (port-forward has no container, so its handler must not ask).
	if r := e.req("root", GroupAdmin, "POST", "/api/v1/namespaces/default/pods/web/exec?command=true", "", ""); r.code != http.StatusBadRequest {
		t.Errorf("exec without a container name: %d %s", r.code, r.body)
	}
	if r := e.req("root", GroupAdmin, "POST", "/api/v1/namespaces/default/pods/nope/exec", "", ""); r.code != http.StatusNotFound {
		t.Errorf("exec in a missing pod: %d", r.code)
	}
}

func TestAccessReview(t *testing.T) {
	e := newTestEnv(t)
	review := func(user, groups, attrs string) (bool, int) {
		r := e.req(user, groups, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "application/json",
			`{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":`+attrs+`}`)
		var rev struct{ Status struct{ Allowed bool } }
		_ = json.Unmarshal(r.body, &rev)
		return rev.Status.Allowed, r.code
	}
	cases := []struct {
		user, groups, attrs string
		want                bool
	}{
		{"root", GroupAdmin, `{"resourceAttributes":{"verb":"delete","resource":"pods","namespace":"default"}}`, true},
		{"pelagos-viewer", GroupViewer, `{"resourceAttributes":{"verb":"list","resource":"pods"}}`, true},
		{"pelagos-viewer", GroupViewer, `{"resourceAttributes":{"verb":"delete","resource":"pods"}}`, false},
		{"pelagos-viewer", GroupViewer, `{"resourceAttributes":{"verb":"get","resource":"secrets"}}`, false},
		{"pelagos-viewer", GroupViewer, `{"resourceAttributes":{"verb":"create","resource":"pods","subresource":"exec"}}`, false},
		{"pelagos-viewer", GroupViewer, `{"resourceAttributes":{"verb":"get","resource":"pods","subresource":"log"}}`, true},
		{"pelagos-viewer", GroupViewer, `{"resourceAttributes":{"verb":"list","resource":"deployments","group":"apps"}}`, false},
		{"pelagos-viewer", GroupViewer, `{"nonResourceAttributes":{"verb":"get","path":"/version"}}`, true},
	}
	for _, c := range cases {
		if got, code := review(c.user, c.groups, c.attrs); got != c.want || code != http.StatusCreated {
			t.Errorf("%s %s: allowed %v (%d), want %v", c.user, c.attrs, got, code, c.want)
		}
	}
	// kubectl sends its review as protobuf.
	rev := authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets"}}}
	raw, _ := rev.Marshal()
	env, _ := (&kruntime.Unknown{Raw: raw, ContentType: "application/vnd.kubernetes.protobuf"}).Marshal()
	r := e.req("pelagos-viewer", GroupViewer, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
		"application/vnd.kubernetes.protobuf", string(append([]byte("k8s\x00"), env...)))
	var got authorizationv1.SelfSubjectAccessReview
	if err := json.Unmarshal(r.body, &got); err != nil || r.code != http.StatusCreated || got.Status.Allowed ||
		got.Spec.ResourceAttributes == nil || got.Spec.ResourceAttributes.Resource != "secrets" {
		t.Errorf("protobuf review: %d %v %s", r.code, err, r.body)
	}
	if r := e.get("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"); r.code != http.StatusMethodNotAllowed {
		t.Errorf("list access reviews: %d", r.code)
	}
}
