package spec

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Sidecars, downward-API and projected volumes, resourceFieldRef, claims,
// resize and supplemental-groups policies: what validation accepts and
// what it refuses, one problem per case.
func TestValidatePodFeatures(t *testing.T) {
	q := resource.MustParse
	downward := func(items ...DownwardAPIVolumeFile) func(p *Pod) {
		return func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{DownwardAPI: &DownwardAPIVolumeSource{Items: items}}
		}
	}
	field := func(path, fp string) DownwardAPIVolumeFile {
		return DownwardAPIVolumeFile{Path: path, FieldRef: &ObjectFieldSelector{FieldPath: fp}}
	}
	res := func(path, ctr, r string, div string) DownwardAPIVolumeFile {
		f := DownwardAPIVolumeFile{Path: path, ResourceFieldRef: &ResourceFieldSelector{ContainerName: ctr, Resource: r}}
		if div != "" {
			d := q(div)
			f.ResourceFieldRef.Divisor = &d
		}
		return f
	}
	envRes := func(ctr, r, div string) func(p *Pod) {
		return func(p *Pod) {
			rf := &ResourceFieldSelector{ContainerName: ctr, Resource: r}
			if div != "" {
				d := q(div)
				rf.Divisor = &d
			}
			p.Spec.Containers[0].Env = []EnvVar{{Name: "X", ValueFrom: &EnvVarSource{ResourceFieldRef: rf}}}
		}
	}
	projected := func(srcs ...VolumeProjection) func(p *Pod) {
		return func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{Projected: &ProjectedVolumeSource{Sources: srcs}}
		}
	}
	cm := func(name string, items ...KeyToPath) VolumeProjection {
		return VolumeProjection{ConfigMap: &ConfigMapProjection{LocalObjectReference: LocalObjectReference{Name: name}, Items: items}}
	}
	tests := []oneErrorCase{
		{"downwardAPI labels, annotations, one label, name, resources", downward(
			field("labels", "metadata.labels"), field("annotations", "metadata.annotations"),
			field("app", "metadata.labels['app.kubernetes.io/name']"), field("name", "metadata.name"),
			res("mem", "web", "limits.memory", "1Mi"), res("cpu", "web", "requests.cpu", "1m")), "", nil, ""},
		{"downwardAPI status.podIP is env only", downward(field("ip", "status.podIP")),
			"spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath", ErrInvalid, "not a supported field path for a volume"},
		{"downwardAPI both refs", downward(DownwardAPIVolumeFile{Path: "x", FieldRef: &ObjectFieldSelector{FieldPath: "metadata.name"},
			ResourceFieldRef: &ResourceFieldSelector{ContainerName: "web", Resource: "limits.cpu"}}),
			"spec.volumes[0].downwardAPI.items[0]", ErrInvalid, "exactly one of fieldRef, resourceFieldRef"},
		{"downwardAPI resource without container", downward(res("x", "", "limits.cpu", "")),
			"spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName", ErrInvalid, "is required in a volume"},
		{"downwardAPI resource of another pod's container", downward(res("x", "nope", "limits.cpu", "")),
			"spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName", ErrInvalid, `"nope" is not a container of this pod`},
		{"downwardAPI path escaping", downward(field("../x", "metadata.name")),
			"spec.volumes[0].downwardAPI.items[0].path", ErrInvalid, "'..'"},
		{"downwardAPI path into the writer's layout", downward(field("..data", "metadata.name")),
			"spec.volumes[0].downwardAPI.items[0].path", ErrInvalid, "must not start with '..'"},
		{"downwardAPI duplicate path", downward(field("a", "metadata.name"), field("./a", "metadata.namespace")),
			"spec.volumes[0].downwardAPI.items[1].path", ErrInvalid, "conflicting duplicate paths"},
		{"cpu divisor in bytes", downward(res("x", "web", "limits.cpu", "1Mi")),
			"spec.volumes[0].downwardAPI.items[0].resourceFieldRef.divisor", ErrInvalid, "use one of 1m, 1"},
		{"memory divisor 1m", downward(res("x", "web", "limits.memory", "1m")),
			"spec.volumes[0].downwardAPI.items[0].resourceFieldRef.divisor", ErrInvalid, "is not a divisor for memory"},
		{"unknown resource", downward(res("x", "web", "limits.gpu", "")),
			"spec.volumes[0].downwardAPI.items[0].resourceFieldRef.resource", ErrInvalid, "not one of: limits.cpu"},
		{"hugepages resource", downward(res("x", "web", "limits.hugepages-2Mi", "")),
			"spec.volumes[0].downwardAPI.items[0].resourceFieldRef.resource", ErrUnsupported, "hugepages"},

		{"env resourceFieldRef of itself", envRes("", "limits.memory", "1Mi"), "", nil, ""},
		{"env resourceFieldRef of an init container", func(p *Pod) {
			p.Spec.InitContainers = []Container{{Name: "init", Image: "busybox:1.36"}}
			envRes("init", "requests.cpu", "")(p)
		}, "", nil, ""},
		{"env resourceFieldRef divisor", envRes("", "limits.cpu", "2"),
			"spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor", ErrInvalid, "2 is not a divisor for cpu"},
		{"env resourceFieldRef with fieldRef", func(p *Pod) {
			envRes("", "limits.cpu", "")(p)
			p.Spec.Containers[0].Env[0].ValueFrom.FieldRef = &ObjectFieldSelector{FieldPath: "metadata.name"}
		}, "spec.containers[0].env[0].valueFrom", ErrInvalid, "exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef"},

		{"projected configMap, secret and downwardAPI", projected(cm("a", KeyToPath{Key: "k", Path: "a/k"}),
			VolumeProjection{Secret: &SecretProjection{LocalObjectReference: LocalObjectReference{Name: "s"}}},
			VolumeProjection{DownwardAPI: &DownwardAPIProjection{Items: []DownwardAPIVolumeFile{field("labels", "metadata.labels")}}}), "", nil, ""},
		{"projected source with two members", projected(VolumeProjection{ConfigMap: &ConfigMapProjection{LocalObjectReference: LocalObjectReference{Name: "a"}},
			Secret: &SecretProjection{LocalObjectReference: LocalObjectReference{Name: "s"}}}),
			"spec.volumes[0].projected.sources[0]", ErrInvalid, "exactly one of secret, configMap, downwardAPI, found 2"},
		{"projected duplicate paths across sources", projected(cm("a", KeyToPath{Key: "k", Path: "x"}),
			VolumeProjection{DownwardAPI: &DownwardAPIProjection{Items: []DownwardAPIVolumeFile{field("x", "metadata.name")}}}),
			"spec.volumes[0].projected.sources[1].downwardAPI.items[0].path", ErrInvalid, "is also written by spec.volumes[0].projected.sources[0].configMap.items[0].path"},
		{"projected configMap without a name", projected(cm("")),
			"spec.volumes[0].projected.sources[0].configMap.name", ErrInvalid, "is required"},
		{"projected downwardAPI resource needs its container", projected(VolumeProjection{DownwardAPI: &DownwardAPIProjection{
			Items: []DownwardAPIVolumeFile{res("x", "", "limits.cpu", "")}}}),
			"spec.volumes[0].projected.sources[0].downwardAPI.items[0].resourceFieldRef.containerName", ErrInvalid, "is required"},

		{"persistentVolumeClaim", func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{PersistentVolumeClaim: &PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: true}}
		}, "", nil, ""},
		{"persistentVolumeClaim claim name as a path", func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{PersistentVolumeClaim: &PersistentVolumeClaimVolumeSource{ClaimName: "../etc"}}
		}, "spec.volumes[0].persistentVolumeClaim.claimName", ErrInvalid, "RFC 1123"},

		{"resizePolicy", func(p *Pod) {
			p.Spec.Containers[0].ResizePolicy = []ContainerResizePolicy{{ResourceName: "cpu", RestartPolicy: "NotRequired"},
				{ResourceName: "memory", RestartPolicy: "RestartContainer"}}
		}, "", nil, ""},
		{"resizePolicy twice for cpu", func(p *Pod) {
			p.Spec.Containers[0].ResizePolicy = []ContainerResizePolicy{{ResourceName: "cpu", RestartPolicy: "NotRequired"},
				{ResourceName: "cpu", RestartPolicy: "RestartContainer"}}
		}, "spec.containers[0].resizePolicy[1].resourceName", ErrInvalid, `duplicate resource "cpu"`},
		{"resizePolicy bad policy", func(p *Pod) {
			p.Spec.Containers[0].ResizePolicy = []ContainerResizePolicy{{ResourceName: "cpu", RestartPolicy: "Later"}}
		}, "spec.containers[0].resizePolicy[0].restartPolicy", ErrInvalid, "not one of: NotRequired, RestartContainer"},

		// What kubeadm and GCE static pods write.
		{"mountPath and hostPath path with a trailing slash", func(p *Pod) {
			p.Spec.Containers[0].VolumeMounts[0].MountPath = "/data/"
			p.Spec.Volumes[0].VolumeSource = VolumeSource{HostPath: &HostPathVolumeSource{Path: "/etc/kubernetes/"}}
		}, "", nil, ""},
		{"a trailing slash does not hide /dev", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/dev/" },
			"spec.containers[0].volumeMounts[0].mountPath", ErrInvalid, "cannot be a mount point"},
		{"a trailing slash does not hide a second mount", func(p *Pod) {
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, VolumeMount{Name: "data", MountPath: "/data/"})
		}, "spec.containers[0].volumeMounts[1].mountPath", ErrInvalid, "mounted twice"},
		{"two trailing slashes are not clean", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/data//" },
			"spec.containers[0].volumeMounts[0].mountPath", ErrInvalid, "clean path"},
		// What podman's kube generate writes.
		{"automountServiceAccountToken false, enableServiceLinks either way", func(p *Pod) {
			p.Spec.AutomountServiceAccountToken, p.Spec.EnableServiceLinks = ptr(false), ptr(true)
		}, "", nil, ""},
		{"automountServiceAccountToken true", func(p *Pod) { p.Spec.AutomountServiceAccountToken = ptr(true) },
			"spec.automountServiceAccountToken", ErrUnsupported, "set false or delete this line"},
		{"annotation keys are checked without case, as Kubernetes does", func(p *Pod) {
			p.Metadata.Annotations = map[string]string{"io.kubernetes.cri-o.TTY/app": "false"}
		}, "", nil, ""},
		{"supplementalGroupsPolicy Strict", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{SupplementalGroupsPolicy: ptr(SupplementalGroupsStrict)}
		}, "", nil, ""},
		{"supplementalGroupsPolicy other", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{SupplementalGroupsPolicy: ptr(SupplementalGroupsPolicy("Replace"))}
		}, "spec.securityContext.supplementalGroupsPolicy", ErrInvalid, "not one of: Merge, Strict"},
	}
	runOneErrorCases(t, tests)
}

