package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// volumeRuntime adds the VolumeUpdater ability to the fake and records
// what it was asked to write.
type volumeRuntime struct {
	*fake.Runtime
	mu      sync.Mutex
	updates map[string]string // volume -> concatenated file data
}

func (v *volumeRuntime) UpdateVolume(ctx context.Context, sandboxID string, vol *runtime.VolumeConfig) error {
	if _, err := v.GetSandbox(ctx, sandboxID); err != nil {
		return err
	}
	var b strings.Builder
	for _, f := range vol.Files.Files {
		fmt.Fprintf(&b, "%s=%s;", f.Path, f.Data)
	}
	v.mu.Lock()
	v.updates[vol.Name] = b.String()
	v.mu.Unlock()
	return nil
}

func (v *volumeRuntime) last(name string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.updates[name]
}

const secretValue = "Tr0ub4dor-NEVER-PRINT"

func parseAll(t *testing.T, yaml string) (*spec.Pod, *reconcile.Documents) {
	t.Helper()
	docs, errs := spec.ParseFile("dir/pod.yaml", []byte(yaml), spec.Limits{})
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	out := &reconcile.Documents{ConfigMaps: map[spec.PodKey]*spec.ConfigMap{}, Secrets: map[spec.PodKey]*spec.Secret{}}
	var pod *spec.Pod
	for _, d := range docs {
		if !d.Valid() {
			t.Fatalf("invalid document: %v", d.Errs)
		}
		switch {
		case d.Pod != nil:
			pod = d.Pod
		case d.ConfigMap != nil:
			out.ConfigMaps[spec.PodKey{Namespace: d.ConfigMap.Metadata.Namespace, Name: d.ConfigMap.Metadata.Name}] = d.ConfigMap
		case d.Secret != nil:
			out.Secrets[spec.PodKey{Namespace: d.Secret.Metadata.Namespace, Name: d.Secret.Metadata.Name}] = d.Secret
		}
	}
	return pod, out
}

func manifests(cmValue, secret string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data: {app.conf: %q}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: %q}
---
apiVersion: v1
kind: Pod
metadata: {name: app, labels: {tier: web}}
spec:
  containers:
  - name: app
    image: example.test/app:1
    args: ["--listen=$(POD_IP):8080", "--tier=$(TIER)"]
    env:
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: TIER
      valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    volumeMounts:
    - {name: cfg, mountPath: /etc/app}
    - {name: sec, mountPath: /run/secrets/app}
  volumes:
  - name: cfg
    configMap: {name: app-config}
  - name: sec
    secret: {secretName: creds}
`, cmValue, secret)
}

func TestPodIPConfigMapPropagationAndSecretsStayHidden(t *testing.T) {
	f := fake.New()
	f.AddImage("example.test/app:1", runtime.ImageConfig{})
	var started []runtime.ContainerConfig
	var smu sync.Mutex
	f.OnStart(func(cfg *runtime.ContainerConfig) (bool, int) {
		smu.Lock()
		started = append(started, *cfg)
		smu.Unlock()
		return false, 0
	})
	vr := &volumeRuntime{Runtime: f, updates: map[string]string{}}
	var logs bytes.Buffer
	events := reconcile.NewEvents(256, zerolog.Nop())
	r := reconcile.New(reconcile.Config{Runtime: vr, Images: f, Log: zerolog.New(&logs).Level(zerolog.DebugLevel), Events: events})
	tr := reconcile.Translator{NodeName: "node-1"}
	load := func(cm, secret string) *reconcile.DesiredPod {
		pod, docs := parseAll(t, manifests(cm, secret))
		d, err := tr.Pod(pod, "dir/pod.yaml", docs)
		if err != nil {
			t.Fatal(err)
		}
		r.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{d}})
		return d
	}
	d := load("mode=v1", secretValue)
	sync := func() {
		for i := 0; i < 6; i++ {
			if _, err := r.Sync(context.Background(), d.Key); err != nil {
				t.Logf("sync: %v", err)
			}
		}
	}
	sync()
	smu.Lock()
	if len(started) != 1 {
		t.Fatalf("%d starts, want 1", len(started))
	}
	first := started[0]
	smu.Unlock()
	sbs, _ := f.ListSandboxes(context.Background())
	if len(sbs) != 1 {
		t.Fatalf("sandboxes %v", sbs)
	}
	ip := sbs[0].IP
	env := map[string]string{}
	for _, e := range first.Env {
		env[e.Name] = e.Value
	}
	if env["POD_IP"] != ip || env["TIER"] != "web" || env["PASSWORD"] != secretValue {
		t.Fatalf("env %v, want POD_IP=%s", env, ip)
	}
	if first.Args[0] != "--listen="+ip+":8080" || first.Args[1] != "--tier=web" {
		t.Fatalf("args %q", first.Args)
	}
	if got := vr.last("cfg"); got != "app.conf=mode=v1;" {
		t.Fatalf("cfg volume synced as %q", got)
	}

	// A ConfigMap edit reaches the running sandbox without a restart.
	d = load("mode=v2", secretValue)
	sync()
	if got := vr.last("cfg"); got != "app.conf=mode=v2;" {
		t.Fatalf("after the edit, cfg volume synced as %q", got)
	}
	smu.Lock()
	if len(started) != 1 {
		t.Fatalf("a volume-only change restarted the container (%d starts)", len(started))
	}
	smu.Unlock()

	// A Secret used in env changes: the container restarts with it.
	d = load("mode=v2", secretValue+"-rotated")
	sync()
	smu.Lock()
	n := len(started)
	smu.Unlock()
	if n != 2 {
		t.Fatalf("%d starts after an env Secret change, want 2", n)
	}

	// Nothing a person can read holds a secret value: events, the pod
	// view (get/describe), plans, logs.
	var seen bytes.Buffer
	for _, e := range events.List() {
		fmt.Fprintln(&seen, e.Reason, e.Message)
	}
	pods, _ := json.Marshal(r.Pods())
	seen.Write(pods)
	if p, err := r.Plan(context.Background(), d.Key); err == nil {
		seen.WriteString(p.String())
	}
	seen.Write(logs.Bytes())
	if strings.Contains(seen.String(), "Tr0ub4dor") {
		t.Fatalf("a secret value was printed:\n%s", seen.String())
	}
	if !strings.Contains(string(pods), `"app"`) {
		t.Fatalf("pod view is empty: %s", pods)
	}
}
