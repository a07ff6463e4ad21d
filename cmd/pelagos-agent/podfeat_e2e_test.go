package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
)

// End-to-end tests of the rest of the Pod API (issue 14): native sidecars,
// downward-API and projected volumes that follow label and ConfigMap
// edits, and persistent volumes that outlive their pods. Each runs the
// real agent on a busybox image and ends with the census.

// podFor waits until cond holds for the pod and returns it.
func (e *agentEnv) podFor(name, what string, cond func(p *reconcile.Pod) error) *reconcile.Pod {
	e.t.Helper()
	var p *reconcile.Pod
	e.eventually(name+": "+what, func() error {
		var err error
		if p, err = e.pod(name); err != nil {
			return err
		}
		return cond(p)
	})
	return p
}

func statusOf(list []reconcile.ContainerStatus, name string) *reconcile.ContainerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// remove deletes a manifest file and waits until its pod is gone.
func (e *agentEnv) remove(rev, file, pod string) {
	e.t.Helper()
	if err := os.Remove(filepath.Join(e.repo, rev, file)); err != nil {
		e.t.Fatal(err)
	}
	e.gone(pod)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

const sidecarPod = `apiVersion: v1
kind: Pod
metadata: {name: side}
spec:
  terminationGracePeriodSeconds: 10
  initContainers:
  - name: setup
    image: busybox:1.36
    command: ["sh", "-c", "echo setup >> /log/order"]
    volumeMounts: [{name: log, mountPath: /log}]
  - name: proxy
    image: busybox:1.36
    restartPolicy: Always
    command: ["sh", "-c", "trap 'echo proxy-stopped >> /log/order; exit 0' TERM; echo proxy-started >> /log/order; touch /tmp/up; while true; do if [ -f /log/crash ]; then rm /log/crash; exit 3; fi; sleep 0.2; done"]
    startupProbe: {exec: {command: ["test", "-f", "/tmp/up"]}, periodSeconds: 1}
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
    volumeMounts: [{name: log, mountPath: /log}]
  - name: migrate
    image: busybox:1.36
    command: ["sh", "-c", "grep -q proxy-started /log/order && echo migrate >> /log/order"]
    volumeMounts: [{name: log, mountPath: /log}]
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "trap 'echo app-stopped >> /log/order; sleep 1; exit 0' TERM; echo app >> /log/order; sleep 3600 & wait"]
    volumeMounts: [{name: log, mountPath: /log}]
  volumes:
  - name: log
    hostPath: {path: %s, type: Directory}
`

const jobPod = `apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  initContainers:
  - name: logger
    image: busybox:1.36
    restartPolicy: Always
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
  containers:
  - name: work
    image: busybox:1.36
    command: ["sh", "-c", "echo done"]
`

func TestAgentSidecarsEndToEnd(t *testing.T) {
	e := newAgentEnv(t, "--backoff-initial", "200ms", "--backoff-max", "1s")
	e.start()
	logDir := t.TempDir()
	order := filepath.Join(logDir, "order")

	t.Run("started in order: the next init container waits for the sidecar's startup probe", func(t *testing.T) {
		e.write("rev1", "side.yaml", fmt.Sprintf(sidecarPod, logDir))
		p := e.podFor("side", "app and sidecar running, ready", func(p *reconcile.Pod) error {
			proxy := statusOf(p.Status.InitContainerStatuses, "proxy")
			app := statusOf(p.Status.ContainerStatuses, "app")
			if p.Status.Phase != reconcile.PhaseRunning || proxy == nil || app == nil || proxy.State.Running == nil ||
				!proxy.Ready || app.State.Running == nil {
				return fmt.Errorf("phase %s, proxy %+v, app %+v", p.Status.Phase, proxy, app)
			}
			return nil
		})
		if got, want := readLines(t, order), []string{"setup", "proxy-started", "migrate", "app"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("order %v, want %v", got, want)
		}
		if s := statusOf(p.Status.InitContainerStatuses, "proxy"); s.Started == nil || !*s.Started {
			t.Errorf("proxy not started in status: %+v", s)
		}
		out, _, _ := e.cli("get", "pods")
		if !regexp.MustCompile(`side\s+2/2\s+Running`).MatchString(out) {
			t.Errorf("get pods counts the sidecar as kubectl does (2/2 Running):\n%s", out)
		}
	})

	t.Run("a sidecar that exits is restarted, the app keeps running", func(t *testing.T) {
		before := ids(e.running("side"))
		appStart := e.procStart("side", "app")
		if err := os.WriteFile(filepath.Join(logDir, "crash"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		p := e.podFor("side", "proxy restarted", func(p *reconcile.Pod) error {
			proxy := statusOf(p.Status.InitContainerStatuses, "proxy")
			if proxy.RestartCount != 1 || proxy.State.Running == nil || proxy.LastState.Terminated == nil {
				return fmt.Errorf("proxy %+v", proxy)
			}
			return nil
		})
		if code := statusOf(p.Status.InitContainerStatuses, "proxy").LastState.Terminated.ExitCode; code != 3 {
			t.Errorf("proxy's last exit %d, want 3", code)
		}
		if after := ids(p); after["app"] != before["app"] || after["sandbox"] != before["sandbox"] {
			t.Errorf("more than the sidecar changed: %v -> %v", before, after)
		}
		if e.procStart("side", "app") != appStart {
			t.Errorf("the app's process changed")
		}
	})

	t.Run("removing the pod stops the app first, then the sidecar", func(t *testing.T) {
		e.remove("rev1", "side.yaml", "side")
		lines := readLines(t, order)
		app, proxy := -1, -1
		for i, l := range lines {
			switch l {
			case "app-stopped":
				app = i
			case "proxy-stopped":
				proxy = i
			}
		}
		if app < 0 || proxy < app {
			t.Errorf("stop order in %v: want app-stopped before proxy-stopped", lines)
		}
	})

	t.Run("a restartPolicy Never pod with a sidecar completes when its app is done", func(t *testing.T) {
		e.write("rev1", "job.yaml", jobPod)
		p := e.podFor("job", "Succeeded", func(p *reconcile.Pod) error {
			if p.Status.Phase != reconcile.PhaseSucceeded {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		if l := statusOf(p.Status.InitContainerStatuses, "logger"); l == nil || l.State.Terminated == nil {
			t.Errorf("the sidecar still runs: %+v", l)
		}
		if w := statusOf(p.Status.ContainerStatuses, "work"); w.State.Terminated == nil || w.State.Terminated.ExitCode != 0 {
			t.Errorf("work: %+v", w)
		}
		out, _, _ := e.cli("get", "pods")
		if !regexp.MustCompile(`job\s+0/2\s+Completed`).MatchString(out) {
			t.Errorf("get pods:\n%s", out)
		}
		e.remove("rev1", "job.yaml", "job")
	})

	if procs := e.podProcesses(); len(procs) != 0 {
		t.Errorf("census: processes left in pod cgroups: %v", procs)
	}
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}

const downwardPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: info
  labels: {app: web, tier: %s}
  annotations: {build: "7"}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    resources: {limits: {memory: 64Mi}, requests: {cpu: 250m}}
    env:
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    volumeMounts:
    - {name: podinfo, mountPath: /etc/podinfo}
    - {name: all, mountPath: /etc/all}
  volumes:
  - name: podinfo
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: tier, fieldRef: {fieldPath: "metadata.labels['tier']"}}
      - {path: mem, resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Mi}}
  - name: all
    projected:
      sources:
      - configMap: {name: cfg}
      - downwardAPI:
          items: [{path: annotations, fieldRef: {fieldPath: metadata.annotations}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {color: %s}
`

func TestAgentDownwardAPIEndToEnd(t *testing.T) {
	e := newAgentEnv(t)
	e.start()
	e.write("rev1", "info.yaml", fmt.Sprintf(downwardPodYAML, "front", "blue"))
	e.running("info")
	if got := e.exec("info", "app", "cat", "/etc/podinfo/labels"); got != "app=\"web\"\ntier=\"front\"" {
		t.Errorf("labels file %q", got)
	}
	if got := e.exec("info", "app", "cat", "/etc/podinfo/mem"); got != "64" {
		t.Errorf("mem file %q, want 64", got)
	}
	if got := e.exec("info", "app", "sh", "-c", "echo $MEM_MI $CPU_M"); got != "64 250" {
		t.Errorf("resourceFieldRef env %q, want \"64 250\"", got)
	}
	// The files hold the values without a final newline, as the kubelet's.
	if got := e.exec("info", "app", "sh", "-c", "cat /etc/all/color; echo; cat /etc/all/annotations"); got != "blue\nbuild=\"7\"" {
		t.Errorf("projected files %q", got)
	}
	before := ids(e.running("info"))
	start := e.procStart("info", "app")

	// Edit a label and the ConfigMap: the files follow, nothing restarts.
	e.write("rev1", "info.yaml", fmt.Sprintf(downwardPodYAML, "back", "green"))
	e.eventually("the files follow the edit", func() error {
		got := e.exec("info", "app", "sh", "-c", "cat /etc/podinfo/tier; echo; cat /etc/all/color")
		if got != "back\ngreen" {
			return fmt.Errorf("files %q", got)
		}
		return nil
	})
	if after := ids(e.running("info")); fmt.Sprint(after) != fmt.Sprint(before) || e.procStart("info", "app") != start {
		t.Errorf("the edit restarted something: %v -> %v", before, after)
	}
	e.remove("rev1", "info.yaml", "info")
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}

// podmanPVC and podmanPod are what podman 4.3.1's kube generate wrote
// for a pod using the named volume dbdata (its image renamed to the test
// image; it also ran the container as sleep 3600).
const podmanPVC = `# Created with podman-4.3.1
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  annotations:
    volume.podman.io/driver: local
  creationTimestamp: "2026-12-05T00:28:01Z"
  name: dbdata
spec:
  accessModes:
  - ReadWriteOnce
  resources:
    requests:
      storage: 1Gi
status: {}
`

const podmanPod = `# Created with podman-4.3.1
apiVersion: v1
kind: Pod
metadata:
  annotations:
    io.kubernetes.cri-o.ContainerType/app: container
    io.kubernetes.cri-o.TTY/app: "false"
    io.podman.annotations.autoremove/app: "FALSE"
  creationTimestamp: "2026-12-05T00:28:01Z"
  labels:
    app: web
  name: web
spec:
  automountServiceAccountToken: false
  containers:
  - command:
    - sh
    - -c
    - trap 'exit 0' TERM; sleep 3600 & wait
    env:
    - name: MODE
      value: prod
    image: busybox:1.36
    name: app
    resources: {}
    securityContext:
      capabilities:
        drop:
        - CAP_MKNOD
        - CAP_NET_RAW
        - CAP_AUDIT_WRITE
    volumeMounts:
    - mountPath: /var/lib/data
      name: dbdata-pvc
  enableServiceLinks: false
  hostname: web
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  volumes:
  - name: dbdata-pvc
    persistentVolumeClaim:
      claimName: dbdata
status: {}
`

type volumeEntry struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Path      string   `json:"path"`
	UsedBy    []string `json:"usedBy"`
	Quota     struct {
		Size     int64  `json:"size"`
		Enforced bool   `json:"enforced"`
		Reason   string `json:"reason"`
	} `json:"quota"`
}

func (e *agentEnv) volumes() []volumeEntry {
	e.t.Helper()
	out, errOut, code := e.cli("volume", "ls", "-o", "json")
	if code != 0 {
		e.t.Fatalf("volume ls: exit %d: %s", code, errOut)
	}
	var vols []volumeEntry
	if err := json.Unmarshal([]byte(out), &vols); err != nil {
		e.t.Fatalf("volume ls -o json: %v\n%s", err, out)
	}
	return vols
}

// A claim's volume outlives its pod: written, the pod deleted and
// recreated, read back; `volume rm` refuses it while the pod runs.
func TestAgentPersistentVolumesEndToEnd(t *testing.T) {
	e := newAgentEnv(t)
	e.start()
	e.write("rev1", "web.yaml", podmanPVC+"---\n"+podmanPod)
	first := ids(e.running("web"))
	e.exec("web", "app", "sh", "-c", "echo kept > /var/lib/data/file")

	vols := e.volumes()
	if len(vols) != 1 || vols[0].Name != "dbdata" || vols[0].Namespace != "default" || len(vols[0].UsedBy) != 1 ||
		vols[0].Quota.Size != 1<<30 {
		t.Fatalf("volume ls: %+v", vols)
	}
	if !vols[0].Quota.Enforced && vols[0].Quota.Reason == "" {
		t.Errorf("an advisory size without a reason: %+v", vols[0].Quota)
	}
	if b, err := os.ReadFile(filepath.Join(vols[0].Path, "file")); err != nil || string(b) != "kept\n" {
		t.Errorf("on the host, %s/file: %q, %v", vols[0].Path, b, err)
	}
	_, errOut, code := e.cli("volume", "rm", "dbdata")
	if code != 1 || !strings.Contains(errOut, "in use by") || !strings.Contains(errOut, "pod default/web") {
		t.Errorf("volume rm of a volume in use: exit %d, %s", code, errOut)
	}
	if got := e.exec("web", "app", "cat", "/var/lib/data/file"); got != "kept" {
		t.Fatalf("after a refused rm: %q", got)
	}

	e.remove("rev1", "web.yaml", "web")
	if vols := e.volumes(); len(vols) != 1 || len(vols[0].UsedBy) != 0 {
		t.Fatalf("after the pod went: %+v", vols)
	}
	e.write("rev1", "web.yaml", podmanPVC+"---\n"+podmanPod)
	if second := ids(e.running("web")); second["sandbox"] == first["sandbox"] {
		t.Fatalf("the pod was not recreated: %v", second)
	}
	if got := e.exec("web", "app", "cat", "/var/lib/data/file"); got != "kept" {
		t.Errorf("the recreated pod reads %q, want kept", got)
	}

	// readOnly on the claim: every mount of it is read-only.
	ro := strings.Replace(podmanPod, "claimName: dbdata", "claimName: dbdata\n      readOnly: true", 1)
	e.write("rev1", "web.yaml", podmanPVC+"---\n"+ro)
	e.eventually("read-only mount", func() error {
		p, err := e.pod("web")
		if err != nil || p.Status.Phase != reconcile.PhaseRunning {
			return fmt.Errorf("%v %+v", err, p)
		}
		var out strings.Builder
		code, err := e.client.Exec(context.Background(), "default", "web", api.ExecOptions{Container: "app",
			Cmd: []string{"sh", "-c", "echo x > /var/lib/data/other"}, Stdout: &out, Stderr: &out})
		// The new pod's refusal, not the old one's container killed
		// during the write.
		if err != nil || code == 0 || !strings.Contains(out.String(), "Read-only file system") {
			return fmt.Errorf("write into a readOnly claim: code %d, %v: %s", code, err, out.String())
		}
		return nil
	})
	if got := e.exec("web", "app", "cat", "/var/lib/data/file"); got != "kept" {
		t.Errorf("the read-only mount reads %q", got)
	}

	e.remove("rev1", "web.yaml", "web")
	out, errOut, code := e.cli("volume", "rm", "dbdata")
	if code != 0 || strings.TrimSpace(out) != "default/dbdata" {
		t.Errorf("volume rm after the pod went: exit %d\n%s%s", code, out, errOut)
	}
	if vols := e.volumes(); len(vols) != 0 {
		t.Errorf("volumes left: %+v", vols)
	}
	if _, errOut, code := e.cli("volume", "inspect", "dbdata"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("inspect a removed volume: exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.stateRoot, "persistent-volumes", "default")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("census: the volume's directories are left: %v", err)
	}
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}
