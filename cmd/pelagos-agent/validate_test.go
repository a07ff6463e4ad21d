package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validateRun calls the program as a user would and returns its output and
// exit status.
func validateRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), exitCode(err)
}

func validateWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const validatePod = `apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  containers:
  - name: web
    image: busybox:1.36
`

// TestValidateExamples is the first "done when" item: the examples are valid.
// They are copied to a private directory so the trust check runs for real
// wherever the repository is checked out.
func TestValidateExamples(t *testing.T) {
	paths, err := filepath.Glob("../../examples/pods/*.yaml")
	if err != nil || len(paths) < 8 {
		t.Fatalf("want at least 8 examples, found %d (%v)", len(paths), err)
	}
	dir := filepath.Join(t.TempDir(), "pods")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		validateWrite(t, filepath.Join(dir, filepath.Base(p)), string(b))
	}
	out, stderr, code := validateRun(t, "validate", dir)
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if want := fmt.Sprintf("%d file(s), ", len(paths)); !strings.Contains(out, want) || !strings.Contains(out, " 0 problem(s)") {
		t.Errorf("summary %q lacks %q / 0 problems", out, want)
	}
	// And in place, as the README tells a developer to run it.
	if out, _, code := validateRun(t, "validate", "--insecure-skip-trust-check", "../../examples/pods"); code != 0 {
		t.Fatalf("examples in place: exit %d\n%s", code, out)
	}
}

