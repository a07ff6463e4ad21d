package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// cliWeb is a pod with most of what describe shows: an init container,
// command and args, ports, every kind of env value, envFrom, limits and
// requests, probes of three kinds, volumes of four kinds, and a container
// that crashes.
var cliWeb = fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web, tier: front}
  annotations:
    example.com/owner: team-a
    example.com/notes: "first line\nsecond line"
    example.com/long: "%s"
spec:
  initContainers:
  - name: setup
    image: busybox:1.36
    command: [sh, -c, "echo ready > /work/flag"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: busybox:1.36
    command: [httpd, -f]
    args: [-p, "8080", -h, /www]
    ports:
    - {name: http, containerPort: 8080, hostPort: 18080}
    env:
    - {name: MODE, value: production}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: db, key: password}}
    - name: LEVEL
      valueFrom: {configMapKeyRef: {name: settings, key: level, optional: true}}
    - name: POD
      valueFrom: {fieldRef: {apiVersion: v1, fieldPath: metadata.name}}
    envFrom:
    - configMapRef: {name: settings}
    - {secretRef: {name: db}, prefix: DB_}
    resources:
      limits: {cpu: 500m, memory: 64Mi}
      requests: {cpu: 250m, memory: 32Mi}
    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
    readinessProbe:
      exec: {command: [cat, /tmp/ready]}
      periodSeconds: 5
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: conf, mountPath: /etc/app, readOnly: true}
    - {name: creds, mountPath: /etc/creds, readOnly: true}
    - {name: host, mountPath: /host/log, readOnly: true}
    - {name: info, mountPath: /etc/podinfo, readOnly: true}
    - {name: conf, mountPath: /etc/level, subPath: level, readOnly: true}
  - name: crash
    image: busybox:1.36
    command: [sh, -c, "exit 3"]
    readinessProbe:
      tcpSocket: {port: 8080}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: conf, configMap: {name: settings}}
  - {name: creds, secret: {secretName: db}}
  - {name: host, hostPath: {path: /var/log, type: Directory}}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: cpu, resourceFieldRef: {containerName: app, resource: limits.cpu}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {level: debug}
---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2}
`, strings.Repeat("a long annotation value ", 8))

// cliDB is a small pod whose manifest breaks later (it keeps running its
// last good version); cliHostNet is a host-network pod in another
// namespace.
const cliDB = `apiVersion: v1
kind: Pod
metadata: {name: db}
spec:
  containers:
  - {name: db, image: busybox:1.36, command: [sleep, "3600"]}
`

const cliHostNet = `apiVersion: v1
kind: Pod
metadata: {name: edge, namespace: infra}
spec:
  hostNetwork: true
  containers:
  - {name: proxy, image: busybox:1.36, command: [sleep, "3600"], resources: {limits: {cpu: "1", memory: 1Gi}}}
`

// cliReport has a projected volume, which kubectl 1.32 describes wrongly
// (a pointer for a Secret's Optional), so it is left out of the
// comparison with kubectl.
const cliReport = `apiVersion: v1
kind: Pod
metadata: {name: report, namespace: infra}
spec:
  containers:
  - name: report
    image: busybox:1.36
    command: [sleep, "3600"]
    volumeMounts: [{name: bundle, mountPath: /etc/bundle, readOnly: true}]
  volumes:
  - name: bundle
    projected:
      sources:
      - configMap: {name: settings}
      - secret: {name: db, optional: true}
      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: infra}
