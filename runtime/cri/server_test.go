package cri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/runtime/streaming"
)

// env is a CRI server on the fake runtime, reached through a real gRPC
// client over a unix socket, as kubelet reaches it.
type env struct {
	t      *testing.T
	rt     *fake.Runtime
	dir    string // the server's state directory
	srv    *Server
	rc     runtimeapi.RuntimeServiceClient
	ic     runtimeapi.ImageServiceClient
	cancel context.CancelFunc
	done   chan error

	streaming net.Listener // optional
	network   Network      // optional
}

func newEnv(t *testing.T, rt *fake.Runtime, dir string) *env {
	t.Helper()
	e := &env{t: t, rt: rt, dir: dir}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	e.t.Helper()
	srv, err := New(Options{Runtime: e.rt, Images: e.rt, StateDir: e.dir, SeccompDir: filepath.Join(e.dir, "seccomp"),
		ImageFSDir: e.dir, Streaming: e.streaming, Network: e.network, Log: zerolog.Nop()})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := srv.Recover(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	sock := filepath.Join(e.t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.srv, e.cancel, e.done = srv, cancel, make(chan error, 1)
	go func() { e.done <- srv.Serve(ctx, l) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	e.rc, e.ic = runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

// stop ends the server as a SIGTERM would; the runtime keeps running.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.done; err != nil {
		e.t.Errorf("Serve: %v", err)
	}
	e.cancel = nil
}

func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

var ctx = context.Background()

func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: "uid-" + name, Attempt: 1},
		Labels:       map[string]string{"app": name},
		Annotations:  map[string]string{"note": "kept"},
		LogDirectory: "/var/log/pods/ns_" + name,
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
	}
}

func ctrConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox:1.36"},
		Command:  []string{"sleep", "inf"},
		LogPath:  name + "/0.log",
		Labels:   map[string]string{"c": name},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
	}
}

func (e *env) runPod(name string) string {
	e.t.Helper()
	resp, err := e.rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(name)})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.GetPodSandboxId()
}

func (e *env) create(pod, name string) string {
	e.t.Helper()
	resp, err := e.rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrConfig(name), SandboxConfig: podConfig("x")})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.GetContainerId()
}

func (e *env) ctrState(id string) runtimeapi.ContainerState {
	e.t.Helper()
	resp, err := e.rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.GetStatus().GetState()
}

func (e *env) podState(id string) runtimeapi.PodSandboxState {
	e.t.Helper()
	resp, err := e.rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.GetStatus().GetState()
}

func code(err error) codes.Code { return grpcstatus.Code(err) }

func TestSandboxLifecycle(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	id := e.runPod("web")
	st, err := e.rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id[:13], Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	s := st.GetStatus()
	if s.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || s.GetNetwork().GetIp() == "" ||
		s.GetMetadata().GetName() != "web" || s.GetLabels()["app"] != "web" || s.GetAnnotations()["note"] != "kept" {
		t.Errorf("status = %v", s)
	}
	if len(s.GetAnnotations()) != 1 {
		t.Errorf("annotations = %v, want exactly the client's", s.GetAnnotations())
	}
	if !strings.Contains(st.GetInfo()["info"], `"pid"`) {
		t.Errorf("verbose info = %v", st.GetInfo())
	}
	// The runtime's sandbox carries the CRI's mark; its ID is the CRI's.
	box, err := rt.GetSandbox(ctx, id)
	if err != nil || box.Owner != runtime.OwnerCRI || box.Namespaces.PID != runtime.NamespaceContainer {
		t.Fatalf("runtime sandbox = %+v, %v", box, err)
	}
	if _, err := e.rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("web")}); code(err) != codes.AlreadyExists {
		t.Errorf("the same metadata twice: %v, want AlreadyExists", err)
	}

	c := e.create(id, "app")
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if got := e.podState(id); got != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("after stop: %v", got)
	}
	// The runtime let go of everything; the CRI still shows the exited
	// container until RemovePodSandbox.
	if _, err := rt.GetSandbox(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("runtime sandbox after StopPodSandbox: %v", err)
	}
	if got := e.ctrState(c); got != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container after StopPodSandbox: %v", got)
	}
	st, _ = e.rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if ip := st.GetStatus().GetNetwork().GetIp(); ip != "" {
		t.Errorf("a stopped sandbox still reports IP %s", ip)
	}
	for range 2 { // idempotent
		if _, err := e.rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); code(err) != codes.NotFound {
		t.Errorf("status after remove: %v, want NotFound", err)
	}
	if _, err := e.rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c}); code(err) != codes.NotFound {
		t.Errorf("container after RemovePodSandbox: %v, want NotFound", err)
	}
	// Gone is gone: stop and remove succeed.
	missing := strings.Repeat("0", 32)
	if _, err := e.rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: missing}); err != nil {
		t.Error(err)
	}
	if _, err := e.rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: missing}); err != nil {
		t.Error(err)
	}
	if _, err := e.rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: missing}); err != nil {
		t.Error(err)
	}
	if _, err := e.rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: missing}); err != nil {
		t.Error(err)
	}
	if files, _ := os.ReadDir(filepath.Join(e.dir, "sandboxes")); len(files) != 0 {
		t.Errorf("records left: %v", files)
	}
}

