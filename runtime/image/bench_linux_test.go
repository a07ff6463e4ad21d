package image_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// benchImage is a three-layer image of about 14 MB unpacked: busybox, 400
// small files in a tree, and one large file — the mix real images have.
func benchImage(b *testing.B) v1.Image {
	bb, err := imagetest.BusyboxEntries()
	if err != nil {
		b.Skip(err)
	}
	pseudo := func(n, seed int) []byte {
		out := make([]byte, n)
		x := uint32(seed*2654435761 + 1)
		for i := range out {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			// Half-random bytes compress about as well as binaries do.
			out[i] = byte(x) & 0x3f
		}
		return out
	}
	var small []imagetest.Entry
	for d := range 20 {
		small = append(small, imagetest.Dir(fmt.Sprintf("usr/share/d%02d/", d), 0o755))
		for f := range 20 {
			small = append(small, imagetest.File(fmt.Sprintf("usr/share/d%02d/f%02d", d, f), 0o644, pseudo(8<<10, d*100+f)))
		}
	}
	big := []imagetest.Entry{imagetest.Dir("opt/", 0o755), imagetest.File("opt/blob", 0o644, pseudo(8<<20, 7))}
	return imagetest.Image(b, v1.Config{}, imagetest.Gzip, bb, small, big)
}

type benchLayer struct {
	blob    string // compressed file
	tarSize int64
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func benchSetup(b *testing.B) (string, *image.Store, []benchLayer) {
	linuxtest.RequireRoot(b)
	_, err := exec.LookPath("tar")
	linuxtest.Require(b, err == nil, "tar(1) for the baseline")
	imagetest.RequireBusybox(b)
	root := b.TempDir()
	s, err := image.Open(image.Options{Root: filepath.Join(root, "state")})
	if err != nil {
		b.Fatal(err)
	}
	img := benchImage(b)
	imagetest.ImportInto(b, s, "bench:1", img)
	ls, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	var layers []benchLayer
	for i, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		buf.ReadFrom(rc)
		rc.Close()
		p := filepath.Join(root, fmt.Sprintf("layer%d.tar.gz", i))
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			b.Fatal(err)
		}
		st, err := image.Unpack(context.Background(), bytes.NewReader(buf.Bytes()), b.TempDir(), image.UnpackOptions{})
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, benchLayer{blob: p, tarSize: st.TarSize})
	}
	return root, s, layers
}

// BenchmarkUnpack compares image.Unpack with GNU tar -xzf on the same
// gzip layers, same run, same disk. Metrics: median MB/s of each and
// their ratio (ours / tar; above 1 means faster).
func BenchmarkUnpack(b *testing.B) {
	root, _, layers := benchSetup(b)
	var total int64
	for _, l := range layers {
		total += l.tarSize
	}
	var ours, tars []time.Duration
	for i := 0; b.Loop(); i++ {
		dst := filepath.Join(root, fmt.Sprintf("ours-%d", i))
		start := time.Now()
		for j, l := range layers {
			d := filepath.Join(dst, fmt.Sprint(j))
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			f, err := os.Open(l.blob)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := image.Unpack(context.Background(), f, d, image.UnpackOptions{}); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		ours = append(ours, time.Since(start))
		tdst := filepath.Join(root, fmt.Sprintf("tar-%d", i))
		start = time.Now()
		for j, l := range layers {
			d := filepath.Join(tdst, fmt.Sprint(j))
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			if out, err := exec.Command("tar", "-xzf", l.blob, "-C", d, "--same-owner", "-p").CombinedOutput(); err != nil {
				b.Fatalf("tar: %v: %s", err, out)
			}
		}
		tars = append(tars, time.Since(start))
		b.StopTimer()
		os.RemoveAll(dst)
		os.RemoveAll(tdst)
		b.StartTimer()
	}
	mbps := func(d time.Duration) float64 { return float64(total) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(median(ours)), "unpack-MB/s")
	b.ReportMetric(mbps(median(tars)), "tar-x-MB/s")
	b.ReportMetric(mbps(median(ours))/mbps(median(tars)), "ratio")
	b.ReportMetric(float64(total)/1e6, "MB")
}

// BenchmarkRootfsReady compares "image present -> rootfs mounted" (layer
// lookup and an overlay mount over the unpacked layers) with what a store
// without shared layers would do per container: tar -x every layer into a
// fresh directory. Metrics are medians in ms and baseline/ours (how many
// times faster).
func BenchmarkRootfsReady(b *testing.B) {
	root, s, layers := benchSetup(b)
	var ours, tars []time.Duration
	for i := 0; b.Loop(); i++ {
		scratch := filepath.Join(root, fmt.Sprintf("ctr-%d", i))
		start := time.Now()
		dirs, _, err := s.LayerDirs(context.Background(), "bench:1")
		if err != nil {
			b.Fatal(err)
		}
		upper, work, target := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work"), filepath.Join(scratch, "rootfs")
		for _, d := range []string{upper, work, target} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		lower := slices.Clone(dirs)
		slices.Reverse(lower)
		if err := unix.Mount("overlay", target, "overlay", 0,
			"lowerdir="+strings.Join(lower, ":")+",upperdir="+upper+",workdir="+work); err != nil {
			b.Fatal(err)
		}
		ours = append(ours, time.Since(start))
		b.StopTimer()
		if err := unix.Unmount(target, 0); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		tdst := filepath.Join(root, fmt.Sprintf("tar-%d", i))
		start = time.Now()
		if err := os.MkdirAll(tdst, 0o755); err != nil {
			b.Fatal(err)
		}
		for _, l := range layers {
			if out, err := exec.Command("tar", "-xzf", l.blob, "-C", tdst, "--same-owner", "-p").CombinedOutput(); err != nil {
				b.Fatalf("tar: %v: %s", err, out)
			}
		}
		tars = append(tars, time.Since(start))
		b.StopTimer()
		os.RemoveAll(scratch)
		os.RemoveAll(tdst)
		b.StartTimer()
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(median(ours)), "mount-ms")
	b.ReportMetric(ms(median(tars)), "tar-x-ms")
	b.ReportMetric(ms(median(tars))/ms(median(ours)), "speedup")
	if left := mountsUnder(b, root); len(left) != 0 {
		b.Errorf("mounts left under %s: %v", root, left)
	}
}
