package reconcile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

const downwardPod = `apiVersion: v1
kind: Pod
metadata:
  name: info
  labels: {app: web, tier: "front"}
  annotations: {note: "two\nlines", build: "7"}
spec:
  initContainers:
  - name: proxy
    image: busybox:1.36
    restartPolicy: Always
    resources: {limits: {cpu: "2"}}
  containers:
  - name: app
    image: busybox:1.36
    resources:
      requests: {cpu: 250m, memory: 40Mi}
      limits: {memory: 64Mi}
    env:
    - name: MEM_MI
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    - name: CPU_LIMIT
      valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    - name: CPU_REQUEST_M
      valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}
    - name: PROXY_CPU
      valueFrom: {resourceFieldRef: {containerName: proxy, resource: limits.cpu}}
    - name: STORAGE_GI
      valueFrom: {resourceFieldRef: {resource: limits.ephemeral-storage, divisor: 1Gi}}
    volumeMounts:
    - {name: info, mountPath: /etc/podinfo}
    - {name: all, mountPath: /etc/all}
    - {name: data, mountPath: /data}
    - {name: data, mountPath: /data-again, readOnly: false}
  volumes:
  - name: info
    downwardAPI:
      defaultMode: 0440
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
      - {path: app, fieldRef: {fieldPath: "metadata.labels['app']"}, mode: 0400}
      - {path: sub/name, fieldRef: {fieldPath: metadata.name}}
      - {path: cpu_request, resourceFieldRef: {containerName: app, resource: requests.cpu, divisor: 1m}}
      - {path: mem_limit, resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Ki}}
  - name: all
    projected:
      sources:
      - configMap:
          name: cfg
      - secret: {name: creds}
      - secret: {name: absent, optional: true}
      - downwardAPI:
          items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]
  - name: data
    persistentVolumeClaim: {claimName: data, readOnly: true}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {color: blue, extra: x}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 5Mi}}
`

func loadWith(t *testing.T, tr Translator, content string) DesiredSet {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pod.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := manifest.LoadDir(dir, manifest.Options{SkipTrustCheck: true})
	return tr.FromSnapshot(snap, err)
}

func volumeNamed(d *DesiredPod, name string) *runtime.VolumeConfig {
	for i := range d.Sandbox.Volumes {
		if d.Sandbox.Volumes[i].Name == name {
			return &d.Sandbox.Volumes[i]
		}
	}
	return nil
}

type file struct {
	Data string
	Mode uint32
}

func filesOf(v *runtime.VolumeConfig) map[string]file {
	out := map[string]file{}
	for _, f := range v.Files.Files {
		out[f.Path] = file{string(f.Data), f.Mode}
	}
	return out
}

func TestTranslateDownwardAPIAndProjected(t *testing.T) {
	tr := Translator{NodeName: "node1", NodeCPUMilli: 4000, NodeMemory: 8 << 30, NodeEphemeralStorage: 100 << 30}
	set := loadWith(t, tr, downwardPod)
	if len(set.Errors) > 0 || len(set.Pods) != 1 {
		t.Fatalf("errors %v, pods %d", set.Errors, len(set.Pods))
	}
	d := set.Pods[0]

	info := volumeNamed(d, "info")
	want := map[string]file{
		"labels":      {"app=\"web\"\ntier=\"front\"", 0o440},
		"annotations": {"build=\"7\"\nnote=\"two\\nlines\"", 0o440},
		"app":         {"web", 0o400},
		"sub/name":    {"info", 0o440},
		"cpu_request": {"250", 0o440},
		"mem_limit":   {"65536", 0o440},
	}
	if diff := cmp.Diff(want, filesOf(info)); diff != "" || info.Files.Sensitive {
		t.Errorf("downwardAPI files (-want +got):\n%s (sensitive %v)", diff, info.Files.Sensitive)
	}

	all := volumeNamed(d, "all")
	want = map[string]file{
		"color":     {"blue", 0o644},
		"extra":     {"x", 0o644},
		"password":  {"hunter2", 0o600},
		"namespace": {"default", 0o644},
	}
	if diff := cmp.Diff(want, filesOf(all)); diff != "" || !all.Files.Sensitive {
		t.Errorf("projected files (-want +got):\n%s (sensitive %v, want true: a secret source)", diff, all.Files.Sensitive)
	}

	data := volumeNamed(d, "data")
	if diff := cmp.Diff(&runtime.PersistentVolume{Namespace: "default", Name: "data", Size: 5 << 20}, data.Persistent); diff != "" {
		t.Errorf("claim volume: %s", diff)
	}
	app := d.Containers[0].Config
	for _, m := range app.Mounts {
		if strings.HasPrefix(m.ContainerPath, "/data") && !m.ReadOnly {
			t.Errorf("mount %s of a readOnly claim is writable", m.ContainerPath)
		}
	}

	env := map[string]string{}
	for _, e := range app.Env {
		env[e.Name] = e.Value
	}
	wantEnv := map[string]string{
		"MEM_MI":        "64",
		"CPU_LIMIT":     "4",   // no limit: the node's CPUs
		"CPU_REQUEST_M": "250", //
		"PROXY_CPU":     "2",   // another container's limit
		"STORAGE_GI":    "100", // no limit: the node's disk
	}
	if diff := cmp.Diff(wantEnv, env); diff != "" {
		t.Errorf("resourceFieldRef env (-want +got):\n%s", diff)
	}
	if len(d.Init) != 1 || !d.Init[0].Sidecar {
		t.Errorf("the proxy is not a sidecar: %+v", d.Init)
	}
}