// TestCreateThenStart: a created container exists only in the CRI's store
// (reported CREATED), survives the server's restart, and starts from the
// recorded config; a started one is the runtime's, adopted after a restart
// without being started again.
func TestCreateThenStart(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	pod := e.runPod("db")
	a, b := e.create(pod, "a"), e.create(pod, "b")
	if got := e.ctrState(a); got != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("created: %v", got)
	}
	if cs, _ := rt.ListContainers(ctx, runtime.ContainerFilter{}); len(cs) != 0 {
		t.Fatalf("the runtime holds %d containers before any start", len(cs))
	}
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: a}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if got := e.ctrState(b); got != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("created container after the server's restart: %v", got)
	}
	if got := e.ctrState(a); got != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("running container after the server's restart: %v", got)
	}
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: b}); err != nil {
		t.Fatal(err)
	}
	if n := rt.Calls(fake.OpStartContainer); n != 2 {
		t.Errorf("runtime starts = %d, want 2 (one each, none again after the restart)", n)
	}
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: b}); code(err) != codes.FailedPrecondition {
		t.Errorf("starting twice: %v, want FailedPrecondition", err)
	}
	cs, err := rt.GetContainer(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if cs.LogPath != "/var/log/pods/ns_db/b/0.log" || cs.Labels["c"] != "b" {
		t.Errorf("the runtime got log path %q, labels %v", cs.LogPath, cs.Labels)
	}
	list, err := e.rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}, LabelSelector: map[string]string{"c": "a"}}})
	if err != nil || len(list.GetContainers()) != 1 || list.GetContainers()[0].GetId() != a {
		t.Errorf("filtered list = %v, %v", list, err)
	}
	if err := rt.Exit(a, 3); err != nil {
		t.Fatal(err)
	}
	st, _ := e.rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: a})
	if s := st.GetStatus(); s.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || s.GetExitCode() != 3 || s.GetReason() != "Error" {
		t.Errorf("exited status = %v", s)
	}
	if _, err := e.rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.GetContainer(ctx, a); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("runtime container after RemoveContainer: %v", err)
	}
}

// TestStartFailure: a start the runtime refuses leaves the container
// exited with StartError, never CREATED (kubelet would retry it forever).
func TestStartFailure(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	pod := e.runPod("p")
	c := e.create(pod, "c")
	rt.FailNext(fake.OpStartContainer, errors.New("no such file: /bin/nothing"))
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c}); err == nil {
		t.Fatal("start succeeded")
	}
	st, err := e.rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c})
	if err != nil {
		t.Fatal(err)
	}
	if s := st.GetStatus(); s.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || s.GetReason() != "StartError" ||
		!strings.Contains(s.GetMessage(), "/bin/nothing") {
		t.Errorf("status = %v", s)
	}
}

