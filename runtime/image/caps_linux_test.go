package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

const testLayerCap = 8 << 20

func newCappedStore(t *testing.T, layerCap, imageCap int64) *image.Store {
	t.Helper()
	s, err := image.Open(image.Options{Root: t.TempDir(), MaxLayerSize: layerCap, MaxImageSize: imageCap})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertEmptyStore is the census of a store after a refused pull or
// import: no blob, no layer, no temporary work, no image.
func assertEmptyStore(t *testing.T, s *image.Store) {
	t.Helper()
	for _, d := range []string{"blobs/sha256", "layers", "tmp"} {
		if got := dirNames(t, filepath.Join(s.Dir(), d)); len(got) != 0 {
			t.Errorf("census: %s holds %v", d, got)
		}
	}
	if imgs, err := s.ListImages(context.Background()); err != nil || len(imgs) != 0 {
		t.Errorf("census: images %v, %v", imgs, err)
	}
}

// bombImage is a one-layer image whose layer blob is a bomb.
func bombImage(t *testing.T, c imagetest.Compression, expanded int64) (v1.Image, []byte) {
	t.Helper()
	blob, err := imagetest.Bomb(c, expanded)
	if err != nil {
		t.Fatal(err)
	}
	base := imagetest.Image(t, v1.Config{Cmd: []string{"sh"}}, c, []imagetest.Entry{imagetest.File("x", 0o644, []byte("x"))})
	return imagetest.WithRawLayer(t, base, 0, blob), blob
}

func assertCapError(t *testing.T, err error, layer string, want ...string) {
	t.Helper()
	if !errors.Is(err, image.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	for _, w := range append(want, layer) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// TestBombsStopAtLayerCap: gzip and zstd bombs a few MiB (or KiB) big that
// expand to 16 GiB, and an uncompressed layer over the cap, fail the pull
// and the import at the layer cap, naming the layer, the cap and the flag,
// and leave nothing in the store.
func TestBombsStopAtLayerCap(t *testing.T) {
	linuxtest.RequireRoot(t)
	for _, tc := range []struct {
		name     string
		c        imagetest.Compression
		expanded int64
	}{
		{"gzip", imagetest.Gzip, 16 << 30},
		{"zstd", imagetest.Zstd, 16 << 30},
		{"uncompressed", imagetest.Uncompressed, testLayerCap + 4<<20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, blob := bombImage(t, tc.c, tc.expanded)
			t.Logf("%s bomb: %d bytes expanding to %d", tc.name, len(blob), tc.expanded)
			layer := layerDigests(t, img)[0]
			t.Run("pull", func(t *testing.T) {
				reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
				ref := reg.Push(t, "bomb:1", img)
				s := newCappedStore(t, testLayerCap, 0)
				_, err := s.EnsureImage(context.Background(), ref, runtime.PullOptions{})
				assertCapError(t, err, layer, "uncompressed layer exceeds the cap of 8 MiB (--max-layer-size)")
				assertEmptyStore(t, s)
				// Refusal is final: a second pull fails the same way.
				_, err = s.EnsureImage(context.Background(), ref, runtime.PullOptions{})
				assertCapError(t, err, layer, "--max-layer-size")
				assertEmptyStore(t, s)
			})
			t.Run("import", func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "layout")
				if err := imagetest.WriteOCILayout(dir, map[string]v1.Image{"pelagos.test/bomb:1": img}); err != nil {
					t.Fatal(err)
				}
				s := newCappedStore(t, testLayerCap, 0)
				_, err := s.Import(context.Background(), dir)
				assertCapError(t, err, layer, "uncompressed layer exceeds the cap of 8 MiB (--max-layer-size)")
				assertEmptyStore(t, s)
			})
		})
	}
}

// zeroLayer is an honest layer of one file of n zero bytes.
func zeroLayer(t *testing.T, name string, n int) []imagetest.Entry {
	return []imagetest.Entry{imagetest.File(name, 0o644, make([]byte, n))}
}

