package reconcile

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
)

const imageVolumePod = `apiVersion: v1
kind: Pod
metadata: {name: iv}
spec:
  imagePullSecrets: [{name: reg}]
  containers:
  - name: shell
    image: busybox:1.36
    volumeMounts:
    - {name: art, mountPath: /art/, readOnly: false}
    - {name: art, mountPath: /cfg, subPath: etc/app.conf}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - name: art
    image: {reference: "registry.test/artifact:v2"}
  - name: scratch
    emptyDir: {}
---
apiVersion: v1
kind: Secret
metadata: {name: reg}
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: eyJhdXRocyI6eyJyZWdpc3RyeS50ZXN0Ijp7InVzZXJuYW1lIjoidSIsInBhc3N3b3JkIjoicCJ9fX0=
`

// TestTranslateImageVolume: an image volume becomes a read-only image
// mount of each container that names it (subPath kept), an image to pull
// with the container's, and nothing in the sandbox.
func TestTranslateImageVolume(t *testing.T) {
	set := loadOne(t, imageVolumePod)
	if len(set.Errors) > 0 || len(set.Pods) != 1 {
		t.Fatalf("errors %v, pods %d", set.Errors, len(set.Pods))
	}
	d := set.Pods[0]
	if len(d.Sandbox.Volumes) != 1 || d.Sandbox.Volumes[0].Name != "scratch" {
		t.Errorf("sandbox volumes %+v, want only scratch", d.Sandbox.Volumes)
	}
	c := d.Containers[0]
	want := []runtime.Mount{
		{Image: "registry.test/artifact:v2", ContainerPath: "/art", ReadOnly: true},
		{Image: "registry.test/artifact:v2", ContainerPath: "/cfg", SubPath: "etc/app.conf", ReadOnly: true},
		{Volume: "scratch", ContainerPath: "/scratch"},
	}
	if len(c.Config.Mounts) != len(want) {
		t.Fatalf("mounts %+v, want %+v", c.Config.Mounts, want)
	}
	for i := range want {
		if c.Config.Mounts[i] != want[i] {
			t.Errorf("mounts[%d] = %+v, want %+v", i, c.Config.Mounts[i], want[i])
		}
	}
	wantImg := VolumeImage{Volume: "art", Ref: "registry.test/artifact:v2", PullPolicy: runtime.PullIfNotPresent}
	if len(c.VolumeImages) != 2 || c.VolumeImages[0] != wantImg {
		t.Errorf("volume images %+v, want %+v twice", c.VolumeImages, wantImg)
	}
	if len(d.PullAuth) == 0 {
		t.Error("the pod's pull secret gave no credentials")
	}
}

// TestImageVolumePull: the volume's image is pulled before the container
// starts, with the pod's credentials; a failed pull holds the container
// in ErrImagePull then ImagePullBackOff naming the volume's image, with no
// pull during the back-off; once the registry answers, the container
// starts with the image mounted (and so holding it in use).
func TestImageVolumePull(t *testing.T) {
	r, f, clk := newHarness(t)
	ctx := context.Background()
	const ref = "registry.test/artifact:v2"
	d := mkPod("iv", "s", RestartAlways, 0, map[string]string{"a": "1"})
	d.PullAuth = []runtime.RegistryAuth{{Registry: "registry.test", Username: "u", Password: "p"}}
	c := &d.Containers[0]
	c.Config.Mounts = []runtime.Mount{{Image: ref, ContainerPath: "/art", ReadOnly: true}}
	c.VolumeImages = []VolumeImage{{Volume: "art", Ref: ref, PullPolicy: runtime.PullIfNotPresent}}
	f.Inject(fake.Failure{Op: fake.OpEnsureImage, Match: func(arg string) bool { return arg == ref }, Err: errors.New("manifest unknown")})
	r.SetDesired(DesiredSet{Pods: []*DesiredPod{d}})
	waiting := func() *StateWaiting { return r.Pods()[0].Status.ContainerStatuses[0].State.Waiting }

	if _, err := r.Sync(ctx, d.Key); err == nil {
		t.Fatal("volume image pull failure not reported")
	}
	if w := waiting(); w == nil || w.Reason != "ErrImagePull" || !strings.Contains(w.Message, `image volume "art"`) || !strings.Contains(w.Message, "manifest unknown") {
		t.Fatalf("want ErrImagePull naming the volume, got %+v", w)
	}
	failed := false
	for _, ev := range r.Events().List() {
		failed = failed || ev.Reason == "Failed" && strings.Contains(ev.Message, `"`+ref+`"`) && strings.Contains(ev.Message, `"art"`)
	}
	if !failed {
		t.Errorf("no Failed event naming the volume's image: %+v", r.Events().List())
	}
	if cs, _ := f.ListContainers(ctx, runtime.ContainerFilter{}); len(cs) != 0 {
		t.Fatalf("%d containers started without their volume's image", len(cs))
	}
	pulls := f.Calls(fake.OpEnsureImage)
	var p Plan
	for range 10 {
		p, _ = r.Sync(ctx, d.Key)
	}
	if got := f.Calls(fake.OpEnsureImage); got != pulls {
		t.Errorf("%d pulls during the back-off", got-pulls)
	}
	if w := waiting(); w == nil || w.Reason != "ImagePullBackOff" || !strings.Contains(w.Message, `"`+ref+`"`) {
		t.Fatalf("want ImagePullBackOff naming the volume's image, got %+v", w)
	}
	if p.RequeueAfter.Round(time.Second) != 10*time.Second {
		t.Errorf("first back-off %v, want 10s", p.RequeueAfter)
	}

	f.ClearFailures()
	clk.Advance(p.RequeueAfter)
	syncUntilStable(t, r, d.Key)
	if st := r.Pods()[0].Status; st.Phase != PhaseRunning {
		t.Fatalf("after the registry came back: %+v", st)
	}
	img, err := f.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := f.ListContainers(ctx, runtime.ContainerFilter{})
	if len(cs) != 1 || !cs[0].UsesImage(img.ID) {
		t.Fatalf("container %+v does not hold the volume's image %s", cs, img.ID)
	}
	if err := f.RemoveImage(ctx, ref, false); !errors.Is(err, runtime.ErrConflict) {
		t.Errorf("remove the mounted image: %v; want ErrConflict", err)
	}
}
