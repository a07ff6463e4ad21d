package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const validPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: busybox:1.36
    command: ["httpd", "-f", "-p", "8080"]
    ports:
    - containerPort: 8080
`

// wantErr is one expected problem: the field path and the error class,
// plus a fragment of the message.
type wantErr struct {
	path  string
	class error
	msg   string
}

func docErrs(t *testing.T, src string) (FieldErrors, []*Document) {
	t.Helper()
	docs, fileErrs := ParseFile("test.yaml", []byte(src), Limits{})
	all := append(FieldErrors(nil), fileErrs...)
	for _, d := range docs {
		all = append(all, d.Errs...)
	}
	return all, docs
}

func checkErrs(t *testing.T, got FieldErrors, want []wantErr) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), got)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g.Path == w.path && errors.Is(g, w.class) && strings.Contains(g.Error(), w.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("no error at %q of class %v containing %q; got:\n%v", w.path, w.class, w.msg, got)
		}
	}
}

func TestParseFileRefusals(t *testing.T) {
	pod := func(specBody string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n" + specBody
	}
	const ctr = "  containers:\n  - name: c\n    image: busybox:1.36\n"
	tests := []struct {
		name string
		src  string
		want []wantErr
	}{
		{"valid", validPodYAML, nil},
		{"misspelled securityContext field", pod(ctr + "    securityContext:\n      privilegd: true\n"),
			[]wantErr{{"spec.containers[0].securityContext.privilegd", ErrUnknownField, `did you mean "privileged"`}}},
		{"misspelled top-level field", "apiVersion: v1\nkind: Pod\nmetdata:\n  name: p\nspec:\n" + ctr,
			// Not also "metadata.name: is required": the typo explains it.
			[]wantErr{{"metdata", ErrUnknownField, `unknown field "metdata" (did you mean "metadata"?)`}}},
		{"unsupported affinity", pod(ctr + "  affinity: {}\n"),
			[]wantErr{{"spec.affinity", ErrUnsupported, "is not supported by pelagos-agent"}}},
		{"unsupported tolerations and serviceAccountName", pod(ctr + "  tolerations: []\n  serviceAccountName: x\n"),
			[]wantErr{{"spec.tolerations", ErrUnsupported, "not supported"}, {"spec.serviceAccountName", ErrUnsupported, "not supported"}}},
		{"unsupported ephemeralContainers", pod(ctr + "  ephemeralContainers: []\n"),
			[]wantErr{{"spec.ephemeralContainers", ErrUnsupported, "not supported"}}},
		{"unsupported volume type", pod(ctr + "  volumes:\n  - name: v\n    nfs: {server: x, path: /}\n"),
			// Only the refusal: "must set exactly one of hostPath, ..." would
			// not be true of what the user wrote.
			[]wantErr{{"spec.volumes[0].nfs", ErrUnsupported, "not supported"}}},
		{"unsupported container field", pod(ctr + "    volumeDevices: []\n"),
			[]wantErr{{"spec.containers[0].volumeDevices", ErrUnsupported, "not supported"}}},
		{"server-set metadata is ignored", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  uid: abc\n  creationTimestamp: null\n  resourceVersion: \"1\"\nspec:\n" + ctr + "status: {}\n", nil},
		{"other kind", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n",
			[]wantErr{{"kind", ErrUnsupported, `"Deployment" is not supported by pelagos-agent`}}},
		{"missing kind", "apiVersion: v1\nmetadata:\n  name: d\n",
			[]wantErr{{"kind", ErrInvalid, "is required"}}},
		{"wrong apiVersion", "apiVersion: v2\nkind: Pod\nmetadata:\n  name: p\nspec:\n" + ctr,
			[]wantErr{{"apiVersion", ErrUnsupported, `"v2" is not supported`}}},
		{"wrong JSON type", pod(ctr + "    ports:\n    - containerPort: \"80\"\n"),
			[]wantErr{{"spec.containers[0].ports[0].containerPort", ErrInvalid, "must be an integer, not a string"}}},
		{"integer out of range", pod(ctr + "    ports:\n    - containerPort: 99999999999\n"),
			[]wantErr{{"spec.containers[0].ports[0].containerPort", ErrInvalid, "99999999999 is out of range: must be 1..65535"}}},
		{"yes is a boolean in YAML 1.1, as in kubectl", pod(ctr + "    env:\n    - name: A\n      value: yes\n"),
			[]wantErr{{"spec.containers[0].env[0].value", ErrInvalid, "must be a string, not a boolean"}}},
		{"invalid quantity", pod(ctr + "    resources:\n      limits:\n        memory: 10Qi\n"),
			[]wantErr{{"spec.containers[0].resources.limits.memory", ErrInvalid, `"10Qi" is not a valid quantity`}}},
		{"NUL escape in a string", pod("  containers:\n  - name: c\n    image: \"busybox\\0:1.36\"\n"),
			[]wantErr{{"spec.containers[0].image", ErrSyntax, "NUL"}}},
		{"duplicate key", "apiVersion: v1\nkind: Pod\nkind: Pod\nmetadata:\n  name: p\n",
			[]wantErr{{"", ErrSyntax, "not valid YAML"}}},
		{"not a mapping", "- a\n- b\n",
			[]wantErr{{"", ErrSyntax, "must be a mapping"}}},
		{"bad YAML", "apiVersion: v1\nkind: [Pod\n",
			[]wantErr{{"", ErrSyntax, "not valid YAML"}}},
		{"hidden second document", validPodYAML + "--- # the next pod\n" + validPodYAML,
			[]wantErr{{"", ErrSyntax, "more than one YAML document"}}},
		{"invalid probe scheme and configMap without name", pod(ctr + "    livenessProbe:\n      httpGet: {port: 80, scheme: FTP}\n" +
			"  volumes:\n  - name: v\n    configMap: {}\n"),
			[]wantErr{{"spec.containers[0].livenessProbe.httpGet.scheme", ErrInvalid, `"FTP" is not one of: HTTP, HTTPS (line 10)`},
				{"spec.volumes[0].configMap.name", ErrInvalid, "is required (line 13)"}}},
		{"bad base64 in a Secret", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: '!!!'\n",
			[]wantErr{{"data.k", ErrInvalid, "not valid base64"}}},
		{"null fields are zero values", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: null\nspec:\n" + ctr + "    env: null\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := docErrs(t, tc.src)
			checkErrs(t, got, tc.want)
		})
	}
}

func TestParseFileHostileInput(t *testing.T) {
	tests := []struct {
		name string
		src  []byte
		lim  Limits
		msg  string
	}{
		{"NUL byte", []byte("apiVersion: v1\nkind: Pod\x00\n"), Limits{}, "file contains a NUL byte (line 2)"},
		{"invalid UTF-8", []byte("apiVersion: v1\nkind: \xff\xfe\n"), Limits{}, "file is not valid UTF-8 (line 2)"},
		{"over the size cap", []byte(strings.Repeat("#", 101)), Limits{MaxBytes: 100}, "larger than the 100-byte limit"},
		{"too many documents", []byte(strings.Repeat("a: 1\n---\n", 5)), Limits{MaxDocuments: 4}, "5 documents, more than the limit of 4"},
		{"too deep", []byte("a: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n"), Limits{}, "nests deeper than 32 levels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			docs, fileErrs := ParseFile("h.yaml", tc.src, tc.lim)
			all := fileErrs
			for _, d := range docs {
				all = append(all, d.Errs...)
			}
			if len(all) != 1 || !errors.Is(all[0], ErrSyntax) || !strings.Contains(all[0].Error(), tc.msg) {
				t.Fatalf("got %v, want one ErrSyntax containing %q", all, tc.msg)
			}
		})
	}
}

// billionLaughs builds the classic alias bomb: each level refers to the
// previous one ten times, so 9 levels expand to 10^9 strings.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Pod\nmetadata:\n  name: lol\n  annotations:\n")
	b.WriteString("    a0: &a0 \"lol\"\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "    a%d: &a%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("spec:\n  containers:\n  - name: c\n    image: busybox:1.36\n")
	return b.String()
}

func TestBillionLaughsFailsWithBoundedMemory(t *testing.T) {
	src := []byte(billionLaughs())
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	got, _ := docErrs(t, string(src))
	goruntime.ReadMemStats(&after)
	if len(got) != 1 || !errors.Is(got[0], ErrSyntax) || !strings.Contains(got[0].Msg, "YAML bomb") {
		t.Fatalf("got %v, want one YAML bomb error", got)
	}
	// Expanding even a millionth of the bomb would allocate far more; the
	// bound is on bytes allocated, which does not depend on machine speed.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes, want < 32 MiB", alloc)
	}
}

func TestLongStringAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Pod\nmetadata:\n  name: s\n  annotations:\n    a: &s \"")
	b.WriteString(strings.Repeat("x", 50_000))
	b.WriteString("\"\n    b: [")
	for i := 0; i < 5000; i++ {
		b.WriteString("*s, ")
	}
	b.WriteString("*s]\n")
	got, _ := docErrs(t, b.String())
	if len(got) != 1 || !strings.Contains(got[0].Msg, "YAML bomb") {
		t.Fatalf("got %v, want one YAML bomb error", got)
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	src := `apiVersion: v1
kind: Pod
metadata:
  name: Bad_Name
