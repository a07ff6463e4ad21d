package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

const kubectlPath = "/usr/bin/kubectl"

// kubectlEnv drives the real kubectl against an agent under test, with its
// own kubeconfig (from `pelagos-agent kubeconfig`) and cache directory.
type kubectlEnv struct {
	t      *testing.T
	e      *agentEnv
	config string
	home   string
}

func newKubectl(t *testing.T, e *agentEnv, extra ...string) *kubectlEnv {
	t.Helper()
	_, err := os.Stat(kubectlPath)
	linuxtest.Require(t, err == nil, "kubectl v1.32 at "+kubectlPath)
	out, errOut, code := e.cli(append([]string{"kubeconfig"}, extra...)...)
	if code != 0 {
		t.Fatalf("kubeconfig: exit %d: %s", code, errOut)
	}
	home := t.TempDir()
	k := &kubectlEnv{t: t, e: e, config: filepath.Join(home, "config"), home: home}
	if err := os.WriteFile(k.config, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubectlEnv) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, kubectlPath, append([]string{"--kubeconfig", k.config, "--cache-dir", filepath.Join(k.home, "cache")}, args...)...)
	c.Env = append(os.Environ(), "HOME="+k.home)
	return c
}

// on is k reporting to t (a subtest).
func (k *kubectlEnv) on(t *testing.T) *kubectlEnv {
	c := *k
	c.t = t
	return &c
}

// run runs kubectl and returns stdout, stderr and the exit status.
func (k *kubectlEnv) run(args ...string) (string, string, int) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := k.cmd(ctx, args...)
	var out, errb strings.Builder
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		k.t.Fatalf("kubectl %v: %v", args, err)
	}
	k.transcribe(args, out.String()+errb.String(), code)
	return out.String(), errb.String(), code
}

