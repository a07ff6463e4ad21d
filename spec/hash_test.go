package spec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func TestDefaultPullPolicy(t *testing.T) {
	tests := map[string]PullPolicy{
		"busybox":                     PullAlways,
		"busybox:latest":              PullAlways,
		"busybox:1.36":                PullIfNotPresent,
		"localhost:5000/busybox":      PullAlways,
		"localhost:5000/busybox:1.36": PullIfNotPresent,
		"busybox@sha256:" + strings.Repeat("a", 64): PullIfNotPresent,
	}
	for image, want := range tests {
		if got := DefaultPullPolicy(image); got != want {
			t.Errorf("DefaultPullPolicy(%q) = %s, want %s", image, got, want)
		}
	}
}

func TestSetDefaults(t *testing.T) {
	p := &Pod{Metadata: ObjectMeta{Name: "p"}, Spec: PodSpec{
		HostNetwork: true,
		Containers: []Container{{Name: "c", Image: "busybox",
			Ports:          []ContainerPort{{ContainerPort: 80}},
			LivenessProbe:  &Probe{ProbeHandler: ProbeHandler{HTTPGet: &HTTPGetAction{Port: FromInt(80)}}},
			Env:            []EnvVar{{Name: "N", ValueFrom: &EnvVarSource{FieldRef: &ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			Resources:      ResourceRequirements{Limits: ResourceList{ResourceCPU: resource.MustParse("500m")}},
			ReadinessProbe: nil,
		}},
		Volumes: []Volume{{Name: "s", VolumeSource: VolumeSource{Secret: &SecretVolumeSource{SecretName: "s"}}}},
	}}
	SetDefaults(p)
	c := p.Spec.Containers[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"namespace", p.Metadata.Namespace, "default"},
		{"restartPolicy", p.Spec.RestartPolicy, RestartPolicyAlways},
		{"terminationGracePeriodSeconds", *p.Spec.TerminationGracePeriodSeconds, int64(30)},
		{"dnsPolicy", p.Spec.DNSPolicy, DNSClusterFirst},
		{"imagePullPolicy", c.ImagePullPolicy, PullAlways},
		{"terminationMessagePath", c.TerminationMessagePath, "/dev/termination-log"},
		{"protocol", c.Ports[0].Protocol, ProtocolTCP},
		{"hostPort under hostNetwork", c.Ports[0].HostPort, int32(80)},
		{"probe timeout", c.LivenessProbe.TimeoutSeconds, int32(1)},
		{"probe period", c.LivenessProbe.PeriodSeconds, int32(10)},
		{"probe success", c.LivenessProbe.SuccessThreshold, int32(1)},
		{"probe failure", c.LivenessProbe.FailureThreshold, int32(3)},
		{"httpGet path", c.LivenessProbe.HTTPGet.Path, "/"},
		{"httpGet scheme", c.LivenessProbe.HTTPGet.Scheme, URISchemeHTTP},
		{"fieldRef apiVersion", c.Env[0].ValueFrom.FieldRef.APIVersion, "v1"},
		{"request copied from limit", quantityString(c.Resources.Requests, ResourceCPU), "500m"},
		{"secret defaultMode", *p.Spec.Volumes[0].Secret.DefaultMode, int32(0o600)},
		{"terminationMessagePolicy", c.TerminationMessagePolicy, DefaultTerminationMessagePolicy},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
		}
	}
	again := p.DeepCopy()
	SetDefaults(again)
	if diff := cmp.Diff(p, again); diff != "" {
		t.Errorf("SetDefaults is not idempotent (-once +twice):\n%s", diff)
	}
}

func quantityString(l ResourceList, n ResourceName) string {
	q := l[n]
	return q.String()
}

func TestHashesSeparateSandboxFromContainer(t *testing.T) {
	base := func() *Pod {
		p := basePod()
		p.Spec.Containers = append(p.Spec.Containers, Container{Name: "side", Image: "busybox:1.36"})
		p.Spec.InitContainers = []Container{{Name: "init", Image: "busybox:1.36"}}
		return p
	}
	tests := []struct {
		name      string
		mutate    func(p *Pod)
		sandbox   bool // sandbox hash changes
		container bool // the web container's hash changes
		side      bool // the side container's hash changes
	}{
		{"nothing", func(p *Pod) {}, false, false, false},
		{"labels and annotations", func(p *Pod) { p.Metadata.Labels["x"] = "y"; p.Metadata.Annotations = map[string]string{"a": "b"} }, false, false, false},
		{"restartPolicy", func(p *Pod) { p.Spec.RestartPolicy = RestartPolicyNever }, false, false, false},
		{"explicit defaults", func(p *Pod) {
			p.Metadata.Namespace = "default"
			p.Spec.Containers[0].ImagePullPolicy = PullIfNotPresent
			p.Spec.Containers[0].Ports[0].Protocol = ProtocolTCP
			p.Spec.TerminationGracePeriodSeconds = ptr(int64(30))
		}, false, false, false},
		{"equal quantity spelled differently", func(p *Pod) {
			p.Spec.Containers[0].Resources.Limits[ResourceMemory] = resource.MustParse("65536Ki")
		}, false, false, false},
		{"volume order", func(p *Pod) {
			p.Spec.Volumes = append([]Volume{{Name: "a", VolumeSource: VolumeSource{EmptyDir: &EmptyDirVolumeSource{}}}}, p.Spec.Volumes...)
		}, true, false, false}, // a new volume is a change; the order alone is not (see below)
		{"hostname", func(p *Pod) { p.Spec.Hostname = "h" }, true, false, false},
		{"hostNetwork", func(p *Pod) { p.Spec.HostNetwork = true }, true, false, false},
		{"hostPort", func(p *Pod) { p.Spec.Containers[0].Ports[0].HostPort = 9090 }, true, false, false},
		{"dnsConfig", func(p *Pod) { p.Spec.DNSConfig = &PodDNSConfig{Searches: []string{"x"}} }, true, false, false},
		{"sysctls", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{Name: "net.ipv4.tcp_syncookies", Value: "1"}}}
		}, true, false, false},
		{"volume definition", func(p *Pod) { p.Spec.Volumes[0].EmptyDir.Medium = StorageMediumMemory }, true, false, false},
		{"init container image", func(p *Pod) { p.Spec.InitContainers[0].Image = "busybox:1.37" }, true, false, false},
		{"image", func(p *Pod) { p.Spec.Containers[0].Image = "busybox:1.37" }, false, true, false},
		{"command", func(p *Pod) { p.Spec.Containers[0].Command = []string{"sleep", "1"} }, false, true, false},
		{"args", func(p *Pod) { p.Spec.Containers[0].Args = []string{"x"} }, false, true, false},
		{"env", func(p *Pod) { p.Spec.Containers[0].Env = []EnvVar{{Name: "A", Value: "1"}} }, false, true, false},
		{"resources", func(p *Pod) { p.Spec.Containers[0].Resources.Limits[ResourceMemory] = resource.MustParse("65Mi") }, false, true, false},
		{"mounts", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].ReadOnly = true }, false, true, false},
		{"probe", func(p *Pod) {
			p.Spec.Containers[0].LivenessProbe = &Probe{ProbeHandler: ProbeHandler{Exec: &ExecAction{Command: []string{"true"}}}}
		}, false, true, false},
		{"tty", func(p *Pod) { p.Spec.Containers[0].TTY = true }, false, true, false},
		{"stdin", func(p *Pod) { p.Spec.Containers[0].Stdin = true }, false, true, false},
		{"stdinOnce", func(p *Pod) { p.Spec.Containers[0].StdinOnce = true }, false, true, false},
		{"container securityContext", func(p *Pod) {
			p.Spec.Containers[0].SecurityContext = &SecurityContext{ReadOnlyRootFilesystem: ptr(true)}
		}, false, true, false},
		// It reaches the init container too, and init containers belong to
		// the sandbox.
		{"pod runAsUser reaches every container", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{RunAsUser: ptr(int64(1000))}
		}, true, true, true},
	}
	ref := base()
	refSandbox := SandboxHash(ref)
	refWeb := ContainerHash(ref, &ref.Spec.Containers[0])
	refSide := ContainerHash(ref, &ref.Spec.Containers[1])
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mutate(p)
			if got := SandboxHash(p) != refSandbox; got != tc.sandbox {
				t.Errorf("sandbox hash changed = %v, want %v", got, tc.sandbox)
			}
			if got := ContainerHash(p, &p.Spec.Containers[0]) != refWeb; got != tc.container {
				t.Errorf("web container hash changed = %v, want %v", got, tc.container)
			}
			if got := ContainerHash(p, &p.Spec.Containers[1]) != refSide; got != tc.side {
				t.Errorf("side container hash changed = %v, want %v", got, tc.side)
			}
		})
	}

	t.Run("volume and hostPort order", func(t *testing.T) {
		a, b := base(), base()
		extra := Volume{Name: "a", VolumeSource: VolumeSource{EmptyDir: &EmptyDirVolumeSource{}}}
		a.Spec.Volumes = append(a.Spec.Volumes, extra)
		b.Spec.Volumes = append([]Volume{extra}, b.Spec.Volumes...)
		a.Spec.Containers[1].Ports = []ContainerPort{{ContainerPort: 1, HostPort: 1}}
		b.Spec.Containers[0].Ports = append([]ContainerPort{{ContainerPort: 1, HostPort: 1}}, b.Spec.Containers[0].Ports...)
		if SandboxHash(a) != SandboxHash(b) {
			t.Error("reordering volumes or hostPorts changed the sandbox hash")
		}
	})
	t.Run("versioned", func(t *testing.T) {
		if !strings.HasPrefix(refSandbox, SandboxHashVersion+"-") || !strings.HasPrefix(refWeb, ContainerHashVersion+"-") {
			t.Errorf("hashes %s %s lack their version prefix", refSandbox, refWeb)
		}
	})
	t.Run("hashing does not modify the pod", func(t *testing.T) {
		p := base()
		before := p.DeepCopy()
		SandboxHash(p)
		ContainerHash(p, &p.Spec.Containers[0])
		if diff := cmp.Diff(before, p); diff != "" {
			t.Errorf("pod modified:\n%s", diff)
		}
	})
}

