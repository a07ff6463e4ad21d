package cri

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

// TestImageMount: a CRI image mount (KEP-4639) reaches the runtime as
// Mount.Image naming the image's ID, read-only, with its subPath; the
// status reports the image's ID as the mount's image_ref; a read-write
// image mount, an image not pulled, a host path beside the image or a
// subPath climbing out are refused and make nothing.
func TestImageMount(t *testing.T) {
	rt := fake.New()
	rt.AddImage("busybox:1.36", runtime.ImageConfig{})
	art := rt.AddImage("registry.test/artifact:v2", runtime.ImageConfig{})
	e := newEnv(t, rt, t.TempDir())
	pod := e.runPod("p")
	imageMount := func(sub string, ro bool) *runtimeapi.Mount {
		return &runtimeapi.Mount{ContainerPath: "/mnt/image-volume", Readonly: ro, ImageSubPath: sub,
			Image: &runtimeapi.ImageSpec{Image: "registry.test/artifact:v2", UserSpecifiedImage: "registry.test/artifact:v2"}}
	}
	for _, tc := range []struct {
		name, field string
		code        codes.Code
		m           *runtimeapi.Mount
	}{
		{"read-write", "mounts[0].readonly", codes.InvalidArgument, imageMount("", false)},
		{"not pulled", "registry.test/missing:1", codes.NotFound, &runtimeapi.Mount{ContainerPath: "/m", Readonly: true,
			Image: &runtimeapi.ImageSpec{Image: "registry.test/missing:1"}}},
		{"host path too", "mounts[0].host_path", codes.InvalidArgument, &runtimeapi.Mount{ContainerPath: "/m", HostPath: "/tmp", Readonly: true,
			Image: &runtimeapi.ImageSpec{Image: "registry.test/artifact:v2"}}},
		{"subPath out", "mounts[0].image_sub_path", codes.InvalidArgument, imageMount("../etc", true)},
		{"subPath on a host path", "mounts[0].image_sub_path", codes.InvalidArgument, &runtimeapi.Mount{ContainerPath: "/m", HostPath: "/tmp", ImageSubPath: "etc"}},
	} {
		c := ctrConfig("bad")
		c.Mounts = []*runtimeapi.Mount{tc.m}
		_, err := e.rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: c})
		if code(err) != tc.code || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v; want %v naming %s", tc.name, err, tc.code, tc.field)
		}
	}
	c := ctrConfig("viewer")
	c.Mounts = []*runtimeapi.Mount{imageMount("etc", true)}
	resp, err := e.rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: c})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetContainerId()
	if _, err := e.rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	got, err := rt.GetContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.MountImageIDs) != 1 || got.MountImageIDs[0] != art.ID {
		t.Errorf("runtime mounts images %v, want [%s]", got.MountImageIDs, art.ID)
	}
	st, err := e.rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	ms := st.GetStatus().GetMounts()
	if len(ms) != 1 || ms[0].GetImage().GetImageRef() != art.ID || ms[0].GetImageSubPath() != "etc" || !ms[0].GetReadonly() {
		t.Errorf("status mounts %v, want the image volume with image_ref %s", ms, art.ID)
	}
}