// TestRefusals: what the runtime cannot do fails CreateContainer or
// RunPodSandbox with InvalidArgument naming the field; nothing is made.
func TestRefusals(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	pod := e.runPod("p")
	sc := func(f func(*runtimeapi.LinuxContainerSecurityContext)) func(*runtimeapi.ContainerConfig) {
		return func(c *runtimeapi.ContainerConfig) { f(c.Linux.SecurityContext) }
	}
	for _, tc := range []struct {
		name, field string
		mod         func(*runtimeapi.ContainerConfig)
	}{
		{"device", "devices", func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/sda", HostPath: "/dev/sda", Permissions: "rwm"}}
		}},
		{"propagation", "mounts[0].propagation", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: "/tmp", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
		}},
		{"relative host path", "mounts[0]", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: "tmp"}}
		}},
		{"masked path outside the fixed list", "masked_paths", sc(func(s *runtimeapi.LinuxContainerSecurityContext) { s.MaskedPaths = []string{"/bin/ls"} })},
		{"readonly path outside the fixed list", "readonly_paths", sc(func(s *runtimeapi.LinuxContainerSecurityContext) { s.ReadonlyPaths = []string{"/tmp"} })},
		{"privileged in an unprivileged pod", "privileged", sc(func(s *runtimeapi.LinuxContainerSecurityContext) { s.Privileged = true })},
		{"group without user", "run_as_group", sc(func(s *runtimeapi.LinuxContainerSecurityContext) { s.RunAsGroup = &runtimeapi.Int64Value{Value: 5} })},
		{"ambient capabilities", "add_ambient_capabilities", sc(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.Capabilities = &runtimeapi.Capability{AddAmbientCapabilities: []string{"NET_RAW"}}
		})},
		{"pid namespace unlike the pod's", "namespace_options.pid", sc(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "x"}
		})},
		{"relative seccomp profile", "localhost_ref", sc(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p.json"}
		})},
		{"cpuset", "cpuset_cpus", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpusetCpus: "0"}
		}},
		{"log path out of the pod's directory", "log_path", func(c *runtimeapi.ContainerConfig) { c.LogPath = "../other/0.log" }},
		{"missing image", "image busybox:9", func(c *runtimeapi.ContainerConfig) { c.Image.Image = "busybox:9" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctrConfig("c")
			tc.mod(c)
			_, err := e.rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: c})
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want one naming %s", err, tc.field)
			}
			if want := codes.InvalidArgument; tc.field == "image busybox:9" {
				if code(err) != codes.NotFound {
					t.Errorf("code %v, want NotFound", code(err))
				}
			} else if code(err) != want {
				t.Errorf("code %v, want %v", code(err), want)
			}
		})
	}
	list, _ := e.rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if len(list.GetContainers()) != 0 {
		t.Errorf("refused configs left containers: %v", list.GetContainers())
	}
	userns := podConfig("u")
	userns.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}
	if _, err := e.rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: userns}); code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "userns_options") {
		t.Errorf("user namespace pod: %v", err)
	}
	slice := podConfig("s")
	slice.Linux.CgroupParent = "kubepods.slice"
	if _, err := e.rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: slice}); code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "cgroup_parent") {
		t.Errorf("systemd slice: %v", err)
	}
	if boxes, _ := rt.ListSandboxes(ctx); len(boxes) != 1 {
		t.Errorf("refused pods reached the runtime: %d sandboxes", len(boxes))
	}
}

