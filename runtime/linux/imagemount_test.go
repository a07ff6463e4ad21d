package linux

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

// artifactImage has two layers (the second adds a file and hides one of
// the first), an executable script, and symlinks that stay inside the
// tree and that lead out of it.
func artifactImage(t *testing.T) v1.Image {
	return imagetest.Image(t, v1.Config{}, imagetest.Gzip,
		[]imagetest.Entry{
			imagetest.Dir("data/", 0o755),
			imagetest.File("data/hello.txt", 0o644, []byte("hello from the image\n")),
			imagetest.File("data/gone.txt", 0o644, []byte("hidden by layer 2\n")),
			imagetest.File("data/tool.sh", 0o4755, []byte("#!/bin/sh\necho tool ran\n")),
			imagetest.Symlink("inside", "data"),
			imagetest.Symlink("abs", "/"),
			imagetest.Symlink("up", "../../../../../.."),
		},
		[]imagetest.Entry{
			imagetest.File("data/second.txt", 0o644, []byte("second layer\n")),
			imagetest.Whiteout("data/gone.txt"),
		})
}

// TestImageMount: a container sees an image's merged layers at an image
// mount, read-only, nosuid and nodev but executable (KEP-4639 as
// amended); a subPath picks one file or
// directory, through a symlink that stays inside; a subPath whose
// symlink leads out of the image (or that the image lacks) fails the
// start; the image is in use while the container exists; nothing is left.
func TestImageMount(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	const art, one = "pelagos.test/artifact:2", "pelagos.test/one-layer:1"
	artImg := imagetest.ImportInto(t, e.store, art, artifactImage(t))
	imagetest.ImportInto(t, e.store, one, imagetest.Image(t, v1.Config{}, imagetest.Gzip,
		[]imagetest.Entry{imagetest.File("only.txt", 0o644, []byte("one layer\n"))}))
	e.store.SetInUse(func(id string) bool {
		cs, err := e.rt.ListContainers(ctx, runtime.ContainerFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.UsesImage(id) {
				return true
			}
		}
		return false
	})

	cfg := e.config("viewer", "sleep", "1000")
	cfg.Mounts = []runtime.Mount{
		{Image: art, ContainerPath: "/art", ReadOnly: false}, // read-only whatever it says
		{Image: art, ContainerPath: "/etc/greeting", SubPath: "inside/hello.txt"},
		{Image: art, ContainerPath: "/sub", SubPath: "data"},
		{Image: one, ContainerPath: "/one"},
	}
	c, err := e.rt.StartContainer(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if len(c.MountImageIDs) != 4 || c.MountImageIDs[0] != artImg.ID {
		t.Errorf("MountImageIDs = %v, want 4 starting with %s", c.MountImageIDs, artImg.ID)
	}
	for _, tc := range []struct{ script, want string }{
		{"cat /art/data/hello.txt /art/data/second.txt", "hello from the image\nsecond layer\n"},
		{"test -e /art/data/gone.txt && echo present || echo whited-out", "whited-out\n"},
		{"cat /etc/greeting", "hello from the image\n"},
		{"cat /sub/second.txt", "second layer\n"},
		{"cat /one/only.txt", "one layer\n"},
		{"/art/data/tool.sh", "tool ran\n"},
		{"/sub/tool.sh", "tool ran\n"},
	} {
		if code, out := e.sh(t, c.ID, tc.script); code != 0 || out != tc.want {
			t.Errorf("%s: exit %d, %q; want %q", tc.script, code, out, tc.want)
		}
	}
	for _, tc := range []struct{ script, want string }{
		{"touch /art/new", "Read-only file system"},
		{"echo x > /sub/hello.txt", "Read-only file system"},
		{"touch /one/new", "Read-only file system"},
		{"echo x > /etc/greeting", "Read-only file system"},
	} {
		if code, out := e.sh(t, c.ID, tc.script); code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, %q; want a failure with %q", tc.script, code, out, tc.want)
		}
	}
	_, mi := e.sh(t, c.ID, "grep -E ' /(art|sub|one|etc/greeting) ' /proc/self/mountinfo")
	lines := strings.Split(strings.TrimSpace(mi), "\n")
	if len(lines) != 4 {
		t.Errorf("mountinfo has %d image mounts, want 4:\n%s", len(lines), mi)
	}
	for _, l := range lines {
		opts := strings.Fields(l)[5]
		for _, o := range []string{"ro", "nosuid", "nodev"} {
			if !strings.Contains(","+opts+",", ","+o+",") {
				t.Errorf("mount %q lacks %s", l, o)
			}
		}
		if strings.Contains(","+opts+",", ",noexec,") {
			t.Errorf("mount %q is noexec", l)
		}
	}
	// Made in the container's mount namespace only: the host sees none.
	host, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(host), "\n") {
		if strings.Contains(l, e.cfg.StateRoot) && (strings.Contains(l, "/art ") || strings.Contains(l, "/sub ") || strings.Contains(l, "/one ")) {
			t.Errorf("image mount visible on the host: %s", l)
		}
	}

	// In use while the container exists, the image it mounts included.
	if err := e.store.RemoveImage(ctx, one, false); !errors.Is(err, runtime.ErrConflict) {
		t.Errorf("remove a mounted image: %v; want ErrConflict", err)
	}

	for name, m := range map[string]runtime.Mount{
		"absolute symlink out":   {Image: art, ContainerPath: "/x", SubPath: "abs/etc"},
		"relative symlink out":   {Image: art, ContainerPath: "/x", SubPath: "up/etc"},
		"dot-dot":                {Image: art, ContainerPath: "/x", SubPath: "data/../../etc"},
		"not in the image":       {Image: art, ContainerPath: "/x", SubPath: "data/missing"},
		"image and volume both":  {Image: art, Volume: "v", ContainerPath: "/x"},
		"relative containerPath": {Image: art, ContainerPath: "x"},
	} {
		bad := e.config("bad", "sleep", "1000")
		bad.Mounts = []runtime.Mount{m}
		if bc, err := e.rt.StartContainer(ctx, bad); err == nil {
			t.Errorf("%s: started %s; want a refusal", name, bc.ID)
			e.stopRemove(t, bc.ID)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// The check a front end makes before it creates (the CRI): the same
	// verdicts, on a detached tree that is never attached (census below).
	for _, tc := range []struct {
		sub  string
		want error
	}{
		{"inside/hello.txt", nil},
		{"data/missing", runtime.ErrInvalidConfig},
		{"abs/etc", volume.ErrEscape},
		{"up/etc", volume.ErrEscape},
		{"../etc", runtime.ErrInvalidConfig},
	} {
		err := e.rt.CheckMount(ctx, runtime.Mount{Image: art, ContainerPath: "/x", SubPath: tc.sub})
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("CheckMount(subPath %q) = %v; want %v", tc.sub, err, tc.want)
		}
	}
	missing := e.config("missing", "sleep", "1000")
	missing.Mounts = []runtime.Mount{{Image: "pelagos.test/never-pulled:1", ContainerPath: "/x"}}
	if _, err := e.rt.StartContainer(ctx, missing); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("mount of an image not in the store: %v; want ErrNotFound", err)
	}

	e.stopRemove(t, c.ID)
	if err := e.store.RemoveImage(ctx, one, false); err != nil {
		t.Errorf("remove the image once its container is gone: %v", err)
	}
	e.check(t)
}
