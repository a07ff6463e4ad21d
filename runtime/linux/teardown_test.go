package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h: the file cannot be
// removed, renamed, linked to or written, even by root without
// CAP_LINUX_IMMUTABLE (which chattr -i uses).
const fsImmutableFL = 0x10

func setImmutable(path string, on bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("FS_IOC_GETFLAGS %s: %w", path, err)
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags)); err != nil {
		return fmt.Errorf("FS_IOC_SETFLAGS %s: %w", path, err)
	}
	return nil
}

// TestRemovalWithAnUnremovableFile makes one file immutable in each of a
// pod's volume, its log directory and its container's write layer, then
// removes the pod through the reconciler (issue 12): every other object
// goes at once (pause, netns, lease, cgroups, processes, the rest of each
// directory), the sandbox keeps its record of what is left, the failure is
// a Warning event naming the files, and the removal is retried until,
// once the flags are cleared, it finishes.
func TestRemovalWithAnUnremovableFile(t *testing.T) {
	e := lifecycleRuntime(t)
	ctx := context.Background()
	h := newAgentHarness(t, e)
	h.desire(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: stuck, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %q
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "echo data > /data/keep; echo more > /data/other; echo layer > /stuck; echo layer > /other; echo logged; sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
`, lifecycleImage))
	st := h.running("stuck")
	sbID := st.Pelagos.SandboxID
	ctrs, err := e.rt.ListContainers(ctx, runtime.ContainerFilter{SandboxID: sbID})
	if err != nil || len(ctrs) != 1 {
		t.Fatalf("containers: %v %v", ctrs, err)
	}
	c := ctrs[0]
	upper := filepath.Join(e.rt.containerStateDir(c.ID), "upper")
	volume := e.rt.volumes().Dir(sbID, "data")
	stuck := []string{filepath.Join(volume, "keep"), c.LogPath, filepath.Join(upper, "stuck")}
	eventually(t, "the container wrote its files", func() error {
		for _, f := range append(slices.Clone(stuck), filepath.Join(volume, "other"), filepath.Join(upper, "other")) {
			if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
				return fmt.Errorf("%s: %v", f, err)
			}
		}
		return nil
	})
	for _, f := range stuck {
		if err := setImmutable(f, true); err != nil {
			t.Fatal(err)
		}
		// Whatever happens, the test's directories can go.
		t.Cleanup(func() {
			if err := setImmutable(f, false); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Error(err)
			}
		})
	}

	h.r.SetDesired(reconcile.DesiredSet{})
	eventually(t, "a Warning event for the failed removal, naming the files", func() error {
		for _, ev := range h.events.List() {
			if ev.Type == reconcile.EventWarning && strings.Contains(ev.Message, "operation not permitted") {
				for _, f := range stuck {
					if !strings.Contains(ev.Message, f) {
						return fmt.Errorf("event %s: %q does not name %s", ev.Reason, ev.Message, f)
					}
				}
				return nil
			}
		}
		return errors.New("none yet")
	})

	// Everything but the three files is gone; the record of the sandbox
	// (and of the container whose write layer is left) says what is left.
	left := linuxtest.Census{
		NetNSPrefix: e.cfg.NetNSPrefix,
		Bridge:      e.cfg.Bridge,
		ProcessArg:  e.cfg.RunRoot,
		MountDirs:   []string{e.cfg.RunRoot, e.cfg.StateRoot + "/containers", e.cfg.StateRoot + "/volumes"},
		StateRoot:   e.cfg.StateRoot, // the lease
	}
	eventually(t, "everything else removed", func() error {
		var bad []string
		bad = append(bad, left.Leaks()...)
		if kids, _ := e.cg.Children(); len(kids) != 0 {
			bad = append(bad, fmt.Sprintf("cgroups %v", kids))
		}
		if _, err := os.Stat(e.rt.sandboxDir(sbID)); err != nil {
			bad = append(bad, "the sandbox record is gone with files left")
		}
		for _, dir := range []string{volume, filepath.Dir(c.LogPath), upper} {
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				var names []string
				for _, en := range ents {
					names = append(names, en.Name())
				}
				bad = append(bad, fmt.Sprintf("%s holds %v, want only the immutable file", dir, names))
			}
		}
		if _, err := os.Stat(filepath.Join(e.rt.containerStateDir(c.ID), "work")); err == nil {
			bad = append(bad, "the container's work directory")
		}
		if len(bad) > 0 {
			return errors.New(strings.Join(bad, "; "))
		}
		return nil
	})
	if got, err := e.rt.GetSandbox(ctx, sbID); err != nil || got.State != runtime.SandboxNotReady {
		t.Errorf("the sandbox being removed: %+v %v, want not ready", got, err)
	}

	// The reconciler keeps trying; once the files can go, it finishes.
	for _, f := range stuck {
		if err := setImmutable(f, false); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if sbs, _ := e.rt.ListSandboxes(ctx); len(sbs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sandbox was not removed within 60s of the files becoming removable")
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.stop()
	e.census.Check(t, 10*time.Second)
	for _, dir := range []string{"containers", "logs", "volumes"} {
		if ents, _ := os.ReadDir(filepath.Join(e.cfg.StateRoot, dir)); len(ents) != 0 {
			t.Errorf("census: %s/%s holds %d entries", e.cfg.StateRoot, dir, len(ents))
		}
	}
	if kids, _ := e.cg.Children(); len(kids) != 0 {
		t.Errorf("census: cgroups left below %s: %v", e.cg.Parent(), kids)
	}
}