// transcribe appends a command and its output to $PELAGOS_KUBECTL_TRANSCRIPT
// when set: docs/kubectl.md shows real output taken this way.
func (k *kubectlEnv) transcribe(args []string, out string, code int) {
	path := os.Getenv("PELAGOS_KUBECTL_TRANSCRIPT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		k.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "$ kubectl %s\n%s", strings.Join(args, " "), out)
	if code != 0 {
		fmt.Fprintf(f, "(exit %d)\n", code)
	}
	fmt.Fprintln(f)
}

// ok runs kubectl and fails the test unless it exits 0.
func (k *kubectlEnv) ok(args ...string) string {
	k.t.Helper()
	out, errOut, code := k.run(args...)
	if code != 0 {
		k.t.Fatalf("kubectl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// stream is a kubectl left running (-w, -f), its output lines collected.
type stream struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	lines  []string
	stderr strings.Builder
}

func (k *kubectlEnv) start(args ...string) *stream {
	k.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := k.cmd(ctx, args...)
	s := &stream{cancel: cancel, done: make(chan struct{})}
	c.Stderr = &s.stderr
	pipe, err := c.StdoutPipe()
	if err != nil {
		k.t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		k.t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
		}
		_ = c.Wait()
	}()
	k.t.Cleanup(s.stop)
	return s
}

func (s *stream) stop() {
	s.cancel()
	<-s.done
}

// transcribe records what a stream printed (see kubectlEnv.transcribe).
func (k *kubectlEnv) transcribeStream(s *stream, args ...string) {
	k.transcribe(args, s.output()+"\n^C\n", 0)
}

func (s *stream) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// waitFor waits until the stream printed a line matching re.
func (k *kubectlEnv) waitFor(s *stream, what string, re *regexp.Regexp) {
	k.t.Helper()
	k.e.eventually(what, func() error {
		if re.MatchString(s.output()) {
			return nil
		}
		return fmt.Errorf("not yet; output so far:\n%s\nstderr:\n%s", s.output(), s.stderr.String())
	})
}

const webPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web, tier: demo}
  annotations:
    kubectl.kubernetes.io/default-container: app
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: setup
    image: busybox:1.36
    command: ["sh", "-c", "echo setup done"]
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; echo hello from app; while true; do echo tick; sleep 1; done & wait"]
    resources:
      limits: {cpu: 500m, memory: 64Mi}
  - name: side
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; echo side ready; sleep 3600 & wait"]
`

const crashPodYAML = `apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "echo attempt at $(date +%s%N); exit 3"]
`

const donePodYAML = `apiVersion: v1
kind: Pod
metadata: {name: done}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "echo finished"]
`

func TestKubectlEndToEnd(t *testing.T) {
	writeDir := t.TempDir()
	if err := os.Chmod(writeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newAgentEnv(t, "--backoff-initial", "400ms", "--backoff-max", "2s", "--resync", "2s", "--api-write-dir", writeDir)
	e.start()
	k := newKubectl(t, e)
	host, _ := os.Hostname()
	e.write("rev1", "web.yaml", webPodYAML)
	e.write("rev1", "crash.yaml", crashPodYAML)
	e.write("rev1", "done.yaml", donePodYAML)
	web := e.running("web")

	t.Run("get pods: kubectl's columns and status strings", func(t *testing.T) {
		k := k.on(t)
		k.e.eventually("done Completed, crash CrashLoopBackOff", func() error {
			out, _, _ := k.run("get", "pods")
			for _, re := range []string{`(?m)^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$`, `(?m)^web\s+2/2\s+Running\s+0\s+\d+s$`,
				`(?m)^done\s+0/1\s+Completed\s+0\s+`, `(?m)^crash\s+0/1\s+CrashLoopBackOff\s+\d+ \(\d+s ago\)\s+`} {
				if !regexp.MustCompile(re).MatchString(out) {
					return fmt.Errorf("%s not in:\n%s", re, out)
				}
			}
			return nil
		})
		out := k.ok("get", "pods", "-o", "wide")
		re := regexp.MustCompile(`(?m)^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES$`)
		row := regexp.MustCompile(`(?m)^web\s+2/2\s+Running\s+0\s+\S+\s+` + regexp.QuoteMeta(web.Status.PodIP) + `\s+` + regexp.QuoteMeta(host) + `\s+<none>\s+<none>$`)
		if !re.MatchString(out) || !row.MatchString(out) {
			t.Errorf("get pods -o wide:\n%s", out)
		}
	})

	t.Run("get pod -o json, yaml, jsonpath, name, custom-columns", func(t *testing.T) {
		k := k.on(t)
		var pod struct {
			Kind     string
			Metadata struct {
				Name, UID, ResourceVersion, CreationTimestamp string
				Annotations                                   map[string]string
			}
			Spec   struct{ NodeName string }
			Status struct {
				Phase, PodIP, QOSClass string
				ContainerStatuses      []struct {
					Name  string
					Ready bool
				}
			}
		}
		if err := json.Unmarshal([]byte(k.ok("get", "pod", "web", "-o", "json")), &pod); err != nil {
			t.Fatal(err)
		}
		if pod.Kind != "Pod" || pod.Metadata.Name != "web" || pod.Metadata.UID == "" || pod.Metadata.ResourceVersion == "" ||
			pod.Metadata.CreationTimestamp == "" || pod.Spec.NodeName != host || pod.Status.Phase != "Running" ||
			pod.Status.PodIP != web.Status.PodIP || pod.Status.QOSClass != "Burstable" || len(pod.Status.ContainerStatuses) != 2 ||
			!strings.HasSuffix(pod.Metadata.Annotations["pelagos.io/source-file"], "web.yaml") {
			t.Errorf("get pod -o json: %+v", pod)
		}
		again := k.ok("get", "pod", "web", "-o", "jsonpath={.metadata.uid} {.metadata.creationTimestamp}")
		if again != pod.Metadata.UID+" "+pod.Metadata.CreationTimestamp {
			t.Errorf("uid and creationTimestamp are not stable: %q then %q", pod.Metadata.UID+" "+pod.Metadata.CreationTimestamp, again)
		}
		var list struct {
			Kind  string
			Items []struct{ Kind string }
		}
		if err := json.Unmarshal([]byte(k.ok("get", "pods", "-o", "json")), &list); err != nil || list.Kind != "List" || len(list.Items) != 3 || list.Items[0].Kind != "Pod" {
			t.Errorf("get pods -o json: %v %+v", err, list)
		}
		y := k.ok("get", "pod", "web", "-o", "yaml")
		var fromYAML map[string]any
		if err := yaml.Unmarshal([]byte(y), &fromYAML); err != nil || fromYAML["kind"] != "Pod" {
			t.Errorf("get pod -o yaml: %v\n%s", err, y)
		}
		if ip := k.ok("get", "pod", "web", "-o", "jsonpath={.status.podIP}"); ip != web.Status.PodIP {
			t.Errorf("jsonpath podIP %q, want %q", ip, web.Status.PodIP)
		}
		if out := k.ok("get", "pods", "-o", "name"); out != "pod/crash\npod/done\npod/web\n" {
			t.Errorf("-o name:\n%s", out)
		}
		out := k.ok("get", "pod", "web", "-o", "custom-columns=NAME:.metadata.name,IMAGE:.spec.containers[0].image,NODE:.spec.nodeName")
		if !regexp.MustCompile(`^NAME\s+IMAGE\s+NODE\nweb\s+busybox:1.36\s+` + regexp.QuoteMeta(host) + `\n$`).MatchString(out) {
			t.Errorf("custom-columns:\n%s", out)
		}
	})

	t.Run("label and field selectors", func(t *testing.T) {
		k := k.on(t)
		if out := k.ok("get", "pods", "-l", "app=web", "-o", "name"); out != "pod/web\n" {
			t.Errorf("-l app=web: %q", out)
		}
		if out := k.ok("get", "pods", "-l", "tier in (demo),app!=db", "-o", "name"); out != "pod/web\n" {
			t.Errorf("set-based selector: %q", out)
		}
		if _, errOut, _ := k.run("get", "pods", "-l", "app=none"); !strings.Contains(errOut, "No resources found in default namespace.") {
			t.Errorf("-l app=none: %q", errOut)
		}
		if out := k.ok("get", "pods", "--field-selector", "status.phase=Succeeded", "-o", "name"); out != "pod/done\n" {
			t.Errorf("status.phase=Succeeded: %q", out)
		}
		if out := k.ok("get", "pods", "--field-selector", "metadata.name=web,spec.nodeName="+host, "-o", "name"); out != "pod/web\n" {
			t.Errorf("metadata.name and spec.nodeName: %q", out)
		}
		if _, errOut, code := k.run("get", "pods", "--field-selector", "spec.bogus=1"); code == 0 || !strings.Contains(errOut, "field label not supported: spec.bogus") {
			t.Errorf("unknown field label: exit %d %q", code, errOut)
		}
	})

	t.Run("get pods -w sees a pod go Running, then deleted", func(t *testing.T) {
		k := k.on(t)
		s := k.start("get", "pods", "-w", "--output-watch-events")
		k.waitFor(s, "the initial list", regexp.MustCompile(`(?m)^ADDED\s+web\s+2/2\s+Running`))
		e.write("rev1", "watched.yaml", `apiVersion: v1
