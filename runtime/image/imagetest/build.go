// Package imagetest builds OCI images at test time and serves them without
// the internet: a busybox image from the host's busybox-static, images with
// extra files (static test helpers), hand-made (also hostile) layers, an
// in-process registry on 127.0.0.1 with optional basic or token auth, and
// writers for docker-archive, OCI archive and OCI layout.
//
// The Build*/Write* functions return errors and need no testing.TB, so the
// mkimage command can use them too; the others fail the test on error.
package imagetest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	goruntime "runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// BusyboxPath is where Debian's busybox-static installs the binary.
const BusyboxPath = "/bin/busybox"

// Epoch is the mtime of every entry the builders make, so that building
// the same content twice gives the same digests.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultPath is the PATH of images built here.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Compression of a built layer.
type Compression int

const (
	Gzip Compression = iota
	Zstd
	Uncompressed
)

// Entry is one tar entry of a hand-made layer. Header is written as is, so
// tests can build hostile layers (.., absolute paths, links out).
type Entry struct {
	Header tar.Header
	Data   []byte
}

// Dir, File, Symlink, Hardlink and Whiteout build common entries with the
// builders' fixed mtime, owned by root.
func Dir(name string, mode int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: Epoch}}
}

func File(name string, mode int64, data []byte) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: Epoch}, Data: data}
}

func Symlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: Epoch}}
}

func Hardlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: Epoch}}
}

// Whiteout deletes name (from lower layers) in overlay terms.
func Whiteout(name string) Entry {
	dir, base := path.Split(name)
	return File(dir+".wh."+base, 0o644, nil)
}

// Opaque hides everything lower layers have in dir.
func Opaque(dir string) Entry {
	return File(strings.TrimSuffix(dir, "/")+"/.wh..wh..opq", 0o644, nil)
}

