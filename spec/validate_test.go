package spec

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
)

func ptr[T any](v T) *T { return &v }

// basePod is a valid pod that every validation case mutates.
func basePod() *Pod {
	return &Pod{
		TypeMeta: TypeMeta{APIVersion: "v1", Kind: "Pod"},
		Metadata: ObjectMeta{Name: "web", Labels: map[string]string{"app.kubernetes.io/name": "web"}},
		Spec: PodSpec{
			Containers: []Container{{
				Name:  "web",
				Image: "busybox:1.36",
				Ports: []ContainerPort{{Name: "http", ContainerPort: 8080, HostPort: 8080}},
				VolumeMounts: []VolumeMount{
					{Name: "data", MountPath: "/data"},
				},
				Resources: ResourceRequirements{
					Requests: ResourceList{ResourceMemory: resource.MustParse("32Mi")},
					Limits:   ResourceList{ResourceMemory: resource.MustParse("64Mi")},
				},
			}},
			Volumes: []Volume{{Name: "data", VolumeSource: VolumeSource{EmptyDir: &EmptyDirVolumeSource{}}}},
		},
	}
}

func TestValidatePod(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *Pod)
		want   []string // field paths with an error, sorted
		msg    string   // fragment of the first error
	}{
		{"valid", func(p *Pod) {}, nil, ""},
		{"path-traversal pod name", func(p *Pod) { p.Metadata.Name = "../../etc/passwd" }, []string{"metadata.name"}, "RFC 1123"},
		{"upper-case pod name", func(p *Pod) { p.Metadata.Name = "Web" }, []string{"metadata.name"}, "lower case"},
		{"pod name of 253 is fine", func(p *Pod) {
			p.Metadata.Name = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
		}, nil, ""},
		{"pod name of 254", func(p *Pod) {
			p.Metadata.Name = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 62)
		}, []string{"metadata.name"}, "253"},
		{"namespace with a dot", func(p *Pod) { p.Metadata.Namespace = "a.b" }, []string{"metadata.namespace"}, "must not contain dots"},
		{"container name of 64", func(p *Pod) { p.Spec.Containers[0].Name = strings.Repeat("a", 64) }, []string{"spec.containers[0].name"}, "63"},
		{"container name clash across init and app", func(p *Pod) {
			p.Spec.InitContainers = []Container{{Name: "web", Image: "busybox:1.36"}}
		}, []string{"spec.containers[0].name"}, `duplicate container name "web" (also spec.initContainers[0])`},
		{"no containers", func(p *Pod) { p.Spec.Containers = nil; p.Spec.Volumes = nil }, []string{"spec.containers"}, "is required"},
		{"container port 0", func(p *Pod) {
			p.Spec.Containers[0].Ports[0].ContainerPort = 0
			p.Spec.Containers[0].Ports[0].HostPort = 0
		}, []string{"spec.containers[0].ports[0].containerPort"}, "out of range"},
		{"host port 65536", func(p *Pod) { p.Spec.Containers[0].Ports[0].HostPort = 65536 }, []string{"spec.containers[0].ports[0].hostPort"}, "at most 65535"},
		{"same hostPort and protocol twice", func(p *Pod) {
			p.Spec.Containers = append(p.Spec.Containers, Container{Name: "b", Image: "busybox:1.36",
				Ports: []ContainerPort{{ContainerPort: 80, HostPort: 8080}}})
		}, []string{"spec.containers[1].ports[0].hostPort"}, "already used by spec.containers[0].ports[0]"},
		{"same hostPort, other protocol is fine", func(p *Pod) {
			p.Spec.Containers = append(p.Spec.Containers, Container{Name: "b", Image: "busybox:1.36",
				Ports: []ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: ProtocolUDP}}})
		}, nil, ""},
		{"same hostPort on a specific and on every address", func(p *Pod) {
			p.Spec.Containers = append(p.Spec.Containers, Container{Name: "b", Image: "busybox:1.36",
				Ports: []ContainerPort{{ContainerPort: 80, HostPort: 8080, HostIP: "127.0.0.1"}}})
		}, []string{"spec.containers[1].ports[0].hostPort"}, "already used"},
		{"same hostPort on two specific addresses is fine", func(p *Pod) {
			p.Spec.Containers[0].Ports[0].HostIP = "127.0.0.1"
			p.Spec.Containers = append(p.Spec.Containers, Container{Name: "b", Image: "busybox:1.36",
				Ports: []ContainerPort{{ContainerPort: 80, HostPort: 8080, HostIP: "127.0.0.2"}}})
		}, nil, ""},
		{"bad protocol", func(p *Pod) { p.Spec.Containers[0].Ports[0].Protocol = "ICMP" }, []string{"spec.containers[0].ports[0].protocol"}, "not one of"},
		{"bad hostIP", func(p *Pod) { p.Spec.Containers[0].Ports[0].HostIP = "1.2.3" }, []string{"spec.containers[0].ports[0].hostIP"}, "not an IP address"},
		{"hostNetwork needs hostPort == containerPort", func(p *Pod) { p.Spec.HostNetwork = true; p.Spec.Containers[0].Ports[0].HostPort = 9090 }, []string{"spec.containers[0].ports[0].hostPort"}, "must equal containerPort"},
		{"mount of an undeclared volume", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].Name = "nope" }, []string{"spec.containers[0].volumeMounts[0].name"}, "not declared"},
		{"relative mountPath", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "data" }, []string{"spec.containers[0].volumeMounts[0].mountPath"}, "absolute"},
		{"subPath with ..", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].SubPath = "a/../../etc" }, []string{"spec.containers[0].volumeMounts[0].subPath"}, "'..'"},
		{"subPath absolute", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].SubPath = "/etc" }, []string{"spec.containers[0].volumeMounts[0].subPath"}, "relative"},
		{"hostPath relative", func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{HostPath: &HostPathVolumeSource{Path: "var/log"}}
		}, []string{"spec.volumes[0].hostPath.path"}, "absolute"},
		{"hostPath not clean", func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{HostPath: &HostPathVolumeSource{Path: "/var/../etc"}}
		}, []string{"spec.volumes[0].hostPath.path", "spec.volumes[0].hostPath.path"}, "clean"},
		{"hostPath bad type", func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{HostPath: &HostPathVolumeSource{Path: "/srv", Type: ptr(HostPathType("Pipe"))}}
		}, []string{"spec.volumes[0].hostPath.type"}, "not one of"},
		{"two volume types", func(p *Pod) { p.Spec.Volumes[0].HostPath = &HostPathVolumeSource{Path: "/srv"} }, []string{"spec.volumes[0]"}, "exactly one"},
		{"duplicate volume", func(p *Pod) { p.Spec.Volumes = append(p.Spec.Volumes, p.Spec.Volumes[0]) }, []string{"spec.volumes[1].name"}, "duplicate"},
		{"emptyDir hugepages", func(p *Pod) { p.Spec.Volumes[0].EmptyDir.Medium = "HugePages" }, []string{"spec.volumes[0].emptyDir.medium"}, "not one of"},
		{"emptyDir zero size", func(p *Pod) { p.Spec.Volumes[0].EmptyDir.SizeLimit = ptr(resource.MustParse("0")) }, []string{"spec.volumes[0].emptyDir.sizeLimit"}, "positive"},
		{"unsafe sysctl", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{Name: "kernel.panic", Value: "1"}}}
		}, []string{"spec.securityContext.sysctls[0].name"}, "not in the namespaced safe set"},
		{"sysctl value injection", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{Name: "net.ipv4.tcp_syncookies", Value: "1\nkernel.panic=1"}}}
		}, []string{"spec.securityContext.sysctls[0].value"}, "must be 1-256 characters"},
		{"sysctl name injection", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{Name: "net/ipv4/../../kernel/panic", Value: "1"}}}
		}, []string{"spec.securityContext.sysctls[0].name"}, "safe set"},
		{"net sysctl with hostNetwork", func(p *Pod) {
			p.Spec.HostNetwork = true
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{Name: "net.ipv4.tcp_syncookies", Value: "1"}}}
		}, []string{"spec.securityContext.sysctls[0].name"}, "node's network namespace"},
		{"uid out of range", func(p *Pod) {
			p.Spec.Containers[0].SecurityContext = &SecurityContext{RunAsUser: ptr(int64(1) << 32)}
		}, []string{"spec.containers[0].securityContext.runAsUser"}, "out of range"},
		{"negative gid", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{RunAsGroup: ptr(int64(-1)), SupplementalGroups: []int64{-5}}
		}, []string{"spec.securityContext.runAsGroup", "spec.securityContext.supplementalGroups[0]"}, "out of range"},
		{"runAsNonRoot with uid 0", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{RunAsNonRoot: ptr(true)}
			p.Spec.Containers[0].SecurityContext = &SecurityContext{RunAsUser: ptr(int64(0))}
		}, []string{"spec.containers[0].securityContext.runAsUser"}, "runAsNonRoot"},
		{"unknown capability", func(p *Pod) {
			p.Spec.Containers[0].SecurityContext = &SecurityContext{Capabilities: &Capabilities{Add: []Capability{"NET_ADMIN", "CAP_FLY"}, Drop: []Capability{"ALL"}}}
		}, []string{"spec.containers[0].securityContext.capabilities.add[1]"}, `"CAP_FLY" is not a Linux capability`},
		{"privileged without escalation", func(p *Pod) {
			p.Spec.Containers[0].SecurityContext = &SecurityContext{Privileged: ptr(true), AllowPrivilegeEscalation: ptr(false)}
		}, []string{"spec.containers[0].securityContext.allowPrivilegeEscalation"}, "cannot be false"},
		{"seccomp Localhost without profile", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{SeccompProfile: &SeccompProfile{Type: SeccompLocalhost}}
		}, []string{"spec.securityContext.seccompProfile.localhostProfile"}, "required"},
		{"negative quantity", func(p *Pod) {
			p.Spec.Containers[0].Resources.Requests[ResourceCPU] = resource.MustParse("-1")
		}, []string{"spec.containers[0].resources.requests.cpu"}, "must be positive"},
		{"limit below request", func(p *Pod) {
			p.Spec.Containers[0].Resources.Requests[ResourceMemory] = resource.MustParse("128Mi")
		}, []string{"spec.containers[0].resources.requests.memory"}, "greater than the limit 64Mi"},
		{"unsupported resource", func(p *Pod) {
			p.Spec.Containers[0].Resources.Limits["nvidia.com/gpu"] = resource.MustParse("1")
		}, []string{"spec.containers[0].resources.limits[nvidia.com/gpu]"}, "not supported"},
		{"probe without handler", func(p *Pod) { p.Spec.Containers[0].LivenessProbe = &Probe{} }, []string{"spec.containers[0].livenessProbe"}, "exactly one handler"},
		{"probe naming an undeclared port", func(p *Pod) {
			p.Spec.Containers[0].ReadinessProbe = &Probe{ProbeHandler: ProbeHandler{HTTPGet: &HTTPGetAction{Port: FromString("admin")}}}
		}, []string{"spec.containers[0].readinessProbe.httpGet.port"}, `port "admin"`},
		{"probe on a named port", func(p *Pod) {
			p.Spec.Containers[0].ReadinessProbe = &Probe{ProbeHandler: ProbeHandler{TCPSocket: &TCPSocketAction{Port: FromString("http")}}}
		}, nil, ""},
		{"liveness successThreshold", func(p *Pod) {
			p.Spec.Containers[0].LivenessProbe = &Probe{ProbeHandler: ProbeHandler{Exec: &ExecAction{Command: []string{"true"}}}, SuccessThreshold: 2}
		}, []string{"spec.containers[0].livenessProbe.successThreshold"}, "must be 1"},
		{"probe on an init container", func(p *Pod) {
			p.Spec.InitContainers = []Container{{Name: "init", Image: "busybox:1.36",
				ReadinessProbe: &Probe{ProbeHandler: ProbeHandler{Exec: &ExecAction{Command: []string{"true"}}}}}}
		}, []string{"spec.initContainers[0].readinessProbe"}, "init container"},
		{"env with value and valueFrom", func(p *Pod) {
			p.Spec.Containers[0].Env = []EnvVar{{Name: "A", Value: "x", ValueFrom: &EnvVarSource{FieldRef: &ObjectFieldSelector{FieldPath: "metadata.name"}}}}
		}, []string{"spec.containers[0].env[0]"}, "both value and valueFrom"},
		{"env bad fieldRef", func(p *Pod) {
			p.Spec.Containers[0].Env = []EnvVar{{Name: "A", ValueFrom: &EnvVarSource{FieldRef: &ObjectFieldSelector{FieldPath: "spec.containers"}}}}
		}, []string{"spec.containers[0].env[0].valueFrom.fieldRef.fieldPath"}, "not a supported field path"},
		{"env bad name", func(p *Pod) { p.Spec.Containers[0].Env = []EnvVar{{Name: "1A=B"}} }, []string{"spec.containers[0].env[0].name"}, "environment variable name"},
		{"image with a blank", func(p *Pod) { p.Spec.Containers[0].Image = "busybox 1.36" }, []string{"spec.containers[0].image"}, "whitespace"},
		{"dnsPolicy None without nameservers", func(p *Pod) { p.Spec.DNSPolicy = DNSNone }, []string{"spec.dnsConfig.nameservers"}, "at least one nameserver"},
		{"too many nameservers", func(p *Pod) {
			p.Spec.DNSConfig = &PodDNSConfig{Nameservers: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}}
		}, []string{"spec.dnsConfig.nameservers"}, "at most 3"},
		{"bad hostAlias", func(p *Pod) { p.Spec.HostAliases = []HostAlias{{IP: "x", Hostnames: []string{"a_b"}}} }, []string{"spec.hostAliases[0].hostnames[0]", "spec.hostAliases[0].ip"}, "is invalid"},
		{"hostname with hostNetwork", func(p *Pod) { p.Spec.HostNetwork = true; p.Spec.Hostname = "x"; p.Spec.Containers[0].Ports = nil }, []string{"spec.hostname"}, "hostNetwork"},
		{"bad label value", func(p *Pod) { p.Metadata.Labels["x"] = "has space" }, []string{"metadata.labels.x"}, "invalid"},
		{"shareProcessNamespace with hostPID", func(p *Pod) { p.Spec.HostPID = true; p.Spec.ShareProcessNamespace = ptr(true) }, []string{"spec.shareProcessNamespace"}, "hostPID"},
		{"configMap item escaping", func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{ConfigMap: &ConfigMapVolumeSource{LocalObjectReference: LocalObjectReference{Name: "cm"},
				Items: []KeyToPath{{Key: "k", Path: "../k"}}}}
		}, []string{"spec.volumes[0].configMap.items[0].path"}, "'..'"},
		{"negative grace period", func(p *Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(-1)) }, []string{"spec.terminationGracePeriodSeconds"}, "at least 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := basePod()
			tc.mutate(p)
			SetDefaults(p)
			errs := ValidatePod(p)
			var got []string
			for _, e := range errs {
				got = append(got, e.Path)
				if !errors.Is(e, ErrInvalid) && !errors.Is(e, ErrUnsupported) {
					t.Errorf("%v: class is not ErrInvalid/ErrUnsupported", e)
				}
			}
			sort.Strings(got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("error paths (-want +got):\n%s\nerrors:\n%v", diff, errs)
			}
			if tc.msg != "" && !strings.Contains(errs[0].Msg, tc.msg) {
				t.Errorf("first error %q does not contain %q", errs[0].Msg, tc.msg)
			}
		})
	}
}

