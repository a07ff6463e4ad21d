package reconcile

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "1", "HOST": "web"}
	for in, want := range map[string]string{
		"plain":           "plain",
		"$(A)":            "1",
		"x$(A)y$(HOST)":   "x1yweb",
		"$$(A)":           "$(A)",
		"$(MISSING)":      "$(MISSING)",
		"$(A":             "$(A",
		"cost $5":         "cost $5",
		"trailing $":      "trailing $",
		"$$$(A)":          "$1",
		"--port=$(A)$(A)": "--port=11",
	} {
		if got := expand(in, env); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

const webPod = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  shareProcessNamespace: true
  initContainers:
  - name: setup
    image: busybox:1.36
    command: ["sh", "-c", "echo $(GREETING)"]
    env: [{name: GREETING, value: hi}]
  containers:
  - name: app
    image: busybox:1.36
    command: ["httpd", "-f", "-p", "$(PORT)"]
    env:
    - {name: PORT, value: "8080"}
    - {name: URL, value: "http://localhost:$(PORT)/"}
    - name: POD
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: COLOR
      valueFrom: {configMapKeyRef: {name: cfg, key: color}}
    ports: [{containerPort: 8080, hostPort: 18080}]
    resources:
      limits: {cpu: 500m, memory: 64Mi}
    volumeMounts: [{name: conf, mountPath: /etc/conf, readOnly: true}]
  volumes:
  - name: conf
    configMap: {name: cfg}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {color: blue, extra: x}
`

func loadOne(t *testing.T, content string) DesiredSet {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := manifest.LoadDir(dir, manifest.Options{SkipTrustCheck: true})
	return Translator{NodeName: "node1"}.FromSnapshot(snap, err)
}

func TestTranslatePod(t *testing.T) {
	set := loadOne(t, webPod)
	if len(set.Errors) > 0 || len(set.Pods) != 1 {
		t.Fatalf("errors %v, pods %d", set.Errors, len(set.Pods))
	}
	d := set.Pods[0]
	if d.Key != (runtime.PodKey{Namespace: "default", Name: "web"}) || d.Restart != RestartOnFailure || d.Grace.Seconds() != 5 {
		t.Errorf("pod fields: %+v", d)
	}
	if d.Sandbox.Hostname != "web" || d.Sandbox.Namespaces.PID != runtime.NamespacePod || !d.Sandbox.DNS.UseHost {
		t.Errorf("sandbox: %+v", d.Sandbox)
	}
	if diff := cmp.Diff([]runtime.PortMapping{{Protocol: "TCP", ContainerPort: 8080, HostPort: 18080}}, d.Sandbox.Ports); diff != "" {
		t.Errorf("ports: %s", diff)
	}
	if v := d.Sandbox.Volumes; len(v) != 1 || v[0].Files == nil || len(v[0].Files.Files) != 2 || string(v[0].Files.Files[0].Data) != "blue" {
		t.Errorf("configMap volume: %+v", v)
	}
	if len(d.Init) != 1 || d.Init[0].Config.Command[2] != "echo hi" || !d.Init[0].Init {
		t.Errorf("init: %+v", d.Init)
	}
	app := d.Containers[0].Config
	if diff := cmp.Diff([]string{"httpd", "-f", "-p", "8080"}, app.Command); diff != "" {
		t.Errorf("command: %s", diff)
	}
	want := []runtime.EnvVar{{Name: "PORT", Value: "8080"}, {Name: "URL", Value: "http://localhost:8080/"},
		{Name: "POD", Value: "web"}, {Name: "COLOR", Value: "blue"}}
	if diff := cmp.Diff(want, app.Env); diff != "" {
		t.Errorf("env: %s", diff)
	}
	if app.Resources.CPULimitMilli != 500 || app.Resources.MemoryLimit != 64<<20 || app.Resources.MemoryRequest != 64<<20 {
		t.Errorf("resources: %+v", app.Resources)
	}
	if len(app.Mounts) != 1 || !app.Mounts[0].ReadOnly {
		t.Errorf("mounts: %+v", app.Mounts)
	}
	// The ConfigMap value is part of the container's hash; the manifest is not.
	changed := loadOne(t, webPod[:len(webPod)-len("data: {color: blue, extra: x}\n")]+"data: {color: red, extra: x}\n")
	if changed.Pods[0].Containers[0].Hash == d.Containers[0].Hash {
		t.Errorf("configMap change did not change the container hash")
	}
	if changed.Pods[0].Init[0].Hash != d.Init[0].Hash {
		t.Errorf("configMap change changed an unrelated container")
	}
	// Identical bytes: identical hashes.
	again := loadOne(t, webPod)
	again.Pods[0].Source = d.Source // another temp dir
	if !sameDesired(d, again.Pods[0]) {
		t.Errorf("identical manifest gives a different desired pod")
	}
}

func TestTranslateTerminal(t *testing.T) {
	set := loadOne(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: sh}\nspec:\n  containers:\n"+
		"  - {name: sh, image: busybox:1.36, tty: true, stdin: true, stdinOnce: true}\n"+
		"  - {name: plain, image: busybox:1.36}\n")
	if len(set.Errors) > 0 || len(set.Pods) != 1 {
		t.Fatalf("errors %v, pods %d", set.Errors, len(set.Pods))
	}
	sh, plain := set.Pods[0].Containers[0].Config, set.Pods[0].Containers[1].Config
	if !sh.TTY || !sh.Stdin || !sh.StdinOnce {
		t.Errorf("tty %v stdin %v stdinOnce %v, want all true", sh.TTY, sh.Stdin, sh.StdinOnce)
	}
	if plain.TTY || plain.Stdin || plain.StdinOnce {
		t.Errorf("a container without them: tty %v stdin %v stdinOnce %v", plain.TTY, plain.Stdin, plain.StdinOnce)
	}
}

func TestTranslateMissingConfigMap(t *testing.T) {
	set := loadOne(t, webPod[:len(webPod)-len("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {color: blue, extra: x}\n")])
	if len(set.Pods) != 0 || len(set.Errors) != 1 || set.Errors[0].Pod == nil {
		t.Fatalf("want one pod error, got pods=%d errors=%+v", len(set.Pods), set.Errors)
	}
}

func TestTranslateUnavailable(t *testing.T) {
	snap, err := manifest.LoadDir(filepath.Join(t.TempDir(), "missing"), manifest.Options{SkipTrustCheck: true})
	set := Translator{}.FromSnapshot(snap, err)
	if set.Unavailable == nil {
		t.Fatal("missing directory is not reported as unavailable")
	}
}

func TestTranslateEmptyFileKeepsPods(t *testing.T) {
	set := loadOne(t, "")
	if len(set.Errors) != 1 || set.Errors[0].File == "" {
		t.Fatalf("an empty file must be an error (unfinished write), got %+v", set.Errors)
	}
}

func TestTranslateVanishedFileIsAbsent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(path, []byte(webPod), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := manifest.LoadDir(dir, manifest.Options{SkipTrustCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	// As if the file went between LoadDir's listing and its read.
	os.Remove(path)
	snap.Files[path] = manifest.LoadFile(path, manifest.Options{SkipTrustCheck: true})
	set := Translator{}.FromSnapshot(snap, nil)
	if len(set.Errors) != 0 || len(set.Pods) != 0 {
		t.Errorf("a vanished file must count as removed: pods %d errors %+v", len(set.Pods), set.Errors)
	}
}

func TestTranslateCache(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("web.yaml", webPod)
	tr := Translator{Cache: NewTranslateCache()}
	load := func() DesiredSet {
		snap, err := manifest.LoadDir(dir, manifest.Options{SkipTrustCheck: true})
		return tr.FromSnapshot(snap, err)
	}
	a := load()
	b := load()
	if len(a.Pods) != 1 || a.Pods[0] != b.Pods[0] {
		t.Fatalf("unchanged file not served from the cache")
	}
	// Another file's ConfigMap changes what web's env resolves to: the
	// cache must not serve the old translation.
	write("web.yaml", webPod[:len(webPod)-len("data: {color: blue, extra: x}\n")]+"data: {color: red, extra: x}\n")
	c := load()
	if c.Pods[0] == a.Pods[0] || c.Pods[0].Containers[0].Hash == a.Pods[0].Containers[0].Hash {
		t.Fatalf("changed file served from the cache")
	}
	write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {k: v}\n")
	if d := load(); d.Pods[0] == c.Pods[0] {
		t.Errorf("a new ConfigMap must invalidate the cache")
	}
}

func TestTranslatePullSecrets(t *testing.T) {
	// {"auths":{"registry.local:5000":{"username":"u","password":"p"}}} and a legacy dockercfg.
	set := loadOne(t, `apiVersion: v1
kind: Pod
metadata: {name: private}
spec:
  imagePullSecrets: [{name: regcred}, {name: oldcred}, {name: missing}, {name: opaque}]
  containers: [{name: app, image: "registry.local:5000/app:1"}]
---
apiVersion: v1
kind: Secret
metadata: {name: regcred}
type: kubernetes.io/dockerconfigjson
data: {.dockerconfigjson: eyJhdXRocyI6eyJyZWdpc3RyeS5sb2NhbDo1MDAwIjp7InVzZXJuYW1lIjoidSIsInBhc3N3b3JkIjoicCJ9fX0=}
---
apiVersion: v1
kind: Secret
metadata: {name: oldcred}
type: kubernetes.io/dockercfg
stringData: {.dockercfg: '{"old.local":{"auth":"dTpw"}}'}
---
apiVersion: v1
kind: Secret
metadata: {name: opaque}
stringData: {.dockerconfigjson: '{"auths":{"ignored.local":{"username":"x"}}}'}
`)
	if len(set.Errors) > 0 || len(set.Pods) != 1 {
		t.Fatalf("errors %v, pods %d", set.Errors, len(set.Pods))
	}
	want := []runtime.RegistryAuth{
		{Registry: "registry.local:5000", Username: "u", Password: "p"},
		{Registry: "old.local", Auth: "dTpw"},
	}
	if diff := cmp.Diff(want, set.Pods[0].PullAuth); diff != "" {
		t.Errorf("pull auth (-want +got):\n%s", diff)
	}
}

func TestTranslateFSGroupOwnsProjectedVolumes(t *testing.T) {
	set := loadOne(t, `apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  securityContext: {fsGroup: 2000, runAsUser: 1000}
  volumes:
  - {name: cfg, configMap: {name: cfg}}
  - {name: scratch, emptyDir: {}}
  containers: [{name: app, image: "busybox:1.36", volumeMounts: [{name: cfg, mountPath: /cfg}, {name: scratch, mountPath: /scratch}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {k: v}
`)
	if len(set.Errors) > 0 || len(set.Pods) != 1 {
		t.Fatalf("errors %v, pods %d", set.Errors, len(set.Pods))
	}
	vols := set.Pods[0].Sandbox.Volumes
	if len(vols) != 2 || vols[0].Files == nil || vols[0].Files.FSGroup == nil || *vols[0].Files.FSGroup != 2000 {
		t.Fatalf("configMap volume: %+v", vols)
	}
}

// TestSaturatingConversions: at and beyond the int64 extremes a value
// saturates; it never wraps (resource.Quantity's own Value and MilliValue
// do: 2^63 bytes read as -2^63, MaxInt64 as -1000 millis).
func TestSaturatingConversions(t *testing.T) {
	q := resource.MustParse
	for _, tc := range []struct {
		in           string
		whole, milli int64
	}{
		{"0", 0, 0},
		{"1", 1, 1000},
		{"500m", 1, 500},
		{"0.0001", 1, 1},
		{"64Mi", 64 << 20, 64 << 20 * 1000},
		{"9223372036854775", 9223372036854775, 9223372036854775000},
		{"9223372036854775807m", 9223372036854776, math.MaxInt64},
		{"9223372036854775806m", 9223372036854776, math.MaxInt64 - 1},
		{"9223372036854775807", math.MaxInt64, math.MaxInt64},
		{"9223372036854775808", math.MaxInt64, math.MaxInt64},
		{"8Ei", math.MaxInt64, math.MaxInt64},
		{"1e11", 100_000_000_000, 100_000_000_000_000},
		{"1e30", math.MaxInt64, math.MaxInt64},
		{"1e400", math.MaxInt64, math.MaxInt64},
		{"100000000000000000000000m", math.MaxInt64, math.MaxInt64},
		{"-9223372036854775808", math.MinInt64, math.MinInt64},
		{"-1e400", math.MinInt64, math.MinInt64},
		{"-1", -1, -1000},
	} {
		if got := wholeValue(q(tc.in)); got != tc.whole {
			t.Errorf("wholeValue(%s) = %d, want %d", tc.in, got, tc.whole)
		}
		if got := milliValue(q(tc.in)); got != tc.milli {
			t.Errorf("milliValue(%s) = %d, want %d", tc.in, got, tc.milli)
		}
	}
	for in, want := range map[int64]time.Duration{
		0: 0, 30: 30 * time.Second, 9223372036: 9223372036 * time.Second,
		9223372037: math.MaxInt64, math.MaxInt64: math.MaxInt64,
		-9223372037: math.MinInt64, math.MinInt64: math.MinInt64,
	} {
		if got := seconds(in); got != want {
			t.Errorf("seconds(%d) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[int32]uint32{0: 0, 0o644: 0o644, 0o777: 0o777, 0o4755: 0o777, -1: 0, math.MaxInt32: 0o777} {
		if got := fileMode(in); got != want {
			t.Errorf("fileMode(%o) = %o, want %o", in, got, want)
		}
	}
}

// TestTranslateExtremes translates a pod that skipped validation with
// out-of-range numbers: every one saturates.
func TestTranslateExtremes(t *testing.T) {
	p := &spec.Pod{Metadata: spec.ObjectMeta{Name: "x"}, Spec: spec.PodSpec{
		TerminationGracePeriodSeconds: ptrTo(int64(math.MaxInt64)),
		Volumes: []spec.Volume{{Name: "v", VolumeSource: spec.VolumeSource{EmptyDir: &spec.EmptyDirVolumeSource{
			Medium: spec.StorageMediumMemory, SizeLimit: ptrTo(resource.MustParse("1e30"))}}}},
		Containers: []spec.Container{{Name: "c", Image: "busybox:1.36", Resources: spec.ResourceRequirements{
			Limits:   spec.ResourceList{spec.ResourceCPU: resource.MustParse("1e11"), spec.ResourceMemory: resource.MustParse("1e30")},
			Requests: spec.ResourceList{spec.ResourceCPU: resource.MustParse("1e400"), spec.ResourceMemory: resource.MustParse("9223372036854775808")},
		}}},
	}}
	d, err := Translator{}.Pod(p, "x.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Grace != math.MaxInt64 {
		t.Errorf("grace %v, want the longest Duration", d.Grace)
	}
	r := d.Containers[0].Config.Resources
	want := runtime.Resources{CPULimitMilli: 100_000_000_000_000, CPURequestMilli: math.MaxInt64,
		MemoryLimit: math.MaxInt64, MemoryRequest: math.MaxInt64}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
	if got := d.Sandbox.Volumes[0].EmptyDir.SizeLimit; got != math.MaxInt64 {
		t.Errorf("emptyDir size %d, want MaxInt64", got)
	}
}

func ptrTo[T any](v T) *T { return &v }