// TestTranslate checks what the runtime receives for kubelet's usual
// settings.
func TestTranslate(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	pc := podConfig("t")
	pc.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}}
	pc.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80}, {Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 5353}}
	resp, err := e.rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatal(err)
	}
	box, _ := rt.GetSandbox(ctx, resp.GetPodSandboxId())
	if len(box.Ports) != 1 || box.Ports[0] != (runtime.PortMapping{Protocol: runtime.ProtocolUDP, ContainerPort: 53, HostPort: 5353}) {
		t.Errorf("ports = %+v (a container port without a host port publishes nothing)", box.Ports)
	}
	profile := filepath.Join(t.TempDir(), "block.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := ctrConfig("c")
	c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1")}}
	c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/srv/data", Readonly: true}}
	c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 256,
		MemoryLimitInBytes: 64 << 20, OomScoreAdj: 1000, HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "7GB", Limit: 0}}}
	c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
	c.Linux.SecurityContext.NoNewPrivs = true
	c.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}}
	c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}
	c.Linux.SecurityContext.MaskedPaths = defaultMaskedPaths
	c.Linux.SecurityContext.ReadonlyPaths = defaultReadonlyPaths
	cr, err := e.rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: resp.GetPodSandboxId(), Config: c})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.srv.store.container(cr.GetContainerId())
	if err != nil {
		t.Fatal(err)
	}
	sp := rec.Spec
	if sp.Resources != (runtime.Resources{CPULimitMilli: 500, CPURequestMilli: 250, MemoryLimit: 64 << 20}) {
		t.Errorf("resources = %+v", sp.Resources)
	}
	if sp.OOMScoreAdj == nil || *sp.OOMScoreAdj != 1000 || len(sp.Env) != 1 || sp.Env[0] != (runtime.EnvVar{Name: "A", Value: "1"}) {
		t.Errorf("oom %v env %+v", sp.OOMScoreAdj, sp.Env)
	}
	if len(sp.Mounts) != 1 || sp.Mounts[0] != (runtime.Mount{HostPath: "/srv/data", ContainerPath: "/data", ReadOnly: true}) {
		t.Errorf("mounts = %+v", sp.Mounts)
	}
	sec := sp.Security
	if *sec.RunAsUser != 1000 || sec.AllowPrivilegeEscalation || sec.CapDrop[0] != "ALL" || sec.CapAdd[0] != "NET_BIND_SERVICE" ||
		sec.Seccomp.Type != "Localhost" || !strings.HasPrefix(sec.Seccomp.LocalhostProfile, "cri/") {
		t.Errorf("security = %+v", sec)
	}
	// The profile was copied where the runtime reads profiles, by content.
	if b, err := os.ReadFile(filepath.Join(e.dir, "seccomp", sec.Seccomp.LocalhostProfile)); err != nil || !strings.Contains(string(b), "SCMP_ACT_ALLOW") {
		t.Errorf("copied profile: %q, %v", b, err)
	}
	// A nil profile is the CRI's unconfined; RuntimeDefault is asked for.
	c2 := ctrConfig("c2")
	cr2, err := e.rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: resp.GetPodSandboxId(), Config: c2})
	if err != nil {
		t.Fatal(err)
	}
	rec2, _ := e.srv.store.container(cr2.GetContainerId())
	if rec2.Spec.Security.Seccomp.Type != "Unconfined" || !rec2.Spec.Security.AllowPrivilegeEscalation {
		t.Errorf("defaults = %+v", rec2.Spec.Security)
	}
}

func TestUpdateResourcesAndStats(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	pod := e.runPod("p")
	c := e.create(pod, "c")
	upd := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 200000, MemoryLimitInBytes: 128 << 20}
	// Before the start: recorded, applied at the start.
	if _, err := e.rc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: c, Linux: upd}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c}); err != nil {
		t.Fatal(err)
	}
	if r, _ := rt.Resources(c); r.CPULimitMilli != 2000 || r.MemoryLimit != 128<<20 {
		t.Errorf("started with %+v", r)
	}
	upd.MemoryLimitInBytes = 256 << 20
	if _, err := e.rc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: c, Linux: upd}); err != nil {
		t.Fatal(err)
	}
	if r, _ := rt.Resources(c); r.MemoryLimit != 256<<20 {
		t.Errorf("after the update: %+v", r)
	}
	st, _ := e.rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c})
	if m := st.GetStatus().GetResources().GetLinux().GetMemoryLimitInBytes(); m != 256<<20 {
		t.Errorf("status reports memory limit %d", m)
	}
	stats, err := e.rc.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
	if err != nil || len(stats.GetStats()) != 1 || stats.GetStats()[0].GetCpu().GetTimestamp() == 0 {
		t.Errorf("stats = %v, %v", stats, err)
	}
	ps, err := e.rc.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil || len(ps.GetStats()) != 1 || len(ps.GetStats()[0].GetLinux().GetContainers()) != 1 {
		t.Errorf("pod stats = %v, %v", ps, err)
	}
}

