package image_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
)

func TestPullFromRegistry(t *testing.T) {
	bb := imagetest.Busybox(t)
	for _, tc := range []struct {
		name string
		opts imagetest.RegistryOptions
	}{
		{"anonymous", imagetest.RegistryOptions{}},
		{"basic", imagetest.RegistryOptions{User: "alice", Password: "s3cret"}},
		{"token", imagetest.RegistryOptions{User: "bob", Password: "hunter2", Token: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := imagetest.ServeRegistry(t, tc.opts)
			ref := reg.Push(t, "library/busybox:1.36", bb)
			s := newStore(t)
			var pull runtime.PullOptions
			if tc.opts.User != "" {
				// Without credentials the registry refuses.
				if _, err := s.EnsureImage(context.Background(), ref, pull); err == nil {
					t.Fatal("pull without credentials succeeded")
				}
				assertNoLitter(t, s, 0)
				pull.Auth = []runtime.RegistryAuth{{Registry: reg.Host, Username: tc.opts.User, Password: tc.opts.Password}}
			}
			var progress strings.Builder
			pull.Progress = &progress
			img, err := s.EnsureImage(context.Background(), ref, pull)
			if err != nil {
				t.Fatal(err)
			}
			if img.Digest != mustDigest(t, bb) {
				t.Errorf("digest %s, want %s", img.Digest, mustDigest(t, bb))
			}
			if want := []string{reg.Host + "/library/busybox:1.36"}; len(img.References) != 1 || img.References[0] != want[0] {
				t.Errorf("references %q, want %q", img.References, want)
			}
			if !strings.Contains(progress.String(), "pulled") {
				t.Errorf("progress output lacks the final line: %q", progress.String())
			}
			assertBusyboxRootfs(t, s, ref)
			got, err := s.GetImage(context.Background(), img.ID)
			if err != nil || got.Digest != img.Digest {
				t.Errorf("GetImage by ID: %v, %v", got, err)
			}
		})
	}
}

