package image_test

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
)

func gzipFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestImportFormats(t *testing.T) {
	bb := imagetest.Busybox(t)
	other := imagetest.Image(t, v1.Config{Entrypoint: []string{"/app"}, Env: []string{"A=1"}, WorkingDir: "/w", User: "65534",
		ExposedPorts: map[string]struct{}{"80/tcp": {}}, StopSignal: "SIGQUIT"}, imagetest.Zstd,
		[]imagetest.Entry{imagetest.File("app", 0o755, []byte("#!/bin/sh\n"))})
	images := map[string]v1.Image{"busybox:1.36": bb, "example.com/team/app:v1": other}
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		write func() string
	}{
		{"docker-archive", func() string {
			p := filepath.Join(dir, "docker.tar")
			if err := imagetest.WriteDockerArchive(p, images); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"docker-archive.gz", func() string {
			p := filepath.Join(dir, "docker2.tar")
			if err := imagetest.WriteDockerArchive(p, images); err != nil {
				t.Fatal(err)
			}
			gzipFile(t, p, p+".gz")
			return p + ".gz"
		}},
		{"oci-archive", func() string {
			p := filepath.Join(dir, "oci.tar")
			if err := imagetest.WriteOCIArchive(p, images); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"oci-layout", func() string {
			p := filepath.Join(dir, "layout")
			if err := imagetest.WriteOCILayout(p, images); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			imgs, err := s.Import(context.Background(), tc.write())
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 2 {
				t.Fatalf("imported %d images, want 2", len(imgs))
			}
			assertBusyboxRootfs(t, s, "busybox:1.36")
			app, err := s.GetImage(context.Background(), "example.com/team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			c := app.Config
			if strings.Join(c.Entrypoint, " ") != "/app" || c.WorkingDir != "/w" || c.User != "65534" || c.StopSignal != "SIGQUIT" ||
				strings.Join(c.ExposedPorts, ",") != "80/tcp" || strings.Join(c.Env, ",") != "A=1" {
				t.Errorf("image config not carried over: %+v", c)
			}
			dirs, _, err := s.LayerDirs(context.Background(), "example.com/team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dirs[0], "app")); err != nil || string(b) != "#!/bin/sh\n" {
				t.Errorf("app layer content: %q, %v", b, err)
			}
			assertNoLitter(t, s, 2)
		})
	}
}

func TestImportRejectsJunk(t *testing.T) {
	s := newStore(t)
	p := filepath.Join(t.TempDir(), "junk.tar")
	if err := os.WriteFile(p, []byte("this is not a tar"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(context.Background(), p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("import of junk: %v, want an error naming the file", err)
	}
	if _, err := s.Import(context.Background(), filepath.Join(t.TempDir(), "absent.tar")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("import of a missing file: %v", err)
	}
	assertNoLitter(t, s, 0)
}

func TestAutoImport(t *testing.T) {
	s := newStore(t)
	inbox := filepath.Join(s.Dir(), "import")
	img := imagetest.Image(t, v1.Config{}, imagetest.Gzip, []imagetest.Entry{imagetest.File("f", 0o644, []byte("f"))})
	if err := imagetest.WriteDockerArchive(filepath.Join(inbox, "app.tar"), map[string]v1.Image{"app:1": img}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inbox, "broken.tar"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Still being written: skipped.
	if err := os.WriteFile(filepath.Join(inbox, "next.tar.part"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory (perhaps a layout mid-copy): skipped.
	if err := os.Mkdir(filepath.Join(inbox, "layout"), 0o700); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.AutoImport(context.Background())
	if err == nil || !strings.Contains(err.Error(), "broken.tar") {
		t.Errorf("AutoImport error %v, want one naming broken.tar", err)
	}
	if len(imgs) != 1 || imgs[0].References[0] != "docker.io/library/app:1" {
		t.Fatalf("AutoImport imported %+v", imgs)
	}
	if got := strings.Join(dirNames(t, inbox), " "); got != "done failed layout next.tar.part" {
		t.Errorf("inbox holds %q after the pass", got)
	}
	if got := strings.Join(dirNames(t, filepath.Join(inbox, "done")), " "); got != "app.tar" {
		t.Errorf("done/ holds %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(inbox, "failed", "broken.tar.error")); err != nil || !strings.Contains(string(b), "broken.tar") {
		t.Errorf("failed/broken.tar.error: %q, %v", b, err)
	}
	// Imported once: a second pass finds nothing to do.
	imgs, err = s.AutoImport(context.Background())
	if err != nil || len(imgs) != 0 {
		t.Errorf("second pass: %d images, %v", len(imgs), err)
	}
	if _, err := s.GetImage(context.Background(), "app:1"); err != nil {
		t.Error(err)
	}
}

func TestRemoveAndPrune(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	base := []imagetest.Entry{imagetest.Dir("etc/", 0o755), imagetest.File("etc/base", 0o644, []byte("shared base layer"))}
	a := imagetest.Image(t, v1.Config{}, imagetest.Gzip, base, []imagetest.Entry{imagetest.File("a", 0o644, []byte("only in a"))})
	b := imagetest.Image(t, v1.Config{}, imagetest.Gzip, base, []imagetest.Entry{imagetest.File("b", 0o644, []byte("only in b"))})
	imgA := imagetest.ImportInto(t, s, "a:1", a)
	imagetest.ImportInto(t, s, "b:1", b)
	imagetest.ImportInto(t, s, "a:alias", a)
	assertNoLitter(t, s, 3) // base, a, b

	// Nothing unreferenced yet.
	freed, err := s.Prune(ctx)
	if err != nil || freed != 0 {
		t.Fatalf("prune with everything referenced freed %d, %v", freed, err)
	}

	// In use: refused without force, for the last reference only.
	s.SetInUse(func(id string) bool { return id == imgA.ID })
	if err := s.RemoveImage(ctx, "a:alias", false); err != nil {
		t.Fatalf("removing one of two references: %v", err)
	}
	if err := s.RemoveImage(ctx, "a:1", false); !errors.Is(err, runtime.ErrConflict) {
		t.Fatalf("removing an image in use: %v, want ErrConflict", err)
	}
	if err := s.RemoveImage(ctx, "a:1", true); err != nil {
		t.Fatalf("forced remove: %v", err)
	}
	if _, err := s.GetImage(ctx, "a:1"); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("a:1 after rm: %v", err)
	}
	if err := s.RemoveImage(ctx, "a:1", false); err != nil {
		t.Fatalf("removing a missing image: %v", err)
	}
	// Still in use: prune keeps the untagged image and its layers.
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LayerDirs(ctx, imgA.ID); err != nil {
		t.Fatalf("layers of an image in use pruned after a forced rm: %v", err)
	}
	s.SetInUse(nil)
	freed, err = s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if freed <= 0 {
		t.Errorf("prune freed %d bytes", freed)
	}
	// b still works: its layers, shared base included, are intact.
	dirs, _, err := s.LayerDirs(ctx, "b:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"etc/base", "b"} {
		found := false
		for _, d := range dirs {
			if _, err := os.Stat(filepath.Join(d, f)); err == nil {
				found = true
			}
		}
		if !found {
			t.Errorf("%s missing from b's layers after prune", f)
		}
	}
	assertNoLitter(t, s, 2)
	// Blobs: b's manifest, config and two layers; nothing of a's own.
	if got := dirNames(t, filepath.Join(s.Dir(), "blobs", "sha256")); len(got) != 4 {
		t.Errorf("blobs after prune: %d, want 4", len(got))
	}
	// Removing by ID removes every reference.
	imgB, _ := s.GetImage(ctx, "b:1")
	if err := s.RemoveImage(ctx, imgB.ID[:19], false); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.ListImages(ctx); len(list) != 0 {
		t.Errorf("images left after removing by ID: %+v", list)
	}
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoLitter(t, s, 0)
	if got := dirNames(t, filepath.Join(s.Dir(), "blobs", "sha256")); len(got) != 0 {
		t.Errorf("blobs after pruning everything: %v", got)
	}
}

func TestOpenCleansCrashLitter(t *testing.T) {
	root := t.TempDir()
	s := newStoreAt(t, root)
	// What a crash mid-pull leaves: a partial blob and a partial layer.
	for _, p := range []string{"tmp/blob-123", "tmp/layer-456/usr/bin/x"} {
		full := filepath.Join(s.Dir(), p)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = newStoreAt(t, root)
	assertNoLitter(t, s, 0)
}

func TestWatchImports(t *testing.T) {
	s := newStore(t)
	inbox := filepath.Join(s.Dir(), "import")
	ctx, cancel := context.WithCancel(context.Background())
	results := make(chan []*runtime.Image, 4)
	done := make(chan error, 1)
	go func() {
		done <- s.WatchImports(ctx, 20*time.Millisecond, func(imgs []*runtime.Image, err error) {
			if err != nil {
				t.Errorf("watch reported %v", err)
			}
			results <- imgs
		})
	}()
	img := imagetest.Image(t, v1.Config{}, imagetest.Gzip, []imagetest.Entry{imagetest.File("w", 0o644, []byte("w"))})
	// Dropped the recommended way: written under .part, then renamed.
	part := filepath.Join(inbox, "watched.tar.part")
	if err := imagetest.WriteDockerArchive(part, map[string]v1.Image{"watched:1": img}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(part, filepath.Join(inbox, "watched.tar")); err != nil {
		t.Fatal(err)
	}
	imgs := <-results
	if len(imgs) != 1 || imgs[0].References[0] != "docker.io/library/watched:1" {
		t.Errorf("watch imported %+v", imgs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(inbox, "done", "watched.tar")); err != nil {
		t.Error(err)
	}
}
