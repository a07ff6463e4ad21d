package spec

import (
	"strings"
	"testing"
)

// imageVolumePod is a pod with one image volume; vol is the volume's
// "image:" block and mount extra fields of its volumeMount (YAML flow).
func imageVolumePod(vol, mount string) string {
	return `apiVersion: v1
kind: Pod
metadata: {name: iv}
spec:
  containers:
  - name: c
    image: busybox:1.36
    volumeMounts:
    - {name: art, mountPath: /art` + mount + `}
  volumes:
  - name: art
    image: ` + vol + `
`
}

func TestImageVolumeAccepted(t *testing.T) {
	for _, tc := range []struct {
		name, vol, mount string
		policy           PullPolicy
	}{
		{"tag defaults to IfNotPresent", `{reference: "quay.io/crio/artifact:v2"}`, "", PullIfNotPresent},
		{"no tag defaults to Always", `{reference: "registry.local/artifact"}`, "", PullAlways},
		{"latest defaults to Always", `{reference: "registry.local/artifact:latest"}`, "", PullAlways},
		{"digest defaults to IfNotPresent", `{reference: "registry.local/a@sha256:` + strings.Repeat("a", 64) + `"}`, "", PullIfNotPresent},
		{"explicit Never", `{reference: "registry.local/artifact", pullPolicy: Never}`, "", PullNever},
		{"subPath (1.33+)", `{reference: "registry.local/artifact:v1"}`, ", subPath: dir/file", PullIfNotPresent},
		// The mount is read-only whatever readOnly says, as in Kubernetes.
		{"readOnly false", `{reference: "registry.local/artifact:v1"}`, ", readOnly: false", PullIfNotPresent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, fe := ParseFile("iv.yaml", []byte(imageVolumePod(tc.vol, tc.mount)), Limits{})
			if len(fe) > 0 || len(docs) != 1 || !docs[0].Valid() {
				t.Fatalf("refused: %v %v", fe, docs[0].Errs)
			}
			if got := docs[0].Pod.Spec.Volumes[0].Image.PullPolicy; got != tc.policy {
				t.Errorf("pullPolicy = %q, want %q", got, tc.policy)
			}
		})
	}
}

func TestImageVolumeRefused(t *testing.T) {
	for _, tc := range []struct {
		name, vol, want string
	}{
		{"no reference", `{pullPolicy: Always}`, "iv.yaml: spec.volumes[0].image.reference: is required (line 12)"},
		{"empty block", `{}`, "iv.yaml: spec.volumes[0].image.reference: is required (line 12)"},
		{"bad policy", `{reference: "a/b:1", pullPolicy: Sometimes}`, `iv.yaml: spec.volumes[0].image.pullPolicy: "Sometimes" is not one of: Always, IfNotPresent, Never (line 12)`},
		{"blank in reference", `{reference: "a/b:1 "}`, `iv.yaml: spec.volumes[0].image.reference: "a/b:1 " is invalid: must not contain whitespace (line 12)`},
		{"unknown field", `{reference: "a/b:1", pullpolicy: Always}`, `spec.volumes[0].image.pullpolicy`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, fe := ParseFile("iv.yaml", []byte(imageVolumePod(tc.vol, "")), Limits{})
			var msgs []string
			for _, e := range fe {
				msgs = append(msgs, e.Error())
			}
			for _, d := range docs {
				for _, e := range d.Errs {
					msgs = append(msgs, e.Error())
				}
			}
			if len(msgs) != 1 || !strings.Contains(msgs[0], tc.want) {
				t.Fatalf("errors %q, want one holding %q", msgs, tc.want)
			}
		})
	}
}

// TestImageVolumeAndAnotherSource: a volume is one source, image included.
func TestImageVolumeAndAnotherSource(t *testing.T) {
	docs, _ := ParseFile("iv.yaml", []byte(imageVolumePod(`{reference: "a/b:1"}`, "")+"    emptyDir: {}\n"), Limits{})
	if len(docs) != 1 || len(docs[0].Errs) != 1 || !strings.Contains(docs[0].Errs[0].Error(), "sets 2 volume types") {
		t.Fatalf("errors %v, want one about 2 volume types", docs[0].Errs)
	}
}