func TestPullWithDockerConfig(t *testing.T) {
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{User: "carol", Password: "pw", Token: true})
	ref := reg.Push(t, "app:1", imagetest.Image(t, v1.Config{Cmd: []string{"/x"}}, imagetest.Gzip,
		[]imagetest.Entry{imagetest.File("x", 0o755, []byte("x"))}))
	cfg := filepath.Join(t.TempDir(), "config.json")
	// "auth" is base64("carol:pw"), as docker login writes it.
	if err := os.WriteFile(cfg, []byte(`{"auths":{"`+reg.Host+`":{"auth":"Y2Fyb2w6cHc="}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := image.Open(image.Options{Root: t.TempDir(), DockerConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureImage(context.Background(), ref, runtime.PullOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestPullPolicies(t *testing.T) {
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	img := imagetest.Image(t, v1.Config{}, imagetest.Gzip, []imagetest.Entry{imagetest.File("a", 0o644, []byte("a"))})
	ref := reg.Push(t, "policy:1", img)
	s := newStore(t)
	ctx := context.Background()

	_, err := s.EnsureImage(ctx, ref, runtime.PullOptions{Policy: runtime.PullNever})
	if !errors.Is(err, runtime.ErrNotFound) || !strings.Contains(err.Error(), "Never") {
		t.Fatalf("Never with a missing image: %v, want ErrNotFound naming the policy", err)
	}
	if _, err := s.EnsureImage(ctx, ref, runtime.PullOptions{Policy: runtime.PullIfNotPresent}); err != nil {
		t.Fatal(err)
	}
	before := reg.Requests()
	for _, p := range []runtime.PullPolicy{runtime.PullIfNotPresent, runtime.PullNever, ""} {
		if _, err := s.EnsureImage(ctx, ref, runtime.PullOptions{Policy: p}); err != nil {
			t.Fatalf("%q with the image present: %v", p, err)
		}
	}
	if n := reg.Requests() - before; n != 0 {
		t.Errorf("IfNotPresent/Never with the image present made %d registry requests", n)
	}
	// Always asks the registry, but downloads no blob it already has.
	blobs := reg.BlobGets()
	if _, err := s.EnsureImage(ctx, ref, runtime.PullOptions{Policy: runtime.PullAlways}); err != nil {
		t.Fatal(err)
	}
	if reg.Requests() == before {
		t.Error("Always made no registry request")
	}
	if n := reg.BlobGets() - blobs; n != 0 {
		t.Errorf("Always re-downloaded %d blobs already stored", n)
	}
	// Always follows a moved tag.
	img2 := imagetest.Image(t, v1.Config{}, imagetest.Gzip, []imagetest.Entry{imagetest.File("b", 0o644, []byte("b"))})
	reg.Push(t, "policy:1", img2)
	got, err := s.EnsureImage(ctx, ref, runtime.PullOptions{Policy: runtime.PullAlways})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != mustDigest(t, img2) {
		t.Errorf("Always kept %s after the tag moved to %s", got.Digest, mustDigest(t, img2))
	}
	// By digest: the old image is still in the registry.
	byDigest := reg.Host + "/policy@" + mustDigest(t, img)
	got, err = s.EnsureImage(ctx, byDigest, runtime.PullOptions{})
	if err != nil || got.Digest != mustDigest(t, img) {
		t.Fatalf("pull by digest: %+v, %v", got, err)
	}
	if _, err := s.GetImage(ctx, byDigest); err != nil {
		t.Errorf("GetImage by digest reference: %v", err)
	}
	// A layer lost from disk makes the image not present: IfNotPresent
	// restores it (from the stored blob, without a download).
	dirs, _, err := s.LayerDirs(ctx, byDigest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureImage(ctx, byDigest, runtime.PullOptions{Policy: runtime.PullNever}); err == nil {
		t.Error("Never with a layer missing succeeded")
	}
	blobs = reg.BlobGets()
	if _, err := s.EnsureImage(ctx, byDigest, runtime.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirs[0]); err != nil {
		t.Errorf("lost layer not restored: %v", err)
	}
	if n := reg.BlobGets() - blobs; n != 0 {
		t.Errorf("restoring a layer from its stored blob downloaded %d blobs", n)
	}
	if _, err := s.EnsureImage(ctx, ref, runtime.PullOptions{Policy: "Sometimes"}); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("unknown policy: %v, want ErrInvalidConfig", err)
	}
	if _, err := s.EnsureImage(ctx, reg.Ref("absent:1"), runtime.PullOptions{}); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("missing tag: %v, want ErrNotFound", err)
	}
}

func TestPullSelectsPlatformFromIndex(t *testing.T) {
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	mine := imagetest.Image(t, v1.Config{Cmd: []string{"mine"}}, imagetest.Gzip, []imagetest.Entry{imagetest.File("mine", 0o644, nil)})
	other := imagetest.Image(t, v1.Config{Cmd: []string{"other"}}, imagetest.Gzip, []imagetest.Entry{imagetest.File("other", 0o644, nil)})
	ref := reg.PushIndex(t, "multi:1", imagetest.Index(t, map[string]v1.Image{"": mine, "other": other}))
	s := newStore(t)
	img, err := s.EnsureImage(context.Background(), ref, runtime.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != mustDigest(t, mine) {
		t.Errorf("pulled %s (Cmd %q), want this platform's %s", img.Digest, img.Config.Cmd, mustDigest(t, mine))
	}
}

// TestConcurrentPullsShareOne proves a second pull of an image waits for
// the first: the registry serves each blob once.
func TestConcurrentPullsShareOne(t *testing.T) {
	release := make(chan struct{})
	var blocked atomic.Bool
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && blocked.Load() {
				<-release
			}
			h.ServeHTTP(w, r)
		})
	}})
	img := imagetest.Image(t, v1.Config{}, imagetest.Gzip,
		[]imagetest.Entry{imagetest.File("one", 0o644, []byte("1"))},
		[]imagetest.Entry{imagetest.File("two", 0o644, []byte("2"))})
	ref := reg.Push(t, "shared:1", img)
	canon, err := image.NormalizeReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	blocked.Store(true)
	const pullers = 4
	var wg sync.WaitGroup
	errs := make([]error, pullers)
	digests := make([]string, pullers)
	for i := range pullers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img, err := s.EnsureImage(context.Background(), ref, runtime.PullOptions{})
			errs[i] = err
			if err == nil {
				digests[i] = img.Digest
			}
		}()
	}
	// Hold the blobs until every other caller has joined the running pull.
	for image.PullWaiters(s, canon) < pullers-1 {
		goruntime.Gosched()
	}
	blocked.Store(false)
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("puller %d: %v", i, err)
		}
		if digests[i] != mustDigest(t, img) {
			t.Errorf("puller %d got %s", i, digests[i])
		}
	}
	// Three blobs: the config and two layers.
	if n := reg.BlobGets(); n != 3 {
		t.Errorf("registry served %d blob GETs for a 2-layer image pulled %d times at once, want 3", n, pullers)
	}
}

// dropBlobs makes the registry cut the connection halfway through blob
// downloads while drops > 0, and records the Range header of every blob GET.
func dropBlobs(drops *dropCounter, ranges *rangeLog) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				ranges.add(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:], r.Header.Get("Range"))
			}
			only, _ := drops.only.Load().(string)
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") ||
				only != "" && !strings.HasSuffix(r.URL.Path, only) || drops.Add(-1) < 0 {
				h.ServeHTTP(w, r)
				return
			}
			rec := &captureWriter{header: http.Header{}}
			h.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			w.Write(rec.body[:len(rec.body)/2])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
		})
	}
}

// dropCounter counts the downloads still to drop; only, when set, limits
// drops to the blob with that digest.
type dropCounter struct {
	atomic.Int64
	only atomic.Value
}

type rangeLog struct {
	mu sync.Mutex
	m  map[string][]string // digest -> Range headers, in order
}

func (l *rangeLog) add(digest, rng string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string][]string{}
	}
	l.m[digest] = append(l.m[digest], rng)
}

func (l *rangeLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m = nil
}

func (l *rangeLog) get(digest string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.m[digest])
}

type captureWriter struct {
	header http.Header
	status int
	body   []byte
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(s int)   { c.status = s }
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body = append(c.body, b...)
	return len(b), nil
}

func bigLayerImage(t *testing.T) v1.Image {
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i * 7 % 251)
	}
	return imagetest.Image(t, v1.Config{}, imagetest.Gzip, []imagetest.Entry{imagetest.File("big", 0o644, data)})
}

func TestInterruptedPullThenRetry(t *testing.T) {
	var drops dropCounter
	var ranges rangeLog
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{Wrap: dropBlobs(&drops, &ranges)})
	img := bigLayerImage(t)
	ref := reg.Push(t, "flaky:1", img)
	s := newStore(t)
	ctx := context.Background()

	// The registry drops every attempt: the pull fails and leaves nothing
	// that looks complete.
	drops.Store(1 << 30)
	if _, err := s.EnsureImage(ctx, ref, runtime.PullOptions{}); err == nil {
		t.Fatal("pull through a registry that always drops succeeded")
	}
	assertNoLitter(t, s, 0)
	if _, err := s.GetImage(ctx, ref); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("image indexed after a failed pull: %v", err)
	}
	layerDigest := layerDigests(t, img)[0]
	if _, err := os.Stat(filepath.Join(s.Dir(), "blobs", "sha256", strings.TrimPrefix(layerDigest, "sha256:"))); err == nil {
		t.Error("a partial layer blob was stored under its digest")
	}

	// Retry once the registry behaves.
	drops.Store(0)
	if _, err := s.EnsureImage(ctx, ref, runtime.PullOptions{}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	assertNoLitter(t, s, 1)

	// A single drop is absorbed by the pull's own retry, which resumes
	// with a Range request instead of starting over. Only the layer is
	// dropped, so the config download does not use up the drop.
	s2 := newStore(t)
	ranges.reset()
	drops.only.Store(layerDigest)
	drops.Store(1)
	if _, err := s2.EnsureImage(ctx, ref, runtime.PullOptions{}); err != nil {
		t.Fatalf("pull with one dropped download: %v", err)
	}
	got := ranges.get(layerDigest)
	if len(got) != 2 || got[0] != "" || !strings.HasPrefix(got[1], "bytes=") || strings.HasPrefix(got[1], "bytes=0-") {
		t.Errorf("layer GETs sent Range headers %q, want a full GET then a resumed one", got)
	}
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

func TestDigestMismatchStoresNothing(t *testing.T) {
	img := bigLayerImage(t)
	layer := layerDigests(t, img)[0]
	var tampered atomic.Int64
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+layer) {
				h.ServeHTTP(w, r)
				return
			}
			rec := &captureWriter{header: http.Header{}}
			h.ServeHTTP(rec, r)
			rec.body[len(rec.body)/2] ^= 0xff
			tampered.Add(1)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			w.Write(rec.body)
		})
	}})
	ref := reg.Push(t, "tampered:1", img)
	s := newStore(t)
	_, err := s.EnsureImage(context.Background(), ref, runtime.PullOptions{})
	if !errors.Is(err, image.ErrDigestMismatch) {
		t.Fatalf("pull of a tampered blob: %v, want ErrDigestMismatch", err)
	}
	assertNoLitter(t, s, 0)
	if n := tampered.Load(); n != 1 {
		t.Errorf("a digest mismatch was retried: the layer was served %d times", n)
	}
}

// TestPullThroughMirror: an image of a registry that has a mirror is
// fetched from the mirror (by tag and by digest) and stored under its own
// name; the registry itself is never asked.
func TestPullThroughMirror(t *testing.T) {
	bb := imagetest.Busybox(t)
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	reg.Push(t, "k8s-staging/busybox:1.36", bb)
	s, err := image.Open(image.Options{Root: t.TempDir(), Mirrors: map[string]string{"gcr.io": reg.Host, "docker.io": reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.EnsureImage(context.Background(), "gcr.io/k8s-staging/busybox:1.36", runtime.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "gcr.io/k8s-staging/busybox:1.36"; len(img.References) != 1 || img.References[0] != want {
		t.Errorf("references %q, want [%s]", img.References, want)
	}
	byDigest := "gcr.io/k8s-staging/busybox@" + mustDigest(t, bb)
	if _, err := s.EnsureImage(context.Background(), byDigest, runtime.PullOptions{Policy: runtime.PullAlways}); err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "library/busybox:latest", bb)
	if _, err := s.EnsureImage(context.Background(), "busybox", runtime.PullOptions{}); err != nil {
		t.Errorf("docker.io through its mirror: %v", err)
	}
	// A registry without a mirror is asked itself.
	other := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	ref := other.Push(t, "x/y:1", bb)
	before := reg.Requests()
	if _, err := s.EnsureImage(context.Background(), ref, runtime.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if reg.Requests() != before || other.Requests() == 0 {
		t.Errorf("an unmirrored pull asked the mirror %d times and its registry %d times", reg.Requests()-before, other.Requests())
	}
}