func TestValidateConfigMapAndSecret(t *testing.T) {
	cm := &ConfigMap{TypeMeta: TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, Metadata: ObjectMeta{Name: "cm"},
		Data: map[string]string{"ok.conf": "x", "../evil": "y", "both": "z"}, BinaryData: map[string][]byte{"both": {1}}}
	SetConfigMapDefaults(cm)
	var got []string
	for _, e := range ValidateConfigMap(cm) {
		got = append(got, e.Path)
	}
	sort.Strings(got)
	if diff := cmp.Diff([]string{"binaryData.both", "data[../evil]"}, got); diff != "" {
		t.Errorf("ConfigMap errors (-want +got):\n%s", diff)
	}

	s := &Secret{TypeMeta: TypeMeta{APIVersion: "v1", Kind: "Secret"}, Metadata: ObjectMeta{Name: "s"},
		Data: map[string][]byte{"a": []byte("1")}, StringData: map[string]string{"a": "2", "b": "3"}}
	SetSecretDefaults(s)
	if errs := ValidateSecret(s); len(errs) != 0 {
		t.Fatalf("valid secret: %v", errs)
	}
	want := map[string][]byte{"a": []byte("2"), "b": []byte("3")}
	if diff := cmp.Diff(want, s.Data); diff != "" || s.StringData != nil || s.Type != SecretTypeOpaque {
		t.Errorf("stringData not merged as the API server does (-want +got):\n%s type=%q", diff, s.Type)
	}
}

