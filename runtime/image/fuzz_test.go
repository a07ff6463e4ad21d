package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
)

// FuzzUnpack feeds arbitrary bytes (and mutated tars) to Unpack: it may
// refuse them, but must never panic or touch anything beside the layer
// directory. Seeds: the hostile layers of TestHostileLayers and
// testdata/fuzz/FuzzUnpack.
func FuzzUnpack(f *testing.F) {
	seeds := [][]imagetest.Entry{
		{imagetest.File("../outside/evil", 0o644, []byte("x"))},
		{imagetest.Symlink("link", "../outside"), imagetest.File("link/evil", 0o644, []byte("x"))},
		{imagetest.Symlink("up", ".."), imagetest.Dir("up/outside/d/", 0o755)},
		{imagetest.Hardlink("h", "../outside/canary")},
		{imagetest.Dir("d/", 0o755), imagetest.File("d/.wh...", 0o644, nil), imagetest.Opaque("d")},
		{imagetest.Dir("a/", 0o755), imagetest.File("a/f", 0o4755, []byte("f")), imagetest.Hardlink("a/g", "a/f"),
			imagetest.Entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "a/p", Mode: 0o600}}},
	}
	for _, es := range seeds {
		b, err := imagetest.LayerTar(es)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sandbox := t.TempDir()
		layer, outside := filepath.Join(sandbox, "layer"), filepath.Join(sandbox, "outside")
		if err := os.Mkdir(layer, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(outside, "canary"), []byte("canary"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := treeOf(t, outside)
		_, _ = image.Unpack(context.Background(), bytes.NewReader(data), layer, image.UnpackOptions{MaxEntries: 1000})
		if after := treeOf(t, outside); fmt.Sprint(before) != fmt.Sprint(after) {
			t.Fatalf("outside changed:\nbefore %v\nafter  %v", before, after)
		}
		if es, _ := os.ReadDir(sandbox); len(es) != 2 {
			t.Fatalf("sandbox holds %d entries", len(es))
		}
	})
}