data: {level: info}
`

// newDescribedAgent runs the four pods: web's crashing container goes
// round its back-off three times, db's manifest breaks.
func newDescribedAgent(t *testing.T) *cliAgent {
	t.Helper()
	a := newCLIAgent(t, map[string]string{"web.yaml": cliWeb, "db.yaml": cliDB, "edge.yaml": cliHostNet, "report.yaml": cliReport})
	for range 3 {
		a.advance(10 * time.Minute)
		a.settle()
	}
	a.advance(time.Minute)
	a.write(map[string]string{"db.yaml": strings.Replace(cliDB, "image:", "imagee:", 1)})
	a.advance(30 * time.Second)
	return a
}

// TestDescribeGolden: describe's text is the contract (golden files): one
// pod with its events, every pod of a namespace (no events, as kubectl),
// every namespace, a name prefix, and the refusals.
func TestDescribeGolden(t *testing.T) {
	a := newDescribedAgent(t)
	a.measureAges()
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"describe/web.golden", []string{"describe", "pod", "web"}},
		{"describe/default.golden", []string{"describe", "pods"}},
		{"describe/all-namespaces.golden", []string{"describe", "po", "-A"}},
		{"describe/infra-events.golden", []string{"describe", "pod", "-n", "infra", "--show-events"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, errOut, err := a.cli(tc.args...)
			if err != nil || errOut != "" {
				t.Fatalf("%v: %v %s", tc.args, err, errOut)
			}
			golden(t, tc.golden, a.normalize(out))
		})
	}
	// A name no pod has is a prefix, as kubectl's.
	byName, _, _ := a.cli("describe", "pod", "web")
	if out, _, err := a.cli("describe", "pod", "we"); err != nil || out != byName {
		t.Errorf("describe pod we: %v\n%s", err, out)
	}
	if out, errOut, err := a.cli("describe", "pod", "nosuch"); exitCode(err) != exitFailure || out != "" ||
		!strings.Contains(errOut, `pods "nosuch" not found`) {
		t.Errorf("describe pod nosuch: exit %d %q %q", exitCode(err), out, errOut)
	}
	if out, errOut, err := a.cli("describe", "pod", "-n", "empty"); err != nil || out != "" ||
		errOut != "No resources found in empty namespace.\n" {
		t.Errorf("describe in an empty namespace: %v %q %q", err, out, errOut)
	}
	if _, errOut, err := a.cli("describe", "node", "x"); exitCode(err) != exitUsage || !strings.Contains(errOut, "only pod") {
		t.Errorf("describe node: exit %d %q", exitCode(err), errOut)
	}
}

// TestDescribeMatchesKubectl: for the same served pod, describe prints
// what kubectl describe pod prints, line for line, apart from the lines
// only the agent has (its facts, which kubectl shows as annotations, and a
// waiting container's message). kubectl here is 1.32, which still wrote
// probes' thresholds as #success/#failure and neither port names nor the
// field path of an event; those older forms are mapped to the current
// ones (kubectl 1.37's, which describe follows).
func TestDescribeMatchesKubectl(t *testing.T) {
	_, err := os.Stat(kubectlPath)
	linuxtest.Require(t, err == nil, "kubectl at "+kubectlPath)
	// Ages of a hundred days read the same in both, whatever second each
	// command runs in.
	defer func(orig time.Time) { cliEpoch = orig }(cliEpoch)
	cliEpoch = time.Now().Add(-100 * 24 * time.Hour)
	a := newDescribedAgent(t)
	kubeconfig := a.serveTLS()
	agentOnly := regexp.MustCompile(`^(Manifest|Sandbox|Netns|Pause PID|Last Error):|^      Message:`)
	newerForms := []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`^(\s+(Host )?Ports?:\s+.*) \([a-z0-9-]+\)$`), "$1"},
		{regexp.MustCompile(`successThreshold=(\d+) failureThreshold=(\d+)`), "#success=$1 #failure=$2"},
		{regexp.MustCompile(`(pelagos-agent  )spec\.(init)?[cC]ontainers\{[a-z0-9-]+\}: `), "$1"},
	}
	for _, args := range [][]string{{"describe", "pod", "web"}, {"describe", "pod", "db"}, {"describe", "pod", "edge", "-n", "infra"}} {
		out, errOut, err := a.cli(args...)
		if err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
		var ours []string
		for _, l := range strings.Split(out, "\n") {
			if agentOnly.MatchString(l) {
				continue
			}
			for _, f := range newerForms {
				l = f.re.ReplaceAllString(l, f.with)
			}
			ours = append(ours, l)
		}
		cmd := exec.Command(kubectlPath, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		kout, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubectl %v: %v", args, err)
		}
		theirs := withoutAgentAnnotations(strings.Split(string(kout), "\n"))
		if got, want := strings.Join(ours, "\n"), strings.Join(theirs, "\n"); got != want {
			t.Errorf("%v differs from kubectl's:\n--- ours\n%s\n--- kubectl\n%s", args, got, want)
		}
	}
}

// withoutAgentAnnotations drops the agent's annotations (and the lines a
// long one continues on) from kubectl's Annotations field, leaving
// <none> when no other annotation is left.
func withoutAgentAnnotations(lines []string) []string {
	var out []string
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "Annotations:") {
			out = append(out, lines[i])
			continue
		}
		col := len(lines[i]) - len(strings.TrimLeft(lines[i][len("Annotations:"):], " "))
		var kept []string
		keep := false
		for j := i; j < len(lines); j++ {
			l := lines[j]
			if j > i && (len(l) < col || strings.TrimSpace(l[:col]) != "") {
				break // the next field
			}
			v := l[col:]
			if !strings.HasPrefix(v, "  ") { // an annotation's first line
				keep = !strings.HasPrefix(v, "pelagos.io/")
			}
			if keep {
				kept = append(kept, l)
			}
			i = j
		}
		if len(kept) == 0 {
			kept = []string{"Annotations:" + strings.Repeat(" ", col-len("Annotations:")) + "<none>"}
		}
		kept[0] = "Annotations:" + kept[0][len("Annotations:"):]
		out = append(out, kept...)
	}
	return out
}

// TestDescribeResourceValue: a resourceFieldRef shows what the container
// gets — an unset limit is the pod-level one — and the largest quantities
// divide without wrapping (8Ei−1 bytes in Mi used to print a negative
// number).
func TestDescribeResourceValue(t *testing.T) {
	huge := resource.MustParse("9223372036854775807")
	c := &corev1.Container{Resources: corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: huge},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Resources: &corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")}}}}
	for _, tc := range []struct{ ref, divisor, want string }{
		{"limits.memory", "1Mi", "8796093022208"},
		{"limits.memory", "", "9223372036854775807"},
		{"requests.cpu", "1m", "250"},
		{"requests.cpu", "", "1"},
		{"limits.cpu", "", "2"},      // the pod's 1500m, rounded up
		{"limits.cpu", "1m", "1500"}, // the pod's
		{"requests.memory", "", "0"},
	} {
		r := &corev1.ResourceFieldSelector{Resource: tc.ref}
		if tc.divisor != "" {
			r.Divisor = resource.MustParse(tc.divisor)
		}
		if got := resourceValue(pod, c, r); got != tc.want {
			t.Errorf("%s / %q = %s, want %s", tc.ref, tc.divisor, got, tc.want)
		}
	}
	if got := resourceValue(&corev1.Pod{}, &corev1.Container{}, &corev1.ResourceFieldSelector{Resource: "limits.cpu"}); got != "node allocatable" {
		t.Errorf("no limit anywhere: %s", got)
	}
}