// TestIdenticalBytesSameHash: a manifest re-parsed from the same bytes, or
// from its own normalized JSON, yields the same hashes.
func TestIdenticalBytesSameHash(t *testing.T) {
	for _, path := range examplePaths(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d1, _ := ParseFile(path, data, Limits{})
		d2, _ := ParseFile(path, append([]byte(nil), data...), Limits{})
		for i := range d1 {
			if d1[i].Pod == nil {
				continue
			}
			if SandboxHash(d1[i].Pod) != SandboxHash(d2[i].Pod) {
				t.Errorf("%s doc %d: sandbox hash differs between two parses", path, i+1)
			}
			js, err := json.Marshal(d1[i].Pod)
			if err != nil {
				t.Fatal(err)
			}
			d3, fe := ParseFile("normalized.json", js, Limits{})
			if len(fe) > 0 || len(d3) != 1 || !d3[0].Valid() {
				t.Fatalf("%s doc %d: normalized form does not re-parse: %v %v", path, i+1, fe, d3[0].Errs)
			}
			if SandboxHash(d3[0].Pod) != SandboxHash(d1[i].Pod) {
				t.Errorf("%s doc %d: normalized form hashes differently", path, i+1)
			}
			for j := range d1[i].Pod.Spec.Containers {
				if ContainerHash(d3[0].Pod, &d3[0].Pod.Spec.Containers[j]) != ContainerHash(d1[i].Pod, &d1[i].Pod.Spec.Containers[j]) {
					t.Errorf("%s doc %d: container %d hashes differently after normalization", path, i+1, j)
				}
			}
		}
	}
}

