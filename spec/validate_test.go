package spec

import (
	"errors"
	"fmt"
	"math"
	"reflect"
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
		{"host port 65536", func(p *Pod) { p.Spec.Containers[0].Ports[0].HostPort = 65536 }, []string{"spec.containers[0].ports[0].hostPort"}, "65536 is out of range: must be 0..65535"},
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
		}, []string{"spec.securityContext.sysctls[0].value"}, "is not a plain decimal number"},
		{"sysctl name injection", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{Name: "net/ipv4/../../kernel/panic", Value: "1"}}}
		}, []string{"spec.securityContext.sysctls[0].name"}, "is not a sysctl name"},
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
		{"negative grace period", func(p *Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(-1)) }, []string{"spec.terminationGracePeriodSeconds"}, "-1 is out of range: must be 0..31536000 (one year)"},
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

// TestValidateIsolationAndNumbers covers fields that would silently weaken
// isolation or can never work, and numbers the node could not honour: each
// is refused with its class, and the message says why (or the range).
func TestValidateIsolationAndNumbers(t *testing.T) {
	init := func(p *Pod) *Container {
		p.Spec.InitContainers = append(p.Spec.InitContainers, Container{Name: "init", Image: "busybox:1.36"})
		return &p.Spec.InitContainers[len(p.Spec.InitContainers)-1]
	}
	exec := &Probe{ProbeHandler: ProbeHandler{Exec: &ExecAction{Command: []string{"true"}}}}
	q := resource.MustParse
	tests := []oneErrorCase{
		// Terminals and stdin, as Kubernetes takes them.
		{"tty, stdin and stdinOnce", func(p *Pod) {
			c := &p.Spec.Containers[0]
			c.TTY, c.Stdin, c.StdinOnce = true, true, true
		}, "", nil, ""},
		{"tty on an init container", func(p *Pod) { init(p).TTY = true }, "", nil, ""},
		// Native sidecars: probes and hooks allowed, unlike on init containers.
		{"native sidecar with probes and hooks", func(p *Pod) {
			c := init(p)
			c.RestartPolicy = ptr(ContainerRestartPolicyAlways)
			c.ReadinessProbe, c.LivenessProbe, c.StartupProbe = exec, exec, exec
			c.Lifecycle = &Lifecycle{PreStop: &LifecycleHandler{Exec: &ExecAction{Command: []string{"true"}}}}
		}, "", nil, ""},
		{"probes on a plain init container", func(p *Pod) { init(p).ReadinessProbe = exec },
			"spec.initContainers[0].readinessProbe", ErrInvalid, "must not be set on an init container"},
		{"init container restartPolicy other than Always", func(p *Pod) { init(p).RestartPolicy = ptr(ContainerRestartPolicy("Never")) },
			"spec.initContainers[0].restartPolicy", ErrInvalid, "the only value for an init container is Always"},
		{"app container restartPolicy", func(p *Pod) { p.Spec.Containers[0].RestartPolicy = ptr(ContainerRestartPolicyAlways) },
			"spec.containers[0].restartPolicy", ErrUnsupported, "the pod's restartPolicy applies"},

		// AppArmor: no profile is ever loaded here.
		{"appArmorProfile Localhost (container)", func(p *Pod) {
			p.Spec.Containers[0].SecurityContext = &SecurityContext{AppArmorProfile: &AppArmorProfile{Type: AppArmorLocalhost, LocalhostProfile: ptr("k8s-deny-write")}}
		}, "spec.containers[0].securityContext.appArmorProfile.type", ErrUnsupported, "AppArmor profiles are not supported"},
		{"appArmorProfile Localhost (pod)", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{AppArmorProfile: &AppArmorProfile{Type: AppArmorLocalhost, LocalhostProfile: ptr("x")}}
		}, "spec.securityContext.appArmorProfile.type", ErrUnsupported, "AppArmor profiles are not supported"},
		{"appArmorProfile RuntimeDefault and Unconfined", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{AppArmorProfile: &AppArmorProfile{Type: AppArmorRuntimeDefault}}
			p.Spec.Containers[0].SecurityContext = &SecurityContext{AppArmorProfile: &AppArmorProfile{Type: AppArmorUnconfined}}
		}, "", nil, ""},
		{"appArmorProfile localhostProfile without Localhost", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{AppArmorProfile: &AppArmorProfile{Type: AppArmorRuntimeDefault, LocalhostProfile: ptr("x")}}
		}, "spec.securityContext.appArmorProfile.localhostProfile", ErrInvalid, "only when type is Localhost"},
		{"appArmorProfile bad type", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{AppArmorProfile: &AppArmorProfile{Type: "Strict"}}
		}, "spec.securityContext.appArmorProfile.type", ErrInvalid, "not one of"},
		{"AppArmor annotation localhost", func(p *Pod) {
			p.Metadata.Annotations = map[string]string{AppArmorAnnotationPrefix + "web": "localhost/k8s-deny-write"}
		}, "metadata.annotations[container.apparmor.security.beta.kubernetes.io/web]", ErrUnsupported, "AppArmor profiles are not supported"},
		{"AppArmor annotations runtime/default and unconfined", func(p *Pod) {
			init(p)
			p.Metadata.Annotations = map[string]string{AppArmorAnnotationPrefix + "web": "runtime/default", AppArmorAnnotationPrefix + "init": "unconfined"}
		}, "", nil, ""},
		{"AppArmor annotation for a missing container", func(p *Pod) {
			p.Metadata.Annotations = map[string]string{AppArmorAnnotationPrefix + "nope": "runtime/default"}
		}, "metadata.annotations[container.apparmor.security.beta.kubernetes.io/nope]", ErrInvalid, `names container "nope"`},
		{"AppArmor annotation bad value", func(p *Pod) {
			p.Metadata.Annotations = map[string]string{AppArmorAnnotationPrefix + "web": "strict"}
		}, "metadata.annotations[container.apparmor.security.beta.kubernetes.io/web]", ErrInvalid, "not one of"},

		// CVE-2024-21626 class: a working directory on procfs.
		{"workingDir /proc/self/fd/12", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/proc/self/fd/12" }, "spec.containers[0].workingDir", ErrInvalid, "inside /proc"},
		{"workingDir /proc/thread-self/fd/7", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/proc/thread-self/fd/7" }, "spec.containers[0].workingDir", ErrInvalid, "inside /proc"},
		{"workingDir /proc/1/fd/3", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/proc/1/fd/3" }, "spec.containers[0].workingDir", ErrInvalid, "inside /proc"},
		{"workingDir /proc", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/proc" }, "spec.containers[0].workingDir", ErrInvalid, "inside /proc"},
		{"workingDir /process is fine", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/process" }, "", nil, ""},

		// Mounts over the runtime's own mounts fail every start.
		{"mountPath /", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/" }, "spec.containers[0].volumeMounts[0].mountPath", ErrInvalid, "hide the container's image"},
		{"mountPath /proc", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/proc" }, "spec.containers[0].volumeMounts[0].mountPath", ErrInvalid, "mounts procfs there"},
		{"mountPath /proc/sys", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/proc/sys" }, "spec.containers[0].volumeMounts[0].mountPath", ErrInvalid, "mounts procfs there"},
		{"mountPath /sys", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/sys" }, "spec.containers[0].volumeMounts[0].mountPath", ErrInvalid, "sysfs"},
		{"mountPath /sys/fs/cgroup", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/sys/fs/cgroup" }, "spec.containers[0].volumeMounts[0].mountPath", ErrInvalid, "sysfs"},
		{"mountPath /dev", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/dev" }, "spec.containers[0].volumeMounts[0].mountPath", ErrInvalid, "mount below it, such as at /dev/shm"},
		{"mountPath /dev/shm, /devices, /system are fine", func(p *Pod) {
			p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "data", MountPath: "/dev/shm"}, {Name: "data", MountPath: "/devices"}, {Name: "data", MountPath: "/system"}}
		}, "", nil, ""},
		{"terminationMessagePath in /proc", func(p *Pod) { p.Spec.Containers[0].TerminationMessagePath = "/proc/self/attr/x" }, "spec.containers[0].terminationMessagePath", ErrInvalid, "cannot be a mount point"},

		// Numbers: refused with the range, never wrapped.
		{"cpu limit 1e11 cores", func(p *Pod) { p.Spec.Containers[0].Resources.Limits[ResourceCPU] = q("1e11") }, "spec.containers[0].resources.limits.cpu", ErrInvalid, "must be at most 175921860 cores"},
		{"cpu limit at the kernel's maximum", func(p *Pod) { p.Spec.Containers[0].Resources.Limits[ResourceCPU] = q("175921860") }, "", nil, ""},
		{"cpu limit one millicore above it", func(p *Pod) { p.Spec.Containers[0].Resources.Limits[ResourceCPU] = q("175921860001m") }, "spec.containers[0].resources.limits.cpu", ErrInvalid, "out of range"},
		{"cpu request 1e13 cores", func(p *Pod) { p.Spec.Containers[0].Resources.Requests[ResourceCPU] = q("1e13") }, "spec.containers[0].resources.requests.cpu", ErrInvalid, "out of range"},
		{"cpu 1e400", func(p *Pod) { p.Spec.Containers[0].Resources.Limits[ResourceCPU] = q("1e400") }, "spec.containers[0].resources.limits.cpu", ErrInvalid, "out of range"},
		{"memory 1e30", func(p *Pod) { p.Spec.Containers[0].Resources.Limits[ResourceMemory] = q("1e30") }, "spec.containers[0].resources.limits.memory", ErrInvalid, "must be at most 9223372036854775807 bytes"},
		{"memory at int64's maximum", func(p *Pod) {
			p.Spec.Containers[0].Resources.Limits[ResourceMemory] = q("9223372036854775807")
		}, "", nil, ""},
		{"memory one byte above", func(p *Pod) {
			p.Spec.Containers[0].Resources.Limits[ResourceMemory] = q("9223372036854775808")
			p.Spec.Containers[0].Resources.Requests[ResourceMemory] = q("1Mi")
		}, "spec.containers[0].resources.limits.memory", ErrInvalid, "out of range"},
		{"ephemeral-storage 1e19", func(p *Pod) { p.Spec.Containers[0].Resources.Requests[ResourceEphemeralStorage] = q("1e19") }, "spec.containers[0].resources.requests.ephemeral-storage", ErrInvalid, "out of range"},
		{"emptyDir sizeLimit 1e30", func(p *Pod) { p.Spec.Volumes[0].EmptyDir.SizeLimit = ptr(q("1e30")) }, "spec.volumes[0].emptyDir.sizeLimit", ErrInvalid, "out of range"},
		{"grace period MaxInt64", func(p *Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(math.MaxInt64)) }, "spec.terminationGracePeriodSeconds", ErrInvalid, "9223372036854775807 is out of range: must be 0..31536000 (one year)"},
		{"grace period of one year", func(p *Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(MaxGracePeriodSeconds)) }, "", nil, ""},
		{"probe grace period MaxInt64", func(p *Pod) {
			p.Spec.Containers[0].LivenessProbe = &Probe{ProbeHandler: exec.ProbeHandler, TerminationGracePeriodSeconds: ptr(int64(math.MaxInt64))}
		}, "spec.containers[0].livenessProbe.terminationGracePeriodSeconds", ErrInvalid, "must be 1..31536000"},
		{"sleep hook MaxInt64", func(p *Pod) {
			p.Spec.Containers[0].Lifecycle = &Lifecycle{PreStop: &LifecycleHandler{Sleep: &SleepAction{Seconds: math.MaxInt64}}}
		}, "spec.containers[0].lifecycle.preStop.sleep.seconds", ErrInvalid, "must be 0..31536000"},
		{"negative probe period", func(p *Pod) {
			p.Spec.Containers[0].ReadinessProbe = &Probe{ProbeHandler: exec.ProbeHandler, PeriodSeconds: -1}
		}, "spec.containers[0].readinessProbe.periodSeconds", ErrInvalid, "must be 0..2147483647"},
		{"gRPC probe port 0", func(p *Pod) {
			p.Spec.Containers[0].ReadinessProbe = &Probe{ProbeHandler: ProbeHandler{GRPC: &GRPCAction{Port: 0}}}
		}, "spec.containers[0].readinessProbe.grpc.port", ErrInvalid, "must be 1..65535"},
		{"supplemental group 2^31", func(p *Pod) {
			p.Spec.SecurityContext = &PodSecurityContext{SupplementalGroups: []int64{1 << 31}}
		}, "spec.securityContext.supplementalGroups[0]", ErrInvalid, "must be 0..2147483647"},
		{"volume mode 0o1000", func(p *Pod) {
			p.Spec.Volumes[0].VolumeSource = VolumeSource{ConfigMap: &ConfigMapVolumeSource{LocalObjectReference: LocalObjectReference{Name: "cm"}, DefaultMode: ptr(int32(0o1000))}}
		}, "spec.volumes[0].configMap.defaultMode", ErrInvalid, "must be 0..511"},
	}
	runOneErrorCases(t, tests)
}

func TestRangeTagsMatchConstants(t *testing.T) {
	for _, f := range []struct {
		typ   reflect.Type
		field string
	}{{reflect.TypeFor[PodSpec](), "terminationGracePeriodSeconds"}, {reflect.TypeFor[Probe](), "terminationGracePeriodSeconds"},
		{reflect.TypeFor[SleepAction](), "seconds"}} {
		_, hi, err := rangeParam(infoFor(f.typ).ranges[f.field])
		if err != nil || hi != MaxGracePeriodSeconds {
			t.Errorf("%s.%s: range tag's maximum is %d (%v), want MaxGracePeriodSeconds %d", f.typ.Name(), f.field, hi, err, MaxGracePeriodSeconds)
		}
	}
}

// TestValidateSysctlValues: every value validation accepts, the kernel
// accepts when the runtime writes it (see also the root test
// TestSysctlsAgreeWithRuntimeAndKernel); the slash form is a name like any.
func TestValidateSysctlValues(t *testing.T) {
	tests := []struct {
		sysctls []Sysctl
		want    []string // paths with an error
		msg     string
	}{
		{[]Sysctl{{"net/ipv4/ip_local_port_range", "32768 60999"}}, nil, ""},
		{[]Sysctl{{"net.ipv4.tcp_syncookies", "+1"}}, []string{"spec.securityContext.sysctls[0].value"}, "is not a plain decimal number"},
		{[]Sysctl{{"net.ipv4.tcp_syncookies", "256"}}, []string{"spec.securityContext.sysctls[0].value"}, "each number must be 0..255"},
		{[]Sysctl{{"net.ipv4.tcp_syncookies", "1\n"}}, []string{"spec.securityContext.sysctls[0].value"}, "is not a plain decimal number"},
		{[]Sysctl{{"net.core.somaxconn", "1\n"}}, []string{"spec.securityContext.sysctls[0].name", "spec.securityContext.sysctls[0].value"}, "safe set"},
		{[]Sysctl{{"net.ipv4.tcp_syncookies", "01"}}, []string{"spec.securityContext.sysctls[0].value"}, "octal"},
		{[]Sysctl{{"net.ipv4.tcp_syncookies", "1 2"}}, []string{"spec.securityContext.sysctls[0].value"}, "must be one integer"},
		{[]Sysctl{{"net.ipv4.tcp_rmem", "4096 131072 6291456"}, {"net.ipv4.tcp_wmem", "1 2 3"}}, nil, ""},
		{[]Sysctl{{"net.ipv4.tcp_rmem", "100 200 300"}}, []string{"spec.securityContext.sysctls[0].value"}, "each number must be 4096..2147483647"},
		{[]Sysctl{{"net.ipv4.tcp_rmem", "4096 131072"}}, []string{"spec.securityContext.sysctls[0].value"}, "must be 3 integers"},
		{[]Sysctl{{"net.ipv4.ip_local_reserved_ports", "8080,9148-9150"}}, nil, ""},
		{[]Sysctl{{"net.ipv4.ip_local_reserved_ports", "8080, 9000"}}, []string{"spec.securityContext.sysctls[0].value"}, "joined by commas"},
		{[]Sysctl{{"net.ipv4.ip_local_reserved_ports", "9-3"}}, []string{"spec.securityContext.sysctls[0].value"}, "ends before it starts"},
		{[]Sysctl{{"net.ipv4.ip_local_reserved_ports", "65536"}}, []string{"spec.securityContext.sysctls[0].value"}, "0..65535"},
		{[]Sysctl{{"net.ipv4.ip_local_port_range", "60999 32768"}}, []string{"spec.securityContext.sysctls[0].value"}, "ends before it starts"},
		{[]Sysctl{{"net.ipv4.ip_local_port_range", "1000 2000"}}, []string{"spec.securityContext.sysctls[0].value"}, "starts below 1024"},
		// Written after the range, which then still starts at 1024.
		{[]Sysctl{{"net.ipv4.ip_unprivileged_port_start", "0"}, {"net.ipv4.ip_local_port_range", "1000 2000"}},
			[]string{"spec.securityContext.sysctls[1].value"}, "starts below 1024"},
		{[]Sysctl{{"net.ipv4.ip_unprivileged_port_start", "32769"}}, []string{"spec.securityContext.sysctls[0].value"}, "above the local port range's start 32768"},
		{[]Sysctl{{"net.ipv4.ip_local_port_range", "2000 3000"}, {"net.ipv4.ip_unprivileged_port_start", "2000"}}, nil, ""},
		{[]Sysctl{{"net.ipv4.tcp_syncookies", "1"}, {"net/ipv4/tcp_syncookies", "1"}}, []string{"spec.securityContext.sysctls[1].name"}, "duplicate"},
		{[]Sysctl{{"Net.ipv4.tcp_syncookies", "1"}}, []string{"spec.securityContext.sysctls[0].name"}, "is not a sysctl name"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.sysctls), func(t *testing.T) {
			p := basePod()
			p.Spec.SecurityContext = &PodSecurityContext{Sysctls: tc.sysctls}
			SetDefaults(p)
			errs := ValidatePod(p)
			var got []string
			for _, e := range errs {
				got = append(got, e.Path)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("error paths (-want +got):\n%s\nerrors:\n%v", diff, errs)
			}
			if tc.msg != "" && !strings.Contains(errs[0].Msg, tc.msg) {
				t.Errorf("error %q does not contain %q", errs[0].Msg, tc.msg)
			}
		})
	}
}

func TestSysctlSlashFormIsNormalized(t *testing.T) {
	slash, dotted := basePod(), basePod()
	slash.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{"net/ipv4/ip_local_port_range", "32768 60999"}}}
	dotted.Spec.SecurityContext = &PodSecurityContext{Sysctls: []Sysctl{{"net.ipv4.ip_local_port_range", "32768 60999"}}}
	SetDefaults(slash)
	SetDefaults(dotted)
	if got := slash.Spec.SecurityContext.Sysctls[0].Name; got != "net.ipv4.ip_local_port_range" {
		t.Errorf("slash form defaulted to %q, want the dotted form", got)
	}
	if SandboxHash(slash) != SandboxHash(dotted) {
		t.Error("the two spellings of one sysctl hash differently")
	}
	// A component holding a dot (an interface name) keeps the slash form:
	// the dotted form would name another file.
	if got := normalizeSysctlName("net/ipv4/conf/eth0.100/forwarding"); got != "net/ipv4/conf/eth0.100/forwarding" {
		t.Errorf("got %q", got)
	}
}