// LayerTar writes entries as an uncompressed tar.
func LayerTar(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Header
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.Data))
		}
		if h.Format == tar.FormatUnknown && len(h.PAXRecords) > 0 {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
		if len(e.Data) > 0 {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("tar entry %q: %w", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BuildLayer makes a layer from entries, compressed as asked.
func BuildLayer(entries []Entry, c Compression) (v1.Layer, error) {
	b, err := LayerTar(entries)
	if err != nil {
		return nil, err
	}
	return LayerFromTar(b, c)
}

// LayerFromTar makes a layer from an uncompressed tar.
func LayerFromTar(b []byte, c Compression) (v1.Layer, error) {
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	opts := []tarball.LayerOption{tarball.WithCompressedCaching}
	switch c {
	case Zstd:
		opts = append(opts, tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	case Uncompressed:
		opts = append(opts, tarball.WithCompression(compression.None), tarball.WithMediaType(types.OCIUncompressedLayer))
	default:
		opts = append(opts, tarball.WithMediaType(types.OCILayer))
	}
	return tarball.LayerFromOpener(opener, opts...)
}

// BuildImage makes an OCI image for this host's platform from layers,
// lowest first.
func BuildImage(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = goruntime.GOOS
	cf.Architecture = goruntime.GOARCH
	cf.Created = v1.Time{Time: Epoch}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// HaveBusybox reports whether the host has a static busybox to build from.
func HaveBusybox() bool {
	out, err := exec.Command("file", "-L", BusyboxPath).Output()
	if err == nil {
		return bytes.Contains(out, []byte("statically linked")) || bytes.Contains(out, []byte("static-pie"))
	}
	// Without file(1), trust the Debian package's path.
	_, serr := os.Stat(BusyboxPath)
	return serr == nil
}

// RequireBusybox skips the test when busybox-static is missing, and fails
// it under CI, where .ci/run installs the package.
func RequireBusybox(t testing.TB) {
	t.Helper()
	linuxtest.Require(t, HaveBusybox(), "static busybox at "+BusyboxPath+" (apt-get install busybox-static)")
}

// BusyboxEntries is the file tree of the busybox image: the FHS skeleton,
// /bin/busybox, one symlink per applet at the path busybox itself lists,
// and /etc/passwd and /etc/group with root and nobody.
func BusyboxEntries() ([]Entry, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	out, err := exec.Command(BusyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox image: %s --list-full: %w", BusyboxPath, err)
	}
	entries := []Entry{
		Dir("bin/", 0o755), Dir("sbin/", 0o755), Dir("usr/", 0o755), Dir("usr/bin/", 0o755), Dir("usr/sbin/", 0o755),
		Dir("etc/", 0o755), Dir("root/", 0o700), Dir("tmp/", 0o1777), Dir("home/", 0o755),
		Dir("proc/", 0o555), Dir("sys/", 0o555), Dir("dev/", 0o755), Dir("run/", 0o755),
		Dir("var/", 0o755), Dir("var/tmp/", 0o1777),
		File("bin/busybox", 0o755, bin),
		File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")),
		File("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")),
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	for _, a := range applets {
		a = strings.TrimPrefix(a, "/")
		if a == "bin/busybox" || a == "" {
			continue
		}
		entries = append(entries, Symlink(a, "/bin/busybox"))
	}
	return entries, nil
}

// BuildBusybox builds the busybox image: one gzip layer, Cmd ["sh"].
func BuildBusybox() (v1.Image, error) {
	entries, err := BusyboxEntries()
	if err != nil {
		return nil, err
	}
	l, err := BuildLayer(entries, Gzip)
	if err != nil {
		return nil, err
	}
	return BuildImage(v1.Config{Cmd: []string{"sh"}, Env: []string{DefaultPath}}, l)
}

// Busybox returns the busybox image, skipping (or, under CI, failing) the
// test when busybox-static is missing.
func Busybox(t testing.TB) v1.Image {
	t.Helper()
	RequireBusybox(t)
	img, err := BuildBusybox()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// HostFile is a file to add to an image.
type HostFile struct {
	// Path in the image, e.g. /usr/local/bin/probe.
	Path string
	// Exactly one of Data and From: From is copied from the host.
	Data []byte
	From string
	// Mode defaults to 0755 for From files and 0644 for Data.
	Mode     int64
	UID, GID int
}

// AddFiles appends one layer holding files (and their missing parent
// directories) to img; the config is kept.
func AddFiles(img v1.Image, files ...HostFile) (v1.Image, error) {
	var entries []Entry
	seen := map[string]bool{}
	for _, f := range files {
		p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		for d := path.Dir(p); d != "." && !seen[d]; d = path.Dir(d) {
			seen[d] = true
		}
		data, mode := f.Data, f.Mode
		if f.From != "" {
			b, err := os.ReadFile(f.From)
			if err != nil {
				return nil, fmt.Errorf("add %s to image: %w", f.From, err)
			}
			data = b
			if mode == 0 {
				mode = 0o755
			}
		}
		if mode == 0 {
			mode = 0o644
		}
		e := File(p, mode, data)
		e.Header.Uid, e.Header.Gid = f.UID, f.GID
		entries = append(entries, e)
	}
	dirs := make([]string, 0, len(seen))
	for d := range seen {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs) // parents sort before their children
	all := make([]Entry, 0, len(dirs)+len(entries))
	for _, d := range dirs {
		all = append(all, Dir(d+"/", 0o755))
	}
	all = append(all, entries...)
	l, err := BuildLayer(all, Gzip)
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, l)
}

// WithFiles is AddFiles for tests.
func WithFiles(t testing.TB, img v1.Image, files ...HostFile) v1.Image {
	t.Helper()
	out, err := AddFiles(img, files...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Image builds an image from hand-made layers for tests.
func Image(t testing.TB, cfg v1.Config, c Compression, layers ...[]Entry) v1.Image {
	t.Helper()
	ls := make([]v1.Layer, 0, len(layers))
	for _, es := range layers {
		l, err := BuildLayer(es, c)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := BuildImage(cfg, ls...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Index builds a multi-platform image index: the image under key "" is
// for this host's platform, the others for a platform this host is not.
func Index(t testing.TB, images map[string]v1.Image) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	keys := make([]string, 0, len(images))
	for k := range images {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := v1.Platform{OS: goruntime.GOOS, Architecture: goruntime.GOARCH}
		if k != "" {
			p.Architecture = "s390x"
			if goruntime.GOARCH == "s390x" {
				p.Architecture = "amd64"
			}
		}
		adds = append(adds, mutate.IndexAddendum{Add: images[k], Descriptor: v1.Descriptor{Platform: &p}})
	}
	// Put the foreign image first so a store that ignores platforms fails.
	sort.SliceStable(adds, func(i, j int) bool { return adds[i].Descriptor.Platform.Architecture != goruntime.GOARCH })
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	return idx
}

// rawLayer is a layer whose blob is given verbatim while its diffID is
// whatever the caller claims: the blob digest checks out, the content may
// not (corrupt-layer tests).
type rawLayer struct {
	blob   []byte
	diffID v1.Hash
	mt     types.MediaType
}

func (l *rawLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.blob))
	return h, err
}
func (l *rawLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l *rawLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l *rawLayer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l *rawLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// WithRawLayer returns img with layer i's blob replaced by blob, keeping
// the config's diffID: the registry serves it with a valid digest and only
// unpacking can tell it is broken.
func WithRawLayer(t testing.TB, img v1.Image, i int, blob []byte) v1.Image {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := layers[i].MediaType()
	if err != nil {
		t.Fatal(err)
	}
	layers[i] = &rawLayer{blob: blob, diffID: cf.RootFS.DiffIDs[i], mt: mt}
	out, err := BuildImage(cf.Config, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