func examplePaths(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("../examples/pods/*.yaml")
	if err != nil || len(paths) < 8 {
		t.Fatalf("want at least 8 examples in ../examples/pods, found %d (%v)", len(paths), err)
	}
	return paths
}

// TestExamplesGolden loads every example, which must be valid, and compares
// its normalized (defaulted) form with testdata/golden. Run with -update to
// rewrite the golden files after an intended change.
func TestExamplesGolden(t *testing.T) {
	for _, path := range examplePaths(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			docs, fileErrs := ParseFile(path, data, Limits{})
			if len(fileErrs) > 0 {
				t.Fatal(fileErrs)
			}
			var objs []any
			for _, d := range docs {
				if !d.Valid() {
					t.Fatalf("example is invalid: %v", d.Errs)
				}
				switch {
				case d.Pod != nil:
					objs = append(objs, map[string]any{"pod": d.Pod, "sandboxHash": SandboxHash(d.Pod)})
				case d.ConfigMap != nil:
					objs = append(objs, map[string]any{"configMap": d.ConfigMap})
				case d.Secret != nil:
					objs = append(objs, map[string]any{"secret": d.Secret})
				}
			}
			got, err := json.MarshalIndent(objs, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "golden", strings.TrimSuffix(name, filepath.Ext(name))+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./spec -run TestExamplesGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("normalized %s differs from %s (-want +got):\n%s", name, golden, cmp.Diff(string(want), string(got)))
			}
		})
	}
}