// oneErrorCase mutates basePod: the pod is then valid (path "") or has
// exactly one problem, at path, of class, whose message holds msg.
type oneErrorCase struct {
	name   string
	mutate func(p *Pod)
	path   string
	class  error
	msg    string
}

func runOneErrorCases(t *testing.T, tests []oneErrorCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := basePod()
			tc.mutate(p)
			SetDefaults(p)
			errs := ValidatePod(p)
			if tc.path == "" {
				if len(errs) != 0 {
					t.Fatalf("want valid, got:\n%v", errs)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("want one error at %s, got:\n%v", tc.path, errs)
			}
			e := errs[0]
			if e.Path != tc.path || !errors.Is(e, tc.class) || !strings.Contains(e.Msg, tc.msg) {
				t.Fatalf("got %s (%v), want %s, class %v, containing %q", e, e.Err, tc.path, tc.class, tc.msg)
			}
		})
	}
}

func TestPersistentVolumeClaimDocument(t *testing.T) {
	const head = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\n"
	tests := []struct {
		name string
		spec string
		want []wantErr
	}{
		{"podman kube generate", `  annotations:
    volume.podman.io/driver: local
  creationTimestamp: "2024-01-01T00:00:00Z"
spec:
  accessModes:
  - ReadWriteOnce
  resources:
    requests:
      storage: 1Gi
status: {}
`, nil},
		{"storage class and limit", `spec:
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  storageClassName: local-path
  resources:
    requests: {storage: 1Gi}
    limits: {storage: 2Gi}
`, nil},
		{"no access mode, no size", `spec:
  resources: {}
`, []wantErr{{"spec.accessModes", ErrInvalid, "at least one access mode"},
			{"spec.resources.requests.storage", ErrInvalid, "is required"}}},
		{"block, selector, limit below request, other resource", `spec:
  accessModes: [ReadWriteOncePod, ReadWriteOnce]
  volumeMode: Block
  selector: {matchLabels: {a: b}}
  resources:
    requests: {storage: 2Gi, cpu: "1"}
    limits: {storage: 1Gi}
`, []wantErr{{"spec.accessModes", ErrInvalid, "ReadWriteOncePod with other access modes"},
			{"spec.volumeMode", ErrUnsupported, "a claim here is a directory"},
			{"spec.selector", ErrUnsupported, "never bound to a PersistentVolume"},
			{"spec.resources.requests.cpu", ErrInvalid, "use storage"},
			{"spec.resources.requests.storage", ErrInvalid, "greater than the limit"}}},
		{"bad access mode", `spec:
  accessModes: [ReadWriteSometimes]
  resources: {requests: {storage: 1Gi}}
`, []wantErr{{"spec.accessModes[0]", ErrInvalid, "not one of"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, docs := docErrs(t, head+tc.spec)
			checkErrs(t, got, tc.want)
			if tc.want != nil {
				return
			}
			c := docs[0].PersistentVolumeClaim
			if c == nil || !docs[0].Valid() || c.Metadata.Namespace != "default" || *c.Spec.VolumeMode != "Filesystem" {
				t.Fatalf("not decoded and defaulted: %+v", docs[0])
			}
			if c.StorageRequest() != 1<<30 {
				t.Errorf("StorageRequest = %d, want 1Gi", c.StorageRequest())
			}
		})
	}
}

func TestSidecarAndPolicyHashes(t *testing.T) {
	base := func() *Pod {
		p := basePod()
		p.Spec.InitContainers = []Container{{Name: "init", Image: "busybox:1.36"},
			{Name: "proxy", Image: "busybox:1.36", RestartPolicy: ptr(ContainerRestartPolicyAlways)}}
		return p
	}
	sidecar := func(p *Pod) *Container { return &p.Spec.InitContainers[1] }
	tests := []struct {
		name    string
		mutate  func(p *Pod)
		sandbox bool // the sandbox hash changes
		proxy   bool // the sidecar's hash changes
		web     bool // the app container's hash changes
	}{
		{"nothing", func(p *Pod) {}, false, false, false},
		{"the sidecar's command: restart it alone", func(p *Pod) { sidecar(p).Command = []string{"sleep", "1"} }, false, true, false},
		{"the sidecar's probe: restart it alone", func(p *Pod) {
			sidecar(p).ReadinessProbe = &Probe{ProbeHandler: ProbeHandler{Exec: &ExecAction{Command: []string{"true"}}}}
		}, false, true, false},
		{"a plain init container's command: a new sandbox", func(p *Pod) { p.Spec.InitContainers[0].Command = []string{"true"} }, true, false, false},
		{"the sidecar becomes a plain init container", func(p *Pod) { sidecar(p).RestartPolicy = nil }, true, true, false},
		{"the sidecars' order", func(p *Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, Container{Name: "log", Image: "busybox:1.36", RestartPolicy: ptr(ContainerRestartPolicyAlways)})
			p.Spec.InitContainers[1], p.Spec.InitContainers[2] = p.Spec.InitContainers[2], p.Spec.InitContainers[1]
		}, true, false, false},
		{"a hostPort on the sidecar", func(p *Pod) { sidecar(p).Ports = []ContainerPort{{ContainerPort: 9000, HostPort: 9000}} }, true, false, false},
		{"resizePolicy restarts nothing", func(p *Pod) {
			p.Spec.Containers[0].ResizePolicy = []ContainerResizePolicy{{ResourceName: "cpu", RestartPolicy: "NotRequired"}}
		}, false, false, false},
		{"supplementalGroupsPolicy Merge is the default", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{SupplementalGroupsPolicy: ptr(SupplementalGroupsMerge)}
		}, false, false, false},
		{"supplementalGroupsPolicy Strict", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{SupplementalGroupsPolicy: ptr(SupplementalGroupsStrict)}
		}, true, false, false},
		{"a projected volume's source", func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{Projected: &ProjectedVolumeSource{Sources: []VolumeProjection{
				{DownwardAPI: &DownwardAPIProjection{Items: []DownwardAPIVolumeFile{{Path: "l", FieldRef: &ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}}}}
		}, true, false, false},
	}
	b := base()
	sb, px, web := SandboxHash(b), ContainerHash(b, sidecar(b)), ContainerHash(b, &b.Spec.Containers[0])
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mutate(p)
			if got := SandboxHash(p) != sb; got != tc.sandbox {
				t.Errorf("sandbox hash changed = %v, want %v", got, tc.sandbox)
			}
			var proxy *Container
			for i := range p.Spec.InitContainers {
				if p.Spec.InitContainers[i].Name == "proxy" {
					proxy = &p.Spec.InitContainers[i]
				}
			}
			if got := ContainerHash(p, proxy) != px; got != tc.proxy {
				t.Errorf("sidecar hash changed = %v, want %v", got, tc.proxy)
			}
			if got := ContainerHash(p, &p.Spec.Containers[0]) != web; got != tc.web {
				t.Errorf("app container hash changed = %v, want %v", got, tc.web)
			}
		})
	}
}

// A pod without the new fields keeps its hashes: adding them must not
// restart every running pod once. The values are what the code before
// sidecars and the new volume types computed for this pod.
func TestNewFieldsKeepEarlierHashes(t *testing.T) {
	p := basePod()
	p.Spec.InitContainers = []Container{{Name: "init", Image: "busybox:1.36"}}
	p.Spec.SecurityContext = &PodSecurityContext{SupplementalGroups: []int64{5}}
	if got, want := SandboxHash(p), "s1-48cdeb1d24118aec2abb69f686dac6b3"; got != want {
		t.Errorf("SandboxHash = %s, want %s", got, want)
	}
	if got, want := ContainerHash(p, &p.Spec.Containers[0]), "c1-38cf63f485d09c81789fa9529675421c"; got != want {
		t.Errorf("ContainerHash = %s, want %s", got, want)
	}
}