func TestImages(t *testing.T) {
	rt := fake.New()
	e := newEnv(t, rt, t.TempDir())
	auth := &runtimeapi.AuthConfig{Username: "u", Password: "p", ServerAddress: "reg.example:5000"}
	resp, err := e.ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "reg.example:5000/app:1"}, Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Pulls("reg.example:5000/app:1") != 1 {
		t.Error("no pull")
	}
	st, err := e.ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: resp.GetImageRef()}})
	if err != nil || st.GetImage().GetId() != resp.GetImageRef() || st.GetImage().GetRepoTags()[0] != "reg.example:5000/app:1" ||
		!strings.HasPrefix(st.GetImage().GetRepoDigests()[0], "reg.example:5000/app@sha256:") {
		t.Errorf("status by ID = %v, %v", st, err)
	}
	none, err := e.ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "nothing:1"}})
	if err != nil || none.GetImage() != nil {
		t.Errorf("missing image: %v, %v (want an empty status, no error)", none, err)
	}
	list, _ := e.ic.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if len(list.GetImages()) != 1 {
		t.Errorf("list = %v", list)
	}
	if _, err := e.ic.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "reg.example:5000/app:1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ic.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "reg.example:5000/app:1"}}); err != nil {
		t.Errorf("removing a missing image: %v", err)
	}
	fs, err := e.ic.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fs.GetImageFilesystems()) != 1 || fs.GetImageFilesystems()[0].GetInodesUsed().GetValue() == 0 {
		t.Errorf("fs info = %v, %v", fs, err)
	}
}

func TestCRIImageUser(t *testing.T) {
	for _, tc := range []struct {
		user     string
		uid      int64
		hasUID   bool
		username string
	}{
		{"1002", 1002, true, ""}, {"www-data", 0, false, "www-data"}, {"1003:1003", 1003, true, ""}, {"www-data:www-data", 0, false, "www-data"}, {"", 0, false, ""},
	} {
		img := criImage(&runtime.Image{ID: "sha256:1", Config: runtime.ImageConfig{User: tc.user}})
		if (img.GetUid() != nil) != tc.hasUID || img.GetUid().GetValue() != tc.uid || img.GetUsername() != tc.username {
			t.Errorf("user %q: uid %v username %q", tc.user, img.GetUid(), img.GetUsername())
		}
	}
}

// TestRecover: a creation cut short by a crash (record "creating") and a
// CRI sandbox without a record are removed at the next start; pods that
// run are adopted untouched.
func TestRecover(t *testing.T) {
	rt := fake.New()
	dir := t.TempDir()
	e := newEnv(t, rt, dir)
	kept := e.runPod("kept")
	e.stop()
	half := &sandboxRecord{ID: newID(), State: sandboxCreating, CreatedAt: time.Now(), config: podConfig("half")}
	s := &store{dir: dir}
	if err := s.putSandbox(half); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{half.ID, newID()} {
		if _, err := rt.CreateSandbox(ctx, &runtime.SandboxConfig{ID: id, Pod: runtime.PodKey{Namespace: "ns", Name: id},
			Owner: runtime.OwnerCRI}); err != nil {
			t.Fatal(err)
		}
	}
	manifestPod, err := rt.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "from-a-manifest"}})
	if err != nil {
		t.Fatal(err)
	}
	e.start()
	boxes, _ := rt.ListSandboxes(ctx)
	var ids []string
	for _, b := range boxes {
		ids = append(ids, b.ID)
	}
	if len(boxes) != 2 || !(ids[0] == kept || ids[1] == kept) || !(ids[0] == manifestPod.ID || ids[1] == manifestPod.ID) {
		t.Errorf("after recovery the runtime holds %v, want the kept pod and the manifest's", ids)
	}
	if _, err := s.sandbox(half.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("half-made record: %v", err)
	}
	list, _ := e.rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if len(list.GetItems()) != 1 || list.GetItems()[0].GetId() != kept {
		t.Errorf("the CRI lists %v", list.GetItems())
	}
}

