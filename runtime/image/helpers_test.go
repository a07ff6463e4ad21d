package image_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
)

func newStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(image.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// treeOf lists a directory tree as path -> kind/size, for before/after
// comparisons ("nothing written outside").
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		desc := info.Mode().String()
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(b)
		}
		out[rel] = desc
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// assertNoLitter proves a failed operation left nothing that looks
// complete: no unpacked layer, no temporary work.
func assertNoLitter(t *testing.T, s *image.Store, wantLayers int) {
	t.Helper()
	if got := dirNames(t, filepath.Join(s.Dir(), "layers")); len(got) != wantLayers {
		t.Errorf("layers/ holds %v, want %d entries", got, wantLayers)
	}
	if got := dirNames(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %v after the operation", got)
	}
}

// assertBusyboxRootfs checks the unpacked busybox image against the host's.
func assertBusyboxRootfs(t *testing.T, s *image.Store, ref string) {
	t.Helper()
	dirs, img, err := s.LayerDirs(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 1 {
		t.Fatalf("busybox has %d layers, want 1", len(dirs))
	}
	want, err := os.ReadFile(imagetest.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dirs[0], "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("bin/busybox in the layer differs from the host's")
	}
	if target, err := os.Readlink(filepath.Join(dirs[0], "bin", "sh")); err != nil || target != "/bin/busybox" {
		t.Errorf("bin/sh -> %q, %v; want /bin/busybox", target, err)
	}
	if len(img.Config.Cmd) != 1 || img.Config.Cmd[0] != "sh" {
		t.Errorf("Cmd = %q, want [sh]", img.Config.Cmd)
	}
}

func mustDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func newStoreAt(t *testing.T, root string) *image.Store {
	t.Helper()
	s, err := image.Open(image.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