func TestValidateSysctlOptions(t *testing.T) {
	tests := []struct {
		name        string
		mutate      func(p *Pod)
		want        []string
		msg         string
		allowUnsafe bool
	}{
		{"unsafe namespaced sysctl allowed by the operator", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{Name: "net.core.somaxconn", Value: "1024"}, {Name: "kernel.msgmax", Value: "65536"}}}
		}, nil, "", true},
		{"node-wide sysctl refused even when unsafe ones are allowed", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{Name: "kernel.panic", Value: "1"}, {Name: "vm.swappiness", Value: "1"}}}
		}, []string{"spec.securityContext.sysctls[0].name", "spec.securityContext.sysctls[1].name"}, "not a namespaced sysctl", true},
		{"IPC sysctl with hostIPC", func(p *Pod) {
			p.Spec.HostIPC = true
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}}}
		}, []string{"spec.securityContext.sysctls[0].name"}, "node's IPC namespace", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := basePod()
			tc.mutate(p)
			SetDefaults(p)
			errs := ValidatePodWithOptions(p, ValidationOptions{AllowUnsafeSysctls: tc.allowUnsafe})
			var got []string
			for _, e := range errs {
				got = append(got, e.Path)
			}
			sort.Strings(got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("error paths (-want +got):\n%s\nerrors:\n%v", diff, errs)
			}
			if tc.msg != "" && !strings.Contains(errs[0].Msg, tc.msg) {
				t.Errorf("first error %q does not contain %q", errs[0].Msg, tc.msg)
			}
		})
	}
}