kind: Pod
metadata: {name: watched}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
`)
		k.waitFor(s, "watched Running", regexp.MustCompile(`(?m)^(ADDED|MODIFIED)\s+watched\s+1/1\s+Running`))
		if err := os.Remove(filepath.Join(e.repo, "rev1", "watched.yaml")); err != nil {
			t.Fatal(err)
		}
		k.waitFor(s, "watched Terminating", regexp.MustCompile(`(?m)^MODIFIED\s+watched\s+\S+\s+Terminating`))
		k.waitFor(s, "watched deleted", regexp.MustCompile(`(?m)^DELETED\s+watched\s+`))
		s.stop()
		k.transcribeStream(s, "get", "pods", "-w", "--output-watch-events")
	})

	t.Run("describe pod", func(t *testing.T) {
		k := k.on(t)
		out := k.ok("describe", "pod", "web")
		for _, want := range []string{"Name:", "web", "Node:", host, "Status:", "Running", "IP:", web.Status.PodIP,
			"Init Containers:", "setup:", "Containers:", "app:", "side:", "Limits:", "memory:", "64Mi", "QoS Class:", "Burstable",
			"Conditions:", "Ready", "Events:", "Started"} {
			if !strings.Contains(out, want) {
				t.Errorf("describe pod web lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("logs: default container, -c, --tail, -f, -p, errors", func(t *testing.T) {
		k := k.on(t)
		out := k.ok("logs", "web")
		if !strings.HasPrefix(out, "hello from app\ntick\n") {
			t.Errorf("logs web (default container app):\n%s", out)
		}
		if out := k.ok("logs", "web", "-c", "side"); out != "side ready\n" {
			t.Errorf("logs -c side: %q", out)
		}
		if out := k.ok("logs", "web", "-c", "setup"); out != "setup done\n" {
			t.Errorf("logs -c setup (init): %q", out)
		}
		if out := k.ok("logs", "web", "--tail=1"); out != "tick\n" {
			t.Errorf("--tail=1: %q", out)
		}
		if out := k.ok("logs", "web", "--tail=2", "--timestamps"); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+Z tick\n\S+ tick\n$`).MatchString(out) {
			t.Errorf("--tail=2 --timestamps: %q", out)
		}
		if out := k.ok("logs", "web", "--limit-bytes=5"); out != "hello" {
			t.Errorf("--limit-bytes=5: %q", out)
		}
		if out := k.ok("logs", "web", "-c", "side", "--since=1h"); out != "side ready\n" {
			t.Errorf("--since=1h: %q", out)
		}
		s := k.start("logs", "web", "-f", "--tail=0")
		k.waitFor(s, "a new tick while following", regexp.MustCompile(`(?m)^tick$`))
		s.stop()
		k.transcribeStream(s, "logs", "web", "-f", "--tail=0")
		k.e.eventually("a previous attempt of crash", func() error {
			out, errOut, code := k.run("logs", "crash", "-p")
			if code != 0 || !strings.HasPrefix(out, "attempt at ") {
				return fmt.Errorf("exit %d: %s%s", code, out, errOut)
			}
			return nil
		})
		if _, errOut, code := k.run("logs", "done", "-p"); code == 0 || !strings.Contains(errOut, `previous terminated container "c" in pod "done" not found`) {
			t.Errorf("logs -p without a previous one: exit %d %q", code, errOut)
		}
		if _, errOut, code := k.run("logs", "web", "-c", "nope"); code == 0 || !strings.Contains(errOut, "container nope is not valid for pod web") {
			t.Errorf("logs -c nope: exit %d %q", code, errOut)
		}
		if _, errOut, code := k.run("logs", "nope"); code == 0 || !strings.Contains(errOut, `pods "nope" not found`) {
			t.Errorf("logs of a missing pod: exit %d %q", code, errOut)
		}
	})

	t.Run("get events -w, and events.k8s.io", func(t *testing.T) {
		k := k.on(t)
		s := k.start("get", "events", "-w")
		e.write("rev1", "evt.yaml", strings.ReplaceAll(donePodYAML, "name: done", "name: evt"))
		k.waitFor(s, "the Started event of evt", regexp.MustCompile(`(?m)\s+Normal\s+Started\s+pod/evt\s+`))
		s.stop()
		k.transcribeStream(s, "get", "events", "-w")
		out := k.ok("get", "events.events.k8s.io", "--field-selector", "regarding.name=crash", "-o", "json")
		var l struct {
			Items []struct {
				APIVersion, Reason, Note, EventTime string
				Regarding                           struct{ Kind, Name, UID string }
			}
		}
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatal(err)
		}
		uid := k.ok("get", "pod", "crash", "-o", "jsonpath={.metadata.uid}")
		if len(l.Items) == 0 {
			t.Fatalf("no events.k8s.io events about crash")
		}
		for _, ev := range l.Items {
			if ev.APIVersion != "events.k8s.io/v1" || ev.EventTime == "" || ev.Note == "" || ev.Regarding.Kind != "Pod" ||
				ev.Regarding.Name != "crash" || ev.Regarding.UID != uid {
				t.Errorf("events.k8s.io event: %+v", ev)
			}
		}
		if err := os.Remove(filepath.Join(e.repo, "rev1", "evt.yaml")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("get nodes -o wide", func(t *testing.T) {
		k := k.on(t)
		out := k.ok("get", "nodes", "-o", "wide")
		re := regexp.MustCompile(`(?m)^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\s+INTERNAL-IP\s+EXTERNAL-IP\s+OS-IMAGE\s+KERNEL-VERSION\s+CONTAINER-RUNTIME$`)
		row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(host) + `\s+Ready\s+<none>\s+\S+\s+v\S+\s+\d+\.\d+\.\d+\.\d+\s+<none>\s+.+\s+\S+\s+pelagos://\S+$`)
		if !re.MatchString(out) || !row.MatchString(out) {
			t.Errorf("get nodes -o wide:\n%s", out)
		}
		caps := k.ok("get", "node", host, "-o", "jsonpath={.status.capacity.pods} {.status.allocatable.cpu} {.metadata.labels.kubernetes\\.io/os}")
		if !regexp.MustCompile(`^110 \d+ linux$`).MatchString(caps) {
			t.Errorf("node capacity and labels: %q", caps)
		}
		conds := k.ok("get", "node", host, "-o", `jsonpath={range .status.conditions[*]}{.type}={.status} {end}`)
		for _, c := range []string{"MemoryPressure=False", "DiskPressure=False", "PIDPressure=False", "Ready=True"} {
			if !strings.Contains(conds, c) {
				t.Errorf("node conditions %q lack %s", conds, c)
			}
		}
	})

	t.Run("api-resources, auth can-i, describe node", func(t *testing.T) {
		k := k.on(t)
		out := k.ok("api-resources")
		for _, re := range []string{`(?m)^pods\s+po\s+v1\s+true\s+Pod$`, `(?m)^nodes\s+no\s+v1\s+false\s+Node$`,
			`(?m)^events\s+ev\s+events.k8s.io/v1\s+true\s+Event$`, `(?m)^pods\s+metrics.k8s.io/v1beta1\s+true\s+PodMetrics$`} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("api-resources lacks %s:\n%s", re, out)
			}
		}
		if out := k.ok("auth", "can-i", "delete", "pods"); out != "yes\n" {
			t.Errorf("admin can-i delete pods: %q", out)
		}
		ro := newKubectl(t, e, "--read-only")
		if out, _, _ := ro.run("auth", "can-i", "get", "secrets"); out != "no\n" {
			t.Errorf("viewer can-i get secrets: %q", out)
		}
		out = k.ok("describe", "node", host)
		if strings.Contains(out, "Failed to get lease") {
			t.Errorf("describe node found no lease:\n%s", out)
		}
		for _, want := range []string{"Name:", host, "kubernetes.io/os=linux", "Conditions:", "MemoryPressure", "KubeletReady",
			"Addresses:", "InternalIP:", "Capacity:", "pods:", "110", "System Info:", "Container Runtime Version:  pelagos://",
			"Non-terminated Pods:", "web"} {
			if !strings.Contains(out, want) {
				t.Errorf("describe node lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("top pod and top node", func(t *testing.T) {
		k := k.on(t)
		out := k.ok("top", "pod", "web", "--containers")
		if !regexp.MustCompile(`(?m)^POD\s+NAME\s+CPU\(cores\)\s+MEMORY\(bytes\)\s*$`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^web\s+app\s+\d+m\s+\d+Mi\s*$`).MatchString(out) {
			t.Errorf("top pod --containers:\n%s", out)
		}
		out = k.ok("top", "node")
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(host) + `\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%\s*$`).MatchString(out) {
			t.Errorf("top node:\n%s", out)
		}
	})

	t.Run("explain pod.spec", func(t *testing.T) {
		k := k.on(t)
		out := k.ok("explain", "pod.spec")
		for _, want := range []string{"KIND:", "Pod", "FIELD: spec <PodSpec>", "containers\t<[]Container> -required-", "restartPolicy\t<string>"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain pod.spec lacks %q:\n%s", want, out)
			}
		}
		out = k.ok("explain", "pod.spec.containers.resources.limits")
		if !strings.Contains(out, "Limits describes the maximum amount of compute resources allowed") {
			t.Errorf("explain pod.spec.containers.resources.limits:\n%s", out)
		}
	})

	t.Run("apply, configure and delete in the write directory", func(t *testing.T) {
		k := k.on(t)
		// Not t.TempDir(): kubectl -f splits its argument at commas.
		dir, err := os.MkdirTemp("", "kubectl-apply-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		file := filepath.Join(dir, "applied.yaml")
		manifest := `apiVersion: v1
kind: Pod
metadata:
  name: applied
  labels: {via: kubectl}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "trap 'exit 0' TERM; echo v1; sleep 3600 & wait"]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {color: blue}
`
		if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := k.ok("apply", "-f", file); out != "pod/applied created\nconfigmap/settings created\n" {
			t.Errorf("apply: %q", out)
		}
		written := filepath.Join(writeDir, "pod_default_applied.yaml")
		if _, err := os.Stat(written); err != nil {
			t.Errorf("apply wrote no manifest: %v", err)
		}
		e.running("applied")
		if out := k.ok("get", "configmap", "settings", "-o", "jsonpath={.data.color}"); out != "blue" {
			t.Errorf("applied configmap: %q", out)
		}
		// A change: the strategic merge patch kubectl sends rewrites the file.
		if err := os.WriteFile(file, []byte(strings.Replace(manifest, "echo v1", "echo v2", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := k.ok("apply", "-f", file); out != "pod/applied configured\nconfigmap/settings unchanged\n" {
			t.Errorf("apply again: %q", out)
		}
		k.e.eventually("applied runs v2", func() error {
			out, _, _ := k.run("logs", "applied")
			if out != "v2\n" {
				return fmt.Errorf("logs %q", out)
			}
			return nil
		})
		b, _ := os.ReadFile(written)
		if !strings.Contains(string(b), "echo v2") || !strings.Contains(string(b), "last-applied-configuration") ||
			strings.Contains(string(b), "resourceVersion") || strings.Contains(string(b), "nodeName") || strings.Contains(string(b), "status:") {
			t.Errorf("the written manifest:\n%s", b)
		}
		if out := k.ok("label", "pod", "applied", "extra=yes"); out != "pod/applied labeled\n" {
			t.Errorf("label: %q", out)
		}
		if out := k.ok("delete", "-f", file); !strings.Contains(out, `pod "applied" deleted`) || !strings.Contains(out, `configmap "settings" deleted`) {
			t.Errorf("delete -f: %q", out)
		}
		if _, err := os.Stat(written); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("delete left the manifest: %v", err)
		}
		e.gone("applied")
	})

	t.Run("writes are refused where they must be", func(t *testing.T) {
		k := k.on(t)
		_, errOut, code := k.run("delete", "pod", "web")
		if code == 0 || !strings.Contains(errOut, "(MethodNotAllowed)") || !strings.Contains(errOut, "web.yaml") {
			t.Errorf("delete of a read-only pod: exit %d %q", code, errOut)
		}
		_, errOut, code = k.run("label", "pod", "web", "x=y")
		if code == 0 || !strings.Contains(errOut, "(MethodNotAllowed)") || !strings.Contains(errOut, "web.yaml") {
			t.Errorf("label of a read-only pod: exit %d %q", code, errOut)
		}
		bad := filepath.Join(k.home, "bad.yaml")
		os.WriteFile(bad, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    imagePullPolicy: Sometimes\n"), 0o644)
		_, errOut, code = k.run("apply", "-f", bad)
		if code == 0 || !strings.Contains(errOut, "spec.containers[0].imagePullPolicy") {
			t.Errorf("apply of an invalid pod: exit %d %q", code, errOut)
		}
		os.WriteFile(bad, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    imagee: x\n"), 0o644)
		_, errOut, code = k.run("apply", "-f", bad)
		if code == 0 || !strings.Contains(errOut, "imagee") {
			t.Errorf("apply of a pod with an unknown field: exit %d %q", code, errOut)
		}
		if _, err := os.Stat(filepath.Join(writeDir, "pod_default_bad.yaml")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("an invalid pod was written: %v", err)
		}
	})

	t.Run("the read-only certificate", func(t *testing.T) {
		ro := newKubectl(t, e, "--read-only")
		ro.ok("get", "pods")
		if _, errOut, code := ro.run("get", "secrets"); code == 0 || !strings.Contains(errOut, "(Forbidden)") {
			t.Errorf("viewer lists secrets: exit %d %q", code, errOut)
		}
		if _, errOut, code := ro.run("label", "pod", "web", "x=y"); code == 0 || !strings.Contains(errOut, "(Forbidden)") {
			t.Errorf("viewer writes: exit %d %q", code, errOut)
		}
	})

	t.Run("an unauthenticated TCP client is refused", func(t *testing.T) {
		k := k.on(t)
		var cfg map[string]any
		b, _ := os.ReadFile(k.config)
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		cluster := cfg["clusters"].([]any)[0].(map[string]any)["cluster"].(map[string]any)
		server := cluster["server"].(string)
		// kubectl without a client certificate (a token is no way in).
		cfg["users"] = []any{map[string]any{"name": "anon", "user": map[string]any{"token": "let-me-in"}}}
		cfg["contexts"].([]any)[0].(map[string]any)["context"].(map[string]any)["user"] = "anon"
		b, _ = yaml.Marshal(cfg)
		anon := &kubectlEnv{t: t, e: e, config: filepath.Join(t.TempDir(), "anon"), home: t.TempDir()}
		os.WriteFile(anon.config, b, 0o600)
		out, errOut, code := anon.run("get", "pods")
		if code == 0 || !strings.Contains(errOut, "certificate required") {
			t.Errorf("kubectl without a client certificate: exit %d\n%s%s", code, out, errOut)
		}
		// A certificate from another CA, claiming to be an admin.
		caPEM, _ := base64.StdEncoding.DecodeString(cluster["certificate-authority-data"].(string))
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		forged := selfSignedClient(t, "pelagos-admin", "system:masters")
		for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "a foreign certificate": {forged}} {
			conn, err := tls.Dial("tcp", strings.TrimPrefix(server, "https://"), &tls.Config{RootCAs: pool, Certificates: certs, ServerName: "127.0.0.1"})
			if err == nil {
				// TLS 1.3 reports the refusal on the first read.
				fmt.Fprintf(conn, "GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n\r\n")
				buf := make([]byte, 64)
				_, err = conn.Read(buf)
				conn.Close()
			}
			if err == nil {
				t.Errorf("%s: the server answered", name)
			}
		}
	})

	t.Run("kubectl version, and our own CLI on the same API", func(t *testing.T) {
		k := k.on(t)
		var v struct {
			ServerVersion struct{ Major, Minor, GitVersion, Platform string }
		}
		out, _, _ := k.run("version", "-o", "json")
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.ServerVersion.Major != "1" || v.ServerVersion.Minor == "" ||
			!strings.HasPrefix(v.ServerVersion.GitVersion, "v") || v.ServerVersion.Platform != "linux/amd64" && v.ServerVersion.Platform != "linux/arm64" {
			t.Errorf("kubectl version: %v %s", err, out)
		}
		uid := k.ok("get", "pod", "web", "-o", "jsonpath={.metadata.uid}")
		out, errOut, code := e.cli("get", "pod", "web", "-o", "json")
		var pod struct {
			Kind     string
			Metadata struct{ UID string }
		}
		if code != 0 || json.Unmarshal([]byte(out), &pod) != nil || pod.Kind != "Pod" || pod.Metadata.UID != uid {
			t.Errorf("pelagos-agent get pod web -o json: exit %d %s\n%s", code, errOut, out)
		}
		out, _, code = e.cli("get", "pod", "web", "-o", "yaml")
		if code != 0 || !strings.Contains(out, "kind: Pod\n") || !strings.Contains(out, "uid: "+uid) {
			t.Errorf("pelagos-agent get pod web -o yaml:\n%s", out)
		}
		out, _, code = e.cli("get", "pods", "-o", "json")
		if code != 0 || !strings.Contains(out, `"kind": "List"`) {
			t.Errorf("pelagos-agent get pods -o json:\n%s", out)
		}
	})

	t.Run("exec and port-forward through runtime/streaming", func(t *testing.T) {
		k := k.on(t)
		if out := k.ok("exec", "web", "--", "echo", "hi"); out != "hi\n" {
			t.Errorf("kubectl exec web -- echo hi: %q", out)
		}
		if _, errOut, code := k.run("exec", "web", "-c", "side", "--", "sh", "-c", "exit 3"); code != 3 {
			t.Errorf("kubectl exec ... exit 3: exit %d %q", code, errOut)
		}
		if _, errOut, code := k.run("exec", "web", "--", "no-such-command"); code != 127 {
			t.Errorf("kubectl exec of a missing command: exit %d %q, want 127", code, errOut)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := k.cmd(ctx, "exec", "-i", "web", "--", "cat")
		c.Stdin = strings.NewReader("through stdin\n")
		if out, err := c.Output(); err != nil || string(out) != "through stdin\n" {
			t.Errorf("kubectl exec -i web -- cat: %q %v", out, err)
		}
		// busybox httpd on the pod's loopback, reached through a forward.
		k.ok("exec", "web", "-c", "side", "--", "httpd", "-p", "127.0.0.1:8080", "-h", "/etc")
		pf := k.start("port-forward", "pod/web", "0:8080")
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
		k.waitFor(pf, "port-forward listening", re)
		port := re.FindStringSubmatch(pf.output())[1]
		resp, err := http.Get("http://127.0.0.1:" + port + "/hostname")
		if err != nil {
			t.Fatalf("GET through the port-forward: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "web" {
			t.Errorf("GET /hostname through the port-forward: %d %q", resp.StatusCode, body)
		}
		k.transcribeStream(pf, "port-forward", "pod/web", "0:8080")
	})

	t.Run("namespaces, configmaps and secrets from the manifests", func(t *testing.T) {
		k := k.on(t)
		e.write("rev1", "objs.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: team}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: team}
stringData: {key: s3cr3t}
`)
		k.e.eventually("namespace team", func() error {
			out, _, _ := k.run("get", "namespaces")
			if !regexp.MustCompile(`(?m)^team\s+Active\s+`).MatchString(out) || !regexp.MustCompile(`(?m)^default\s+Active\s+`).MatchString(out) ||
				!regexp.MustCompile(`(?m)^kube-node-lease\s+Active\s+`).MatchString(out) {
				return errors.New(out)
			}
			return nil
		})
		if out := k.ok("get", "configmaps", "-n", "team"); !regexp.MustCompile(`(?m)^cfg\s+2\s+\S+$`).MatchString(out) {
			t.Errorf("get configmaps:\n%s", out)
		}
		if out := k.ok("get", "secret", "token", "-n", "team", "-o", "jsonpath={.data.key}"); out != "czNjcjN0" {
			t.Errorf("secret data for the admin: %q", out)
		}
		if log, _ := os.ReadFile(e.logPath); strings.Contains(string(log), "s3cr3t") || strings.Contains(string(log), "czNjcjN0") {
			t.Errorf("the agent logged the secret")
		}
	})

	t.Run("an agent restart keeps the CA and the pods' UIDs; old versions are gone", func(t *testing.T) {
		k := k.on(t)
		uid := k.ok("get", "pod", "web", "-o", "jsonpath={.metadata.uid}")
		rv := k.ok("get", "pod", "web", "-o", "jsonpath={.metadata.resourceVersion}")
		ca, _ := os.ReadFile(filepath.Join(e.stateRoot, "kubeapi", "ca.crt"))
		e.stop(9)
		e.start()
		k2 := newKubectl(t, e)
		if after, _ := os.ReadFile(filepath.Join(e.stateRoot, "kubeapi", "ca.crt")); string(after) != string(ca) || len(ca) == 0 {
			t.Errorf("the CA changed across a restart")
		}
		for _, f := range []string{"ca.key", "server.key", "admin.key", "viewer.key"} {
			if st, err := os.Stat(filepath.Join(e.stateRoot, "kubeapi", f)); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v", f, err, st.Mode())
			}
		}
		if got := k2.ok("get", "pod", "web", "-o", "jsonpath={.metadata.uid}"); got != uid {
			t.Errorf("uid %s became %s", uid, got)
		}
		// A watch from a version the earlier agent handed out: 410 Gone.
		var cfg struct {
			Clusters []struct{ Cluster map[string]string }
			Users    []struct{ User map[string]string }
		}
		b, _ := os.ReadFile(k2.config)
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		dec := func(s string) []byte { d, _ := base64.StdEncoding.DecodeString(s); return d }
		cert, err := tls.X509KeyPair(dec(cfg.Users[0].User["client-certificate-data"]), dec(cfg.Users[0].User["client-key-data"]))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(dec(cfg.Clusters[0].Cluster["certificate-authority-data"]))
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
		resp, err := hc.Get(cfg.Clusters[0].Cluster["server"] + "/api/v1/pods?watch=true&resourceVersion=" + rv)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ev struct {
			Type   string
			Object struct {
				Code   int
				Reason string
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil || ev.Type != "ERROR" || ev.Object.Code != 410 || ev.Object.Reason != "Expired" {
			t.Errorf("watch from the earlier agent's version %s: %v %+v", rv, err, ev)
		}
	})
	// Nothing is left behind: the manifests go, every pod with them.
	e.removeAll()
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
	if procs := e.podProcesses(); len(procs) != 0 {
		t.Errorf("census: processes left in pod cgroups: %v", procs)
	}
}

// selfSignedClient is a client certificate no agent issued.
func selfSignedClient(t *testing.T, cn, org string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	c, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