// A label edit changes the downward-API files and nothing that restarts:
// the same hashes, a new translation (which syncVolumes hands to the
// runtime).
func TestTranslateLabelEditOnlyChangesFiles(t *testing.T) {
	tr := Translator{NodeCPUMilli: 1000}
	a := loadWith(t, tr, downwardPod).Pods[0]
	b := loadWith(t, tr, strings.Replace(downwardPod, `tier: "front"`, `tier: "back"`, 1)).Pods[0]
	b.Source = a.Source
	if !sameDesired(a, b) {
		t.Fatalf("a label edit changed a hash: sandbox %s -> %s", a.SandboxHash, b.SandboxHash)
	}
	if got := filesOf(volumeNamed(b, "info"))["labels"].Data; got != "app=\"web\"\ntier=\"back\"" {
		t.Errorf("labels file after the edit: %q", got)
	}
}

func TestTranslateProjectedErrors(t *testing.T) {
	base := strings.Split(downwardPod, "---\n")[0]
	for _, tc := range []struct {
		name, from, to, msg string
	}{
		{"missing configMap", "name: cfg\n", "name: nope\n", `configMap "nope" not found`},
		{"missing secret", "secret: {name: creds}", "secret: {name: nope}", `secret "nope" not found`},
		{"two sources, one path", "items: [{path: namespace, fieldRef", "items: [{path: extra, fieldRef", `downwardAPI writes "extra", which configMap cfg writes too`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			content := strings.Replace(base, tc.from, tc.to, 1) + "---\n" + strings.Join(strings.Split(downwardPod, "---\n")[1:], "---\n")
			set := loadWith(t, Translator{}, content)
			if len(set.Pods) != 0 || len(set.Errors) != 1 || !strings.Contains(set.Errors[0].Message, tc.msg) {
				t.Fatalf("want one error containing %q, got pods %d, errors %+v", tc.msg, len(set.Pods), set.Errors)
			}
		})
	}
}

// A claim without a PersistentVolumeClaim document is a volume without a
// size; the size of one that has a document follows it.
func TestTranslateClaimSizes(t *testing.T) {
	pod := `apiVersion: v1
kind: Pod
metadata: {name: c}
spec:
  containers: [{name: c, image: busybox:1.36, volumeMounts: [{name: data, mountPath: /data}]}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
`
	d := loadWith(t, Translator{}, pod).Pods
	if len(d) != 1 {
		t.Fatalf("pods %d, want 1", len(d))
	}
	if got := volumeNamed(d[0], "data").Persistent; got.Size != 0 || got.Name != "data" {
		t.Errorf("claim without a document: %+v, want data without a size", got)
	}
}

func TestSupplementalGroupsPolicy(t *testing.T) {
	pod := `apiVersion: v1
kind: Pod
metadata: {name: g}
spec:
  securityContext: {supplementalGroups: [5], fsGroup: 7, supplementalGroupsPolicy: Strict}
  containers: [{name: c, image: busybox:1.36}]
`
	d := loadWith(t, Translator{}, pod).Pods[0]
	sec := d.Containers[0].Config.Security
	if sec.SupplementalGroupsPolicy != "Strict" || !cmp.Equal(sec.SupplementalGroups, []int64{5, 7}) {
		t.Errorf("security: %+v", sec)
	}
	d = loadWith(t, Translator{}, strings.Replace(pod, "Strict", "Merge", 1)).Pods[0]
	if p := d.Containers[0].Config.Security.SupplementalGroupsPolicy; p != "" {
		t.Errorf("Merge gave policy %q, want the runtime's default", p)
	}
}