// TestValidateRefusals covers each refusal of the "done when" list: exit
// status 1 and a message naming the file, document, field and problem.
func TestValidateRefusals(t *testing.T) {
	bomb := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: lol\n  annotations:\n    a0: &a0 \"lol\"\n"
	for i := 1; i <= 9; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", ")
		bomb += fmt.Sprintf("    a%d: &a%d [%s]\n", i, i, refs)
	}
	tests := []struct {
		name  string
		files map[string]string // relative to the manifest directory
		setup func(t *testing.T, dir string)
		want  []string // lines that must appear, with DIR replaced by the directory
	}{
		{"misspelled field", map[string]string{
			"web.yaml": fmt.Sprintf(validatePod, "web") + "    securityContext:\n      readOnlyRootFilesytem: true\n",
		}, nil, []string{`DIR/web.yaml: spec.containers[0].securityContext.readOnlyRootFilesytem: unknown field "readOnlyRootFilesytem" (did you mean "readOnlyRootFilesystem"?) (line 10)`}},
		{"unsupported Kubernetes field", map[string]string{
			"web.yaml": fmt.Sprintf(validatePod, "web") + "  schedulingGates:\n  - name: wait\n",
		}, nil, []string{`DIR/web.yaml: spec.schedulingGates: field is not supported by pelagos-agent: the pod would wait for a scheduler that does not exist here; delete this block to run it (line 9)`}},
		{"AppArmor Localhost (beside an accepted tty), workingDir in /proc, mount over /proc, wrapping numbers", map[string]string{
			"shell.yaml": fmt.Sprintf(validatePod, "shell") + "    tty: true\n    workingDir: /proc/self/fd/12\n" +
				"    securityContext:\n      appArmorProfile: {type: Localhost, localhostProfile: x}\n" +
				"    volumeMounts: [{name: v, mountPath: /proc}]\n    resources: {limits: {cpu: 1e11, memory: 1e30}}\n" +
				"  terminationGracePeriodSeconds: 9223372036854775807\n  volumes: [{name: v, emptyDir: {}}]\n",
		}, nil, []string{
			`DIR/shell.yaml: spec.containers[0].workingDir: "/proc/self/fd/12" is inside /proc: a working directory on procfs (such as /proc/self/fd/N) can leave the container outside its root filesystem (line 10)`,
			`DIR/shell.yaml: spec.containers[0].securityContext.appArmorProfile.type: AppArmor profiles are not supported by pelagos-agent (it loads none, so a Localhost profile would silently not apply); use RuntimeDefault, or confine the container with a Localhost seccompProfile (line 12)`,
			`DIR/shell.yaml: spec.containers[0].volumeMounts[0].mountPath: "/proc" cannot be a mount point: the runtime mounts procfs there and masks parts of it; a volume over or inside it would undo the masks or fail every start (line 13)`,
			`DIR/shell.yaml: spec.containers[0].resources.limits.cpu: 100G is out of range: must be at most 175921860 cores (the kernel's CFS bandwidth limit) (line 14)`,
			`DIR/shell.yaml: spec.containers[0].resources.limits.memory: 1e+30 is out of range: must be at most 9223372036854775807 bytes (8Ei - 1) (line 14)`,
			`DIR/shell.yaml: spec.terminationGracePeriodSeconds: 9223372036854775807 is out of range: must be 0..31536000 (one year) (line 15)`,
		}},
		{"YAML bomb", map[string]string{"lol.yaml": bomb}, nil,
			[]string{`DIR/lol.yaml: document expands to more than 100000 YAML nodes or 2097152 bytes (aliases included); refusing it as a possible YAML bomb`}},
		{"invalid quantity in a multi-document file", map[string]string{
			"web.yaml": fmt.Sprintf(validatePod, "one") + "---\n" + fmt.Sprintf(validatePod, "two") +
				"    resources:\n      limits:\n        memory: 10Qi\n",
		}, nil, []string{`DIR/web.yaml: doc 2: spec.containers[0].resources.limits.memory: "10Qi" is not a valid quantity (line 20)`}},
		{"duplicate pod across two files", map[string]string{
			"a.yaml": fmt.Sprintf(validatePod, "web"),
			"b.yaml": fmt.Sprintf(validatePod, "web"),
		}, nil, []string{
			`DIR/a.yaml: doc 1: metadata.name: pod default/web is also defined in DIR/b.yaml doc 1; this one wins (line 4)`,
			`DIR/b.yaml: doc 1: metadata.name: pod default/web is already defined in DIR/a.yaml doc 1, which wins; this one is ignored (line 4)`,
		}},
		{"path-traversal name", map[string]string{
			"evil.yaml": fmt.Sprintf(validatePod, `"../../etc/cron.d/x"`),
		}, nil, []string{`DIR/evil.yaml: metadata.name: "../../etc/cron.d/x" is invalid: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*') (line 4)`}},
		{"world-writable manifest directory", map[string]string{
			"web.yaml": fmt.Sprintf(validatePod, "web"),
		}, func(t *testing.T, dir string) {
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}, []string{`manifest directory DIR: DIR is world-writable (mode 0777): untrusted`}},
		{"world-writable manifest", map[string]string{
			"web.yaml": fmt.Sprintf(validatePod, "web"),
		}, func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "web.yaml"), 0o666); err != nil {
				t.Fatal(err)
			}
		}, []string{`DIR/web.yaml: DIR/web.yaml is world-writable (mode 0666): untrusted`}},
		{"other kind", map[string]string{
			"rs.yaml": "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: d\n",
		}, nil, []string{`DIR/rs.yaml: kind: "ReplicaSet" is not supported by pelagos-agent: write a Deployment with the same template, which pelagos-agent runs (line 2)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pods")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range tc.files {
				validateWrite(t, filepath.Join(dir, name), content)
			}
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			out, stderr, code := validateRun(t, "validate", dir)
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "DIR", dir)
				if !strings.Contains(out+"\n", w+"\n") {
					t.Errorf("output lacks the line\n%s\nstdout:\n%s", w, out)
				}
			}
			if strings.Contains(out, ".tty:") {
				t.Errorf("tty: true is reported, but pelagos-agent honours it:\n%s", out)
			}
		})
	}
}

func TestValidateFilesAndUsage(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	validateWrite(t, a, fmt.Sprintf(validatePod, "web"))
	validateWrite(t, b, fmt.Sprintf(validatePod, "web"))

	if out, _, code := validateRun(t, "validate", a); code != 0 {
		t.Errorf("one valid file: exit %d\n%s", code, out)
	}
	out, _, code := validateRun(t, "validate", a, b)
	if code != 1 || !strings.Contains(out, b+": doc 1: metadata.name: pod default/web is already defined in "+a) {
		t.Errorf("duplicate across file arguments: exit %d\n%s", code, out)
	}
	if out, _, code := validateRun(t, "validate", a, dir+"/../"+filepath.Base(dir)+"/a.yaml"); code != 0 {
		t.Errorf("one file named twice is not its own duplicate: exit %d\n%s", code, out)
	}
	if out, _, code := validateRun(t, "validate", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(out, "missing.yaml: cannot stat") {
		t.Errorf("missing file: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"validate"}, {"validate", "-o", "yaml", a}, {"validate", "--no-such-flag", a},
		{"validate", "--max-file-size", "-1", a}} {
		if _, stderr, code := validateRun(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)\n%s", args, code, stderr)
		}
	}
}

func TestValidateJSON(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pods")
	validateWrite(t, filepath.Join(dir, "good.yaml"), fmt.Sprintf(validatePod, "good"))
	validateWrite(t, filepath.Join(dir, "bad.yaml"), fmt.Sprintf(validatePod, "bad")+"  ephemeralContainers: []\n")
	out, _, code := validateRun(t, "validate", "-o", "json", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	var report struct {
		Valid bool `json:"valid"`
		Files []struct {
			Path   string `json:"path"`
			Valid  bool   `json:"valid"`
			Pods   int    `json:"pods"`
			Errors []struct {
				File, Field, Kind, Message string
				Doc, Line                  int
			} `json:"errors"`
		} `json:"files"`
		Pods []struct {
			Namespace, Name, SandboxHash string
		} `json:"pods"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if report.Valid || len(report.Files) != 2 || len(report.Pods) != 1 || report.Pods[0].Name != "good" ||
		!strings.HasPrefix(report.Pods[0].SandboxHash, "s1-") {
		t.Fatalf("report: %+v", report)
	}
	bad := report.Files[0]
	if bad.Valid || len(bad.Errors) != 1 {
		t.Fatalf("bad.yaml: %+v", bad)
	}
	e := bad.Errors[0]
	if e.Field != "spec.ephemeralContainers" || e.Kind != "Unsupported" || e.Doc != 1 || e.Line != 9 || e.File != filepath.Join(dir, "bad.yaml") {
		t.Errorf("error entry: %+v", e)
	}
}

func TestValidateUnsafeSysctls(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tuned.yaml")
	validateWrite(t, f, fmt.Sprintf(validatePod, "tuned")+"  securityContext:\n    sysctls:\n    - name: net.core.somaxconn\n      value: \"1024\"\n")
	out, _, code := validateRun(t, "validate", f)
	if code != 1 || !strings.Contains(out, "spec.securityContext.sysctls[0].name: \"net.core.somaxconn\" is not in the namespaced safe set") {
		t.Errorf("without the flag: exit %d\n%s", code, out)
	}
	if out, _, code := validateRun(t, "validate", "--allow-unsafe-sysctls", f); code != 0 {
		t.Errorf("with --allow-unsafe-sysctls: exit %d\n%s", code, out)
	}
}

// TestValidateLineOrderAndSyntaxLine: every problem of a file, in the order
// of the file, with the line of a YAML syntax error in the JSON report.
func TestValidateLineOrderAndSyntaxLine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pods")
	// doc 1: a pod b.yaml defines too (reported after parsing, so it is
	// sorted in); doc 2: a bad quantity (line 20) must not hide the bad
	// restartPolicy (line 15) or the unknown field (line 18); doc 3: bad YAML.
	validateWrite(t, filepath.Join(dir, "a.yaml"), fmt.Sprintf(validatePod, "web")+`---
apiVersion: v1
kind: Pod
metadata:
  name: db
spec:
  restartPolicy: Sometimes
  containers:
  - name: db
    imagee: busybox:1.36
    resources:
      limits: {memory: 10Qi}
---
apiVersion: v1
kind: Pod
metadata:
  name: [unclosed
`)
	validateWrite(t, filepath.Join(dir, "b.yaml"), fmt.Sprintf(validatePod, "web"))
	out, _, code := validateRun(t, "validate", dir)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	a := filepath.Join(dir, "a.yaml")
	want := []string{
		a + ": doc 1: metadata.name: pod default/web is also defined in " + filepath.Join(dir, "b.yaml") + " doc 1; this one wins (line 4)",
		a + `: doc 2: spec.restartPolicy: "Sometimes" is not one of: Always, OnFailure, Never (line 15)`,
		a + `: doc 2: spec.containers[0].imagee: unknown field "imagee" (did you mean "image"?) (line 18)`,
		a + `: doc 2: spec.containers[0].resources.limits.memory: "10Qi" is not a valid quantity (line 20)`,
		a + `: doc 3: not valid YAML: did not find expected ',' or ']' (line 24)`,
	}
	lines := strings.Split(out, "\n")
	if len(lines) < len(want) || strings.Join(lines[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant first:\n%s", out, strings.Join(want, "\n"))
	}

	out, _, _ = validateRun(t, "validate", "-o", "json", a)
	var report struct {
		Files []struct {
			Errors []struct {
				Doc, Line int
				Kind      string
			} `json:"errors"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || len(report.Files) != 1 {
		t.Fatalf("report: %v\n%s", err, out)
	}
	errs := report.Files[0].Errors
	last := errs[len(errs)-1]
	if last.Kind != "Syntax" || last.Doc != 3 || last.Line != 24 {
		t.Errorf("syntax error entry %+v, want doc 3 line 24", last)
	}
}

func TestValidateDanglingSymlink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pods")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "..", "gone.yaml"), filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	out, _, code := validateRun(t, "validate", "-o", "json", dir)
	if code != 1 || !strings.Contains(out, `"kind": "DanglingSymlink"`) || !strings.Contains(out, "is a dangling symlink") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

// kubeadmEtcd is kubeadm's etcd static pod as kubeadm writes it (trimmed of
// its long flag list): priority and priorityClassName, which the
// control-plane static pods all carry, used to be refused.
const kubeadmEtcd = `apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://192.0.2.10:2379
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --data-dir=/var/lib/etcd
    image: registry.k8s.io/etcd:3.5.15-0
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet:
        host: 127.0.0.1
        path: /livez
        port: 2381
        scheme: HTTP
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    name: etcd
    resources:
      requests:
        cpu: 100m
        memory: 100Mi
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
  hostNetwork: true
  priority: 2000001000
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile:
      type: RuntimeDefault
  volumes:
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
status: {}
`

// TestValidateWarningsAndNotices: fields with no effect on one node are
// warnings and cluster objects are info; neither changes the exit status,
// and both are in the JSON report with their file, field and line.
func TestValidateWarningsAndNotices(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pods")
	validateWrite(t, filepath.Join(dir, "etcd.yaml"), kubeadmEtcd)
	validateWrite(t, filepath.Join(dir, "web.yaml"), fmt.Sprintf(validatePod, "web")+"  nodeSelector: {disktype: ssd}\n---\n"+
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n")
	out, _, code := validateRun(t, "validate", dir)
	if code != 0 {
		t.Fatalf("exit %d, want 0 (warnings are not problems)\n%s", code, out)
	}
	etcd, web := filepath.Join(dir, "etcd.yaml"), filepath.Join(dir, "web.yaml")
	for _, w := range []string{
		"warning: " + etcd + ": spec.priority: accepted with no effect: there is no scheduling queue and no preemption on one node (line 38)",
		"warning: " + etcd + ": spec.priorityClassName: accepted with no effect: there is no scheduling queue and no preemption on one node (line 39)",
		"info: " + web + ": doc 2: kind: Service is skipped: one node has no use for it (pods here publish ports with hostPort and reach each other by pod IP; there is no kube-proxy or cluster DNS); it stays valid for a cluster (line 12)",
		"2 file(s), 2 valid pod(s), 0 valid workload(s), 0 problem(s), 3 warning(s)",
	} {
		if !strings.Contains(out+"\n", w+"\n") {
			t.Errorf("output lacks the line\n%s\nstdout:\n%s", w, out)
		}
	}
	out, _, code = validateRun(t, "validate", "-o", "json", dir)
	var report struct {
		Valid bool `json:"valid"`
		Files []struct {
			Warnings []struct {
				Field, Kind string
				Doc, Line   int
			} `json:"warnings"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || code != 0 || !report.Valid || len(report.Files) != 2 {
		t.Fatalf("exit %d, report %+v (%v)\n%s", code, report, err, out)
	}
	if w := report.Files[0].Warnings; len(w) != 2 || w[0].Kind != "Warning" || w[0].Field != "spec.priority" || w[0].Line != 38 {
		t.Errorf("etcd.yaml warnings: %+v", w)
	}
	if w := report.Files[1].Warnings; len(w) != 1 || w[0].Kind != "Skipped" || w[0].Doc != 2 {
		t.Errorf("web.yaml warnings: %+v", w)
	}
}

// TestValidateGolden: every problem of a file, in the order of its lines,
// whatever order the checks find them in (volumes are checked after
// containers, the restart policy before both), as text and as JSON.
func TestValidateGolden(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pods")
	validateWrite(t, filepath.Join(dir, "bad.yaml"), `apiVersion: v1
kind: Pod
metadata:
  name: Bad_Name
  labels: {"bad key!": x}
spec:
  volumes:
  - name: v1
    hostPath: {path: relative}
  - name: v1
    emptyDir: {}
  containers:
  - name: app
    image: busybox:1.36
    ports:
    - containerPort: 99999
    volumeMounts:
    - {name: missing, mountPath: /x}
    env:
    - {name: "1BAD", value: x}
  - name: app
    image: ""
  restartPolicy: Sometimes
  terminationGracePeriodSeconds: -5
---
apiVersion: v1
kind: Pod
metadata: {name: second}
spec:
  containers:
  - {name: c, image: busybox:1.36, imagee: x}
`)
	for _, format := range []string{"text", "json"} {
		out, _, code := validateRun(t, "validate", "-o", format, dir)
		if code != exitFailure {
			t.Errorf("-o %s: exit %d", format, code)
		}
		golden(t, "validate/line-order."+format+".golden", strings.ReplaceAll(out, dir, "/etc/pelagos/pods"))
	}
}