// TestPartition: the reconciler's view of a shared runtime has none of
// the CRI's pods, cannot remove them, and hears none of their exits.
func TestPartition(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	criPod := e.runPod("kubelets")
	criCtr := e.create(criPod, "c")
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: criCtr}); err != nil {
		t.Fatal(err)
	}
	view := WithoutCRI(rt)
	if _, ok := view.(runtime.ExitWatcher); !ok {
		t.Fatal("the view lost ExitWatcher")
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exits, err := view.(runtime.ExitWatcher).WatchExits(wctx)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := view.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "mine"}})
	if err != nil {
		t.Fatal(err)
	}
	myCtr, err := view.StartContainer(ctx, &runtime.ContainerConfig{SandboxID: mine.ID, Name: "m", Image: "busybox:1.36"})
	if err != nil {
		t.Fatal(err)
	}
	// Whatever a manifest writes in its annotations, its pod stays the
	// reconciler's: ownership is no annotation.
	spoof, err := view.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "spoof"},
		Annotations: map[string]string{"pelagos.io/owner": "cri", "owner": runtime.OwnerCRI}})
	if err != nil {
		t.Fatal(err)
	}
	boxes, _ := view.ListSandboxes(ctx)
	if len(boxes) != 2 || boxes[0].ID == criPod || boxes[1].ID == criPod {
		t.Errorf("the view lists %v, want the two manifest pods", boxes)
	}
	if _, err := view.GetSandbox(ctx, spoof.ID); err != nil {
		t.Errorf("a manifest pod annotated as the CRI's is hidden from the reconciler: %v", err)
	}
	if _, err := view.GetSandbox(ctx, criPod); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("GetSandbox of the CRI's pod through the view: %v", err)
	}
	for _, f := range []runtime.ContainerFilter{{}, {SandboxID: criPod}} {
		cs, _ := view.ListContainers(ctx, f)
		for _, c := range cs {
			if c.ID == criCtr {
				t.Errorf("the view lists the CRI's container (filter %+v)", f)
			}
		}
	}
	if err := view.RemoveSandbox(ctx, criPod); err != nil {
		t.Fatal(err)
	}
	if got := e.podState(criPod); got != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("the CRI's pod after a removal through the view: %v", got)
	}
	rt.Exit(criCtr, 0)
	rt.Exit(myCtr.ID, 0)
	select {
	case ev := <-exits:
		if ev.ContainerID != myCtr.ID {
			t.Errorf("the view passed on the exit of %s", ev.ContainerID)
		}
	case <-time.After(time.Minute):
		t.Fatal("no exit event")
	}
}

// TestEvents: GetContainerEvents streams the lifecycle in order, with the
// pod's status.
func TestEvents(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := e.rc.GetContainerEvents(sctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The subscription is made when the server handles the call; a first
	// event proves it is there.
	deadline := time.Now().Add(time.Minute)
	for !e.srv.events.active() {
		if time.Now().After(deadline) {
			t.Fatal("no subscriber")
		}
		time.Sleep(time.Millisecond)
	}
	pod := e.runPod("p")
	c := e.create(pod, "c")
	e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c})
	e.rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c})
	e.rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c})
	type ev struct {
		id  string
		typ runtimeapi.ContainerEventType
	}
	want := []ev{
		{pod, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT}, {pod, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT},
		{c, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT}, {c, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT},
		{c, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT}, {c, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT},
	}
	// A stop is reported by StopContainer and again by the exit watcher;
	// repeats are dropped here as kubelet drops them.
	var got []ev
	for len(got) == 0 || got[len(got)-1] != want[len(want)-1] {
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.GetPodSandboxStatus().GetId() != pod {
			t.Errorf("event %s %v has pod status %v", r.GetContainerId(), r.GetContainerEventType(), r.GetPodSandboxStatus())
		}
		e := ev{r.GetContainerId(), r.GetContainerEventType()}
		if len(got) > 0 && got[len(got)-1] == e {
			continue
		}
		got = append(got, e)
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n%v\nwant\n%v", got, want)
	}
}

func TestGRPCErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{runtime.ErrNotFound, codes.NotFound}, {runtime.ErrAlreadyExists, codes.AlreadyExists},
		{runtime.ErrInvalidConfig, codes.InvalidArgument}, {runtime.ErrConflict, codes.FailedPrecondition},
		{context.DeadlineExceeded, codes.DeadlineExceeded}, {errors.New("other"), codes.Unknown},
	} {
		if got := code(grpcError(errors.Join(errors.New("wrapped"), tc.err))); got != tc.want {
			t.Errorf("%v -> %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestStreaming: Exec returns a one-time URL that a Kubernetes streaming
// client (WebSocket, v5.channel.k8s.io) runs the command through.
func TestStreaming(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	rt.OnExec(func(id string, opts runtime.ExecOptions) int {
		fmt.Fprintf(opts.Stdout, "hello from %s", strings.Join(opts.Cmd, " "))
		return 3
	})
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, rt: rt, dir: t.TempDir(), streaming: sl}
	e.start()
	t.Cleanup(e.stop)
	pod := e.runPod("p")
	c := e.create(pod, "c")
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c}); err != nil {
		t.Fatal(err)
	}
	resp, err := e.rc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: c[:13], Cmd: []string{"echo", "x"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.GetUrl())
	if err != nil || u.Host != sl.Addr().String() {
		t.Fatalf("URL %q (%v), want one on %s", resp.GetUrl(), err, sl.Addr())
	}
	u.Scheme = "ws"
	u.RawQuery = streaming.Query("", nil, streaming.Streams{Stdout: true}).Encode()
	dial := func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "tcp", u.Host) }
	var out bytes.Buffer
	exit, err := streaming.Stream(ctx, dial, u.String(), streaming.ClientOptions{Stdout: &out})
	if err != nil || exit != 3 || out.String() != "hello from echo x" {
		t.Errorf("exec: code %d, output %q, err %v", exit, out.String(), err)
	}
	if _, err := streaming.Stream(ctx, dial, u.String(), streaming.ClientOptions{Stdout: &out}); err == nil {
		t.Error("a URL served twice")
	}
	if _, err := e.rc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: c, Cmd: []string{"sh"}}); code(err) != codes.InvalidArgument {
		t.Errorf("exec without streams: %v", err)
	}
	e.rt.Exit(c, 0)
	if _, err := e.rc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: c, Cmd: []string{"sh"}, Stdout: true}); code(err) != codes.FailedPrecondition {
		t.Errorf("exec in an exited container: %v", err)
	}
	pf, err := e.rc.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: pod, Port: []int32{80}})
	if err != nil || !strings.HasPrefix(pf.GetUrl(), "http://"+sl.Addr().String()+"/portforward/") {
		t.Errorf("port-forward URL %q, %v", pf.GetUrl(), err)
	}
}

func TestStreamingRefusedWithoutServer(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	pod := e.runPod("p")
	c := e.create(pod, "c")
	e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c})
	if _, err := e.rc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: c, Cmd: []string{"sh"}, Stdout: true}); code(err) != codes.Unimplemented {
		t.Errorf("exec without a streaming server: %v", err)
	}
}

// fakeNetwork is a Network that records what it is asked.
type fakeNetwork struct {
	mu        sync.Mutex
	setups    map[string]string // sandbox ID -> netns
	teardowns []string
	failSetup error
}

func (n *fakeNetwork) Ready() error { return nil }

func (n *fakeNetwork) setupOf(id string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ns, ok := n.setups[id]
	return ns, ok
}

func (n *fakeNetwork) tornDown() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.teardowns)
}

func (n *fakeNetwork) Setup(_ context.Context, id, netns string, c *runtimeapi.PodSandboxConfig) (*NetworkResult, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.setups == nil {
		n.setups = map[string]string{}
	}
	n.setups[id] = netns
	if n.failSetup != nil {
		return nil, n.failSetup
	}
	return &NetworkResult{NetNS: netns, Config: []byte(`{"name":"fake"}`), IPs: []string{"10.250.0.7", "fd00::7"}}, nil
}

func (n *fakeNetwork) Teardown(_ context.Context, id string, r *NetworkResult, _ *runtimeapi.PodSandboxConfig) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.teardowns = append(n.teardowns, id)
	return nil
}