spec:
  restartPolicy: Sometimes
  containers:
  - name: a
    image: busybox:1.36
    ports:
    - containerPort: 70000
    volumeMounts:
    - name: missing
      mountPath: relative/path
  - name: a
    image: ""
`
	got, _ := docErrs(t, src)
	checkErrs(t, got, []wantErr{
		{"metadata.name", ErrInvalid, `"Bad_Name" is invalid`},
		{"spec.restartPolicy", ErrInvalid, `"Sometimes" is not one of: Always, OnFailure, Never`},
		{"spec.containers[0].ports[0].containerPort", ErrInvalid, "70000 is out of range"},
		{"spec.containers[0].volumeMounts[0].name", ErrInvalid, `volume "missing" is not declared`},
		{"spec.containers[0].volumeMounts[0].mountPath", ErrInvalid, "must be an absolute path"},
		{"spec.containers[1].name", ErrInvalid, `duplicate container name "a"`},
		{"spec.containers[1].image", ErrInvalid, "is required"},
	})
}

func TestMultiDocumentIndexAndLines(t *testing.T) {
	src := "---\n# leading separator and comment-only documents do not count\n---\n" + validPodYAML +
		"---\n\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: second\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    resources:\n      limits:\n        memory: 10Qi\n"
	docs, fileErrs := ParseFile("web.yaml", []byte(src), Limits{})
	if len(fileErrs) != 0 || len(docs) != 2 {
		t.Fatalf("got %d docs and %v, want 2 docs", len(docs), fileErrs)
	}
	if !docs[0].Valid() || docs[0].Index != 1 || docs[0].Line != 4 {
		t.Errorf("doc 1: valid=%v index=%d line=%d, want valid, 1, 4", docs[0].Valid(), docs[0].Index, docs[0].Line)
	}
	if len(docs[1].Errs) != 1 {
		t.Fatalf("doc 2 errors: %v", docs[1].Errs)
	}
	const want = `web.yaml: doc 2: spec.containers[0].resources.limits.memory: "10Qi" is not a valid quantity (line 28)`
	if got := docs[1].Errs[0].Error(); got != want {
		t.Errorf("error\n got %s\nwant %s", got, want)
	}
	if docs[1].Pod != nil {
		t.Error("an invalid document must not carry a typed object")
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "web.yaml", Doc: 2, Path: "spec.containers[0].resources.limits.memory", Msg: `"10Qi" is not a valid quantity`},
			`web.yaml: doc 2: spec.containers[0].resources.limits.memory: "10Qi" is not a valid quantity`},
		{FieldError{File: "web.yaml", Doc: 1, SingleDoc: true, Path: "spec.affinity", Line: 7, Msg: "m"}, "web.yaml: spec.affinity: m (line 7)"},
		{FieldError{File: "web.yaml", Msg: "file is not valid UTF-8"}, "web.yaml: file is not valid UTF-8"},
		{FieldError{Path: "metadata.name", Msg: "is required"}, "metadata.name: is required"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestSingleDocumentFileOmitsDocIndex(t *testing.T) {
	got, _ := docErrs(t, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n")
	if len(got) != 1 || got[0].Error() != "test.yaml: spec.containers: must have at least 1 entries (line 6)" {
		t.Fatalf("got %v", got)
	}
}

func TestPathRoundTrip(t *testing.T) {
	for _, p := range []string{"spec.containers[0].name", "metadata.labels[app.kubernetes.io/name]",
		"spec.containers[1].resources.limits.memory", "kind"} {
		if got := parsePath(p).String(); got != p && !(strings.Contains(p, "limits.memory") && got == p) {
			t.Errorf("parsePath(%q).String() = %q", p, got)
		}
	}
}

func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		src   string
		lines []int
	}{
		{"a: 1\n", []int{1}},
		{"---\na: 1\n---\nb: 2\n", []int{2, 4}},
		{"a: 1\n--- \n\n# c\n---\t\nb: 2", []int{1, 6}},
		{"a: |\n  ---x\n", []int{1}},
		{"", nil},
		{"---\n---\n", nil},
	}
	for _, tc := range tests {
		var got []int
		for _, c := range splitDocuments([]byte(tc.src)) {
			got = append(got, c.line)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.lines) {
			t.Errorf("splitDocuments(%q) lines = %v, want %v", tc.src, got, tc.lines)
		}
	}
}

func TestUnsupportedFieldsAreKnownKubernetesFields(t *testing.T) {
	// A field cannot be both modelled and refused.
	for typ, names := range unsupportedFields {
		si := infoFor(typ)
		for _, n := range names {
			if _, ok := si.fields[n]; ok {
				t.Errorf("%s.%s is both a field and unsupported", typ.Name(), n)
			}
		}
	}
}

// TestDocsListRefusedFields keeps docs/manifest.md honest: every refused
// field and every allowed sysctl appears there.
func TestDocsListRefusedFields(t *testing.T) {
	doc, err := os.ReadFile("../docs/manifest.md")
	if err != nil {
		t.Fatal(err)
	}
	for typ, names := range UnsupportedFields() {
		for _, n := range names {
			if !strings.Contains(string(doc), "`"+n+"`") {
				t.Errorf("docs/manifest.md does not list the refused field %s.%s", typ, n)
			}
		}
	}
	for _, s := range SafeSysctls() {
		if !strings.Contains(string(doc), "`"+s+"`") {
			t.Errorf("docs/manifest.md does not list the sysctl %s", s)
		}
	}
}

func TestSyntaxErrorLineIsTheFileLine(t *testing.T) {
	// yaml.v3 places this error on the line of the enclosing mapping
	// ("metadata:", line 3 of the document); the message must say 15, its
	// line in the file, not 3.
	src := validPodYAML + "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n"
	got, _ := docErrs(t, src)
	if len(got) != 1 || got[0].Doc != 2 || got[0].Line != 15 || strings.Contains(got[0].Msg, "line") {
		t.Fatalf("got %v, want one doc 2 error on file line 15 (in Line, not in the message)", got)
	}
}

func TestIntOrStringJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want IntOrString
	}{{`8080`, FromInt(8080)}, {`"http"`, FromString("http")}} {
		var v IntOrString
		if err := v.UnmarshalJSON([]byte(tc.in)); err != nil || v != tc.want {
			t.Errorf("UnmarshalJSON(%s) = %+v, %v; want %+v", tc.in, v, err, tc.want)
		}
		out, err := v.MarshalJSON()
		if err != nil || string(out) != tc.in {
			t.Errorf("MarshalJSON(%+v) = %s, %v; want %s", v, out, err, tc.in)
		}
	}
	var v IntOrString
	if err := v.UnmarshalJSON([]byte(`1.5`)); err == nil {
		t.Error("a fractional port must not decode")
	}
}

// TestEveryKubernetesFieldIsKnown keeps "unknown field" meaning "not
// Kubernetes (a typo)": every field of the current Kubernetes release's
// types we model is modelled, refused as Unsupported or ignored, and we
// model nothing Kubernetes lacks. testdata/kubernetes-fields.json holds the
// field names of k8s.io/api; regenerate it for a new release.
func TestEveryKubernetesFieldIsKnown(t *testing.T) {
	b, err := os.ReadFile("testdata/kubernetes-fields.json")
	if err != nil {
		t.Fatal(err)
	}
	var k8s struct {
		Types map[string][]string `json:"types"`
	}
	if err := json.Unmarshal(b, &k8s); err != nil {
		t.Fatal(err)
	}
	ours := map[string]reflect.Type{}
	for _, v := range []any{Pod{}, ObjectMeta{}, PodSpec{}, Container{}, EnvVar{}, EnvVarSource{}, ObjectFieldSelector{},
		ConfigMapKeySelector{}, SecretKeySelector{}, EnvFromSource{}, ConfigMapEnvSource{}, SecretEnvSource{},
		ContainerPort{}, ResourceRequirements{}, VolumeMount{}, Probe{}, ProbeHandler{}, ExecAction{}, HTTPGetAction{},
		HTTPHeader{}, TCPSocketAction{}, GRPCAction{}, Lifecycle{}, LifecycleHandler{}, SleepAction{}, Capabilities{},
		SeccompProfile{}, AppArmorProfile{}, SecurityContext{}, Sysctl{}, PodSecurityContext{}, PodDNSConfig{},
		PodDNSConfigOption{}, HostAlias{}, LocalObjectReference{}, Volume{}, HostPathVolumeSource{},
		EmptyDirVolumeSource{}, KeyToPath{}, SecretVolumeSource{}, ConfigMapVolumeSource{}, ConfigMap{}, Secret{},
		DownwardAPIVolumeSource{}, DownwardAPIVolumeFile{}, ResourceFieldSelector{}, ProjectedVolumeSource{},
		VolumeProjection{}, SecretProjection{}, ConfigMapProjection{}, DownwardAPIProjection{},
		PersistentVolumeClaimVolumeSource{}, PersistentVolumeClaim{}, PersistentVolumeClaimSpec{},
		VolumeResourceRequirements{}, ContainerResizePolicy{}} {
		ours[reflect.TypeOf(v).Name()] = reflect.TypeOf(v)
	}
	// Kubernetes' VolumeSource is inlined in our Volume, which lists the
	// refused volume types.
	ours["VolumeSource"] = ours["Volume"]
	for name, fields := range k8s.Types {
		typ, ok := ours[name]
		if !ok {
			t.Errorf("Kubernetes type %s is listed but not modelled", name)
			continue
		}
		si := infoFor(typ)
		for _, f := range fields {
			if _, modelled := si.fields[f]; !modelled && si.unsupported[f] == "" && !si.ignored[f] {
				t.Errorf("%s.%s is a Kubernetes field, but a manifest using it would be told it is unknown (a typo)", name, f)
			}
		}
		if name == "VolumeSource" {
			continue
		}
		for _, f := range si.names {
			if !slices.Contains(fields, f) {
				t.Errorf("%s.%s is modelled but is not a Kubernetes field", name, f)
			}
		}
	}
	for name := range ours {
		if _, ok := k8s.Types[name]; !ok {
			t.Errorf("%s is modelled but testdata/kubernetes-fields.json does not list it", name)
		}
	}
}

// TestMessagesGolden pins the exact messages for testdata/messages/*.yaml,
// in the order they are reported. Run with -update after a deliberate
// wording change and review the diff.
func TestMessagesGolden(t *testing.T) {
	paths, err := filepath.Glob("testdata/messages/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no message cases: %v", err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			docs, fileErrs := ParseFile(filepath.Base(p), src, Limits{})
			var b strings.Builder
			for _, e := range fileErrs {
				fmt.Fprintf(&b, "%s [%s]\n", e, className(e))
			}
			for _, d := range docs {
				for _, e := range d.Errs {
					fmt.Fprintf(&b, "%s [%s]\n", e, className(e))
				}
			}
			golden := strings.TrimSuffix(p, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./spec -run TestMessagesGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("messages differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func className(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{{ErrUnknownField, "UnknownField"}, {ErrUnsupported, "Unsupported"}, {ErrInvalid, "Invalid"}, {ErrSyntax, "Syntax"}} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "?"
}