// TestImageCap: layers each under the layer cap that together exceed the
// image cap are refused at the image cap, and the layers unpacked before it
// was reached are taken back. Layers the store already holds count with
// the size recorded when they were unpacked.
func TestImageCap(t *testing.T) {
	linuxtest.RequireRoot(t)
	const mib = 1 << 20
	small := imagetest.Image(t, v1.Config{}, imagetest.Gzip, zeroLayer(t, "a", 6*mib), zeroLayer(t, "b", 6*mib))
	big := imagetest.Image(t, v1.Config{}, imagetest.Gzip, zeroLayer(t, "a", 6*mib), zeroLayer(t, "b", 6*mib), zeroLayer(t, "c", 6*mib))
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	smallRef, bigRef := reg.Push(t, "small:1", small), reg.Push(t, "big:1", big)

	t.Run("fresh store", func(t *testing.T) {
		s := newCappedStore(t, testLayerCap, 16*mib)
		_, err := s.EnsureImage(context.Background(), bigRef, runtime.PullOptions{})
		assertCapError(t, err, "", "uncompressed layers of the image together exceed the cap of 16 MiB (--max-image-size)")
		assertEmptyStore(t, s)
	})
	t.Run("shared layers count", func(t *testing.T) {
		s := newCappedStore(t, testLayerCap, 16*mib)
		if _, err := s.EnsureImage(context.Background(), smallRef, runtime.PullOptions{}); err != nil {
			t.Fatal(err)
		}
		before := dirNames(t, filepath.Join(s.Dir(), "layers"))
		// Only layer c is new, but a and b are part of the image too.
		_, err := s.EnsureImage(context.Background(), bigRef, runtime.PullOptions{})
		assertCapError(t, err, "", "--max-image-size")
		if after := dirNames(t, filepath.Join(s.Dir(), "layers")); !slicesEqual(after, before) {
			t.Errorf("layers %v after the refusal, want those of the stored image %v", after, before)
		}
		if _, _, err := s.LayerDirs(context.Background(), smallRef); err != nil {
			t.Errorf("the stored image was damaged: %v", err)
		}
		if got := dirNames(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
			t.Errorf("tmp/ holds %v", got)
		}
	})
	t.Run("no cap", func(t *testing.T) {
		s := newCappedStore(t, -1, -1)
		if _, err := s.EnsureImage(context.Background(), bigRef, runtime.PullOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// TestDeclaredSizeRefusedEarly: a layer whose compressed size alone is
// over the cap is refused before its download starts.
func TestDeclaredSizeRefusedEarly(t *testing.T) {
	noise := make([]byte, 3<<20)
	rand.Read(noise)
	img := imagetest.Image(t, v1.Config{}, imagetest.Gzip, []imagetest.Entry{imagetest.File("noise", 0o644, noise)})
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	ref := reg.Push(t, "noise:1", img)
	s := newCappedStore(t, 1<<20, 0)
	gets := reg.BlobGets()
	_, err := s.EnsureImage(context.Background(), ref, runtime.PullOptions{})
	assertCapError(t, err, layerDigests(t, img)[0], "compressed bytes", "--max-layer-size")
	// Only the config was fetched.
	if n := reg.BlobGets() - gets; n != 1 {
		t.Errorf("%d blob downloads, want only the config's", n)
	}
	assertEmptyStore(t, s)
}

// TestCompressedArchiveCap: a gzip-compressed archive expands into tmp/
// before import; the image cap bounds that too.
func TestCompressedArchiveCap(t *testing.T) {
	blob, err := imagetest.Bomb(imagetest.Gzip, 4<<30)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "archive.tar.gz")
	if err := os.WriteFile(p, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	s := newCappedStore(t, 0, 16<<20)
	_, err = s.Import(context.Background(), p)
	assertCapError(t, err, p, "uncompressed archive exceeds the cap of 16 MiB (--max-image-size)")
	assertEmptyStore(t, s)
}

// TestHeaderBounds: archive/tar refuses a PAX header over 1 MiB, and the
// unpacker keeps nothing of the headers of directories it must revisit:
// a layer of directories with large PAX records would otherwise make it
// hold them all until the end.
func TestHeaderBounds(t *testing.T) {
	linuxtest.RequireRoot(t)
	t.Run("2 MiB PAX header", func(t *testing.T) {
		// Written by hand: archive/tar's writer refuses to make it.
		records := paxRecord("SCHILY.xattr.user.pad", strings.Repeat("x", 2<<20))
		var layer []byte
		layer = append(layer, rawHeader(t, tar.Header{Name: "PaxHeaders/d", Mode: 0o644, Size: int64(len(records)), Format: tar.FormatUSTAR}, 'x', nil)...)
		layer = append(layer, pad512([]byte(records))...)
		layer = append(layer, rawHeader(t, tar.Header{Name: "d/", Mode: 0o755, Format: tar.FormatUSTAR}, '5', nil)...)
		layer = append(layer, make([]byte, 1024)...)
		_, err := image.Unpack(context.Background(), bytes.NewReader(layer), t.TempDir(), image.UnpackOptions{})
		if !errors.Is(err, tar.ErrFieldTooLong) {
			t.Errorf("unpack of a 2 MiB PAX header: %v, want %v", err, tar.ErrFieldTooLong)
		}
	})
	t.Run("directory headers are not retained", func(t *testing.T) {
		const dirs, pad = 200, 512 << 10 // 100 MiB of PAX records
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			var err error
			for i := 0; i < dirs && err == nil; i++ {
				err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("d%03d/", i), Mode: 0o755,
					ModTime: imagetest.Epoch, Format: tar.FormatPAX,
					PAXRecords: map[string]string{"SCHILY.xattr.user.pad": strings.Repeat(string(rune('a'+i%26)), pad)}})
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		var base, held goruntime.MemStats
		goruntime.GC()
		goruntime.ReadMemStats(&base)
		defer image.SetBeforeFinish(func() {
			goruntime.GC()
			goruntime.ReadMemStats(&held)
		})()
		if _, err := image.Unpack(context.Background(), pr, t.TempDir(), image.UnpackOptions{MaxSize: -1}); err != nil {
			t.Fatal(err)
		}
		if grown := int64(held.HeapAlloc) - int64(base.HeapAlloc); grown > 16<<20 {
			t.Errorf("the unpacker held %d MiB after %d directories with %d KiB headers each", grown>>20, dirs, pad>>10)
		}
	})
}

// pushLiar pushes img, then replaces its manifest under repo:tag with one
// whose layer descriptors declare sizes (the registry does not check them).
func pushLiar(t *testing.T, reg *imagetest.Registry, repo string, img v1.Image, sizes ...int64) string {
	t.Helper()
	ref := reg.Push(t, repo+":real", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	for i := range m.Layers {
		m.Layers[i].Size = sizes[i]
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, "http://"+reg.Host+"/v2/"+repo+"/manifests/liar", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", string(m.MediaType))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("put manifest: %s", resp.Status)
	}
	return strings.TrimSuffix(ref, ":real") + ":liar"
}

// TestDefaultCaps: a store opened without caps has the documented ones.
// Manifests that declare more than they allow are refused before any
// layer download, which lets the defaults be tested without expanding
// gigabytes.
func TestDefaultCaps(t *testing.T) {
	if image.DefaultMaxLayerSize != 10<<30 || image.DefaultMaxImageSize != 20<<30 {
		t.Errorf("defaults %d/%d differ from docs/images.md", image.DefaultMaxLayerSize, image.DefaultMaxImageSize)
	}
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	for _, tc := range []struct {
		name  string
		sizes []int64
		want  string
	}{
		{"layer", []int64{11 << 30}, "uncompressed layer exceeds the cap of 10 GiB (--max-layer-size)"},
		{"image", []int64{8 << 30, 8 << 30, 8 << 30}, "uncompressed layers of the image together exceed the cap of 20 GiB (--max-image-size)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var layers [][]imagetest.Entry
			for i := range tc.sizes {
				layers = append(layers, []imagetest.Entry{imagetest.File(fmt.Sprint(i), 0o644, []byte{byte(i)})})
			}
			img := imagetest.Image(t, v1.Config{}, imagetest.Gzip, layers...)
			ref := pushLiar(t, reg, "liar-"+tc.name, img, tc.sizes...)
			s := newStore(t)
			gets := reg.BlobGets()
			_, err := s.EnsureImage(context.Background(), ref, runtime.PullOptions{})
			assertCapError(t, err, "", tc.want)
			if n := reg.BlobGets() - gets; n != 1 {
				t.Errorf("%d blob downloads, want only the config's", n)
			}
			assertEmptyStore(t, s)
		})
	}
}