// TestCNINetwork: with a Network, the runtime makes only the namespace
// (ExternalNetwork, no ports: the plugins publish them), the pod reports
// the plugins' addresses, and stopping detaches it before the runtime
// removes the namespace; a failed attach leaves nothing.
func TestCNINetwork(t *testing.T) {
	rt := fake.New()
	nw := &fakeNetwork{}
	e := &env{t: t, rt: rt, dir: t.TempDir(), network: nw}
	e.start()
	t.Cleanup(e.stop)
	pc := podConfig("web")
	pc.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080}}
	resp, err := e.rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetPodSandboxId()
	box, err := rt.GetSandbox(ctx, id)
	if err != nil || box.IP != "" || len(box.Ports) != 0 || func() bool { ns, _ := nw.setupOf(id); return ns != box.NetNSPath }() {
		t.Fatalf("runtime sandbox %+v (%v), CNI got netns %q", box, err, func() string { ns, _ := nw.setupOf(id); return ns }())
	}
	st, _ := e.rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if n := st.GetStatus().GetNetwork(); n.GetIp() != "10.250.0.7" || len(n.GetAdditionalIps()) != 1 || n.GetAdditionalIps()[0].GetIp() != "fd00::7" {
		t.Errorf("network status = %v", n)
	}
	if _, err := e.rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nw.tornDown(), []string{id}) {
		t.Errorf("teardowns = %v", nw.tornDown())
	}
	// The node's own namespace is never the plugins'.
	host := podConfig("host")
	host.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	hr, err := e.rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: host})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := nw.setupOf(hr.GetPodSandboxId()); ok {
		t.Error("a hostNetwork pod went to the CNI plugins")
	}
	nw.mu.Lock()
	nw.failSetup = errors.New("no more addresses")
	nw.mu.Unlock()
	if _, err := e.rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("full")}); err == nil || !strings.Contains(err.Error(), "no more addresses") {
		t.Fatalf("a failed attach: %v", err)
	}
	boxes, _ := rt.ListSandboxes(ctx)
	for _, b := range boxes {
		if b.Pod.Name == "full" {
			t.Errorf("the runtime kept the sandbox of a failed attach: %s", b.ID)
		}
	}
	list, _ := e.rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if len(list.GetItems()) != 2 {
		t.Errorf("the CRI lists %d pods, want 2 (the failed one gone)", len(list.GetItems()))
	}
}

// TestRecoverTearsDownNetwork: a creation cut short after the network was
// attached (record "creating" with a network) is detached, then removed.
func TestRecoverTearsDownNetwork(t *testing.T) {
	rt := fake.New()
	nw := &fakeNetwork{}
	dir := t.TempDir()
	s := &store{dir: dir}
	if err := s.init(); err != nil {
		t.Fatal(err)
	}
	half := &sandboxRecord{ID: newID(), State: sandboxCreating, CreatedAt: time.Now(), config: podConfig("half"),
		Network: &NetworkResult{NetNS: "/run/netns/x", Config: []byte(`{}`)}}
	if err := s.putSandbox(half); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, rt: rt, dir: dir, network: nw}
	e.start()
	t.Cleanup(e.stop)
	if !slices.Equal(nw.tornDown(), []string{half.ID}) {
		t.Errorf("teardowns = %v, want the half-made sandbox's", nw.tornDown())
	}
	if _, err := s.sandbox(half.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("record: %v", err)
	}
}

// TestReopenContainerLog: kubelet's rotation renames the log and asks for
// a new one, which appears at the path; a symlink put there instead is
// refused, not followed (the server runs as root).
func TestReopenContainerLog(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	pc := podConfig("logs")
	pc.LogDirectory = t.TempDir()
	resp, err := e.rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := e.rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: resp.GetPodSandboxId(), Config: ctrConfig("app")})
	if err != nil {
		t.Fatal(err)
	}
	id := cr.GetContainerId()
	if _, err := e.rc.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); code(err) != codes.FailedPrecondition {
		t.Errorf("reopen before the start: %v, want FailedPrecondition", err)
	}
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(pc.LogDirectory, "app", "0.log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rc.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(logPath); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("no new log file at %s: %v", logPath, err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, logPath); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rc.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err == nil {
		t.Error("reopen through a symlink succeeded")
	}
}
