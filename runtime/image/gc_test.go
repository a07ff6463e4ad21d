package image_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
)

// flockWaiters counts processes blocked on a flock of path, from
// /proc/locks ("-> FLOCK ..." lines name the inode they wait for).
func flockWaiters(t *testing.T, path string) int {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf(":%d ", st.Ino)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "-> FLOCK") && strings.Contains(line+" ", id) {
			n++
		}
	}
	return n
}

// TestPruneWaitsForRunningPull: a prune that starts while a pull is
// downloading must not collect the blobs the pull has written but not yet
// indexed (another process, here another Store on the same root).
func TestPruneWaitsForRunningPull(t *testing.T) {
	img := imagetest.Image(t, v1.Config{}, imagetest.Gzip, []imagetest.Entry{imagetest.File("p", 0o644, []byte("p"))})
	layer := layerDigests(t, img)[0]
	release := make(chan struct{})
	arrived := make(chan struct{}, 8)
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+layer) {
				arrived <- struct{}{}
				<-release
			}
			h.ServeHTTP(w, r)
		})
	}})
	ref := reg.Push(t, "gc:1", img)
	root := t.TempDir()
	puller, pruner := newStoreAt(t, root), newStoreAt(t, root)

	pullDone, pruneDone := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := puller.EnsureImage(context.Background(), ref, runtime.PullOptions{})
		pullDone <- err
	}()
	<-arrived // the manifest and config are stored, the layer is in flight
	go func() {
		_, err := pruner.Prune(context.Background())
		pruneDone <- err
	}()
	// Prune must block on the GC lock while the pull runs.
	for flockWaiters(t, filepath.Join(pruner.Dir(), "gc.lock")) == 0 {
		select {
		case err := <-pruneDone:
			close(release)
			<-pullDone
			t.Fatalf("prune finished (%v) while a pull was running instead of waiting", err)
		default:
			goruntime.Gosched()
		}
	}
	close(release)
	if err := <-pullDone; err != nil {
		t.Fatalf("pull: %v", err)
	}
	if err := <-pruneDone; err != nil {
		t.Fatalf("prune: %v", err)
	}
	d, err := pruner.Inspect(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, digest := range []string{d.Digest, d.ID, d.Layers[0].Digest} {
		if _, err := os.Stat(filepath.Join(pruner.Dir(), "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))); err != nil {
			t.Errorf("blob %s collected by a prune that overlapped the pull: %v", digest, err)
		}
	}
	if _, _, err := pruner.LayerDirs(context.Background(), ref); err != nil {
		t.Error(err)
	}
}

// TestTwoStoresPullTogether: two processes (two Stores on one root) pulling
// the same image at once both succeed and leave one copy of everything.
func TestTwoStoresPullTogether(t *testing.T) {
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	img := imagetest.Image(t, v1.Config{}, imagetest.Zstd,
		[]imagetest.Entry{imagetest.File("a", 0o644, []byte("a"))},
		[]imagetest.Entry{imagetest.File("b", 0o644, []byte("b"))})
	ref := reg.Push(t, "two:1", img)
	root := t.TempDir()
	stores := []*image.Store{newStoreAt(t, root), newStoreAt(t, root)}
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.EnsureImage(context.Background(), ref, runtime.PullOptions{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
	}
	assertNoLitter(t, stores[0], 2)
	if list, _ := stores[1].ListImages(context.Background()); len(list) != 1 {
		t.Errorf("%d images indexed, want 1", len(list))
	}
}
