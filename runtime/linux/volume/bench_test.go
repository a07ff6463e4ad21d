//go:build linux

package volume

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// BenchmarkProjectedUpdate measures one atomic update of a three-file
// ConfigMap volume (new version directory, fsyncs, ..data swap, cleanup)
// against its floor measured in the same loop: writing the same three
// files in place with a temp-file-and-rename each, fsynced.
func BenchmarkProjectedUpdate(b *testing.B) {
	dir := b.TempDir()
	plain := b.TempDir()
	var upd, base []time.Duration
	i := 0
	for b.Loop() {
		i++
		files := []runtime.ProjectedFile{
			{Path: "app.conf", Data: fmt.Appendf(nil, "version=%d\n", i), Mode: 0o644},
			{Path: "log.conf", Data: []byte("level=info\n"), Mode: 0o644},
			{Path: "nested/rules.yaml", Data: []byte("rules: []\n"), Mode: 0o644},
		}
		t0 := time.Now()
		if err := writeAtomic(dir, files, -1); err != nil {
			b.Fatal(err)
		}
		upd = append(upd, time.Since(t0))
		t0 = time.Now()
		for _, f := range files {
			p := filepath.Join(plain, filepath.Base(f.Path))
			if err := writeFile(p+".tmp", f.Data, 0o644, -1); err != nil {
				b.Fatal(err)
			}
			if err := os.Rename(p+".tmp", p); err != nil {
				b.Fatal(err)
			}
		}
		base = append(base, time.Since(t0))
	}
	slices.Sort(upd)
	slices.Sort(base)
	mu, mb := upd[len(upd)/2], base[len(base)/2]
	b.ReportMetric(float64(mu.Microseconds()), "median-µs")
	b.ReportMetric(float64(mb.Microseconds()), "rename-median-µs")
	b.ReportMetric(float64(mu)/float64(mb), "x-rename")
}

// BenchmarkPodFiles measures what the pod-files tmpfs adds to a sandbox:
// PodFiles (mount) and Teardown (unmount, remove) of a sandbox without
// volumes, against a bare tmpfs mount and MNT_DETACH umount of the same
// directory measured in the same loop.
//
//	go test -run '^$' -bench BenchmarkPodFiles -benchtime 200x ./runtime/linux/volume/
func BenchmarkPodFiles(b *testing.B) {
	base := b.TempDir()
	m := New(filepath.Join(base, "state"), filepath.Join(base, "run"))
	floorDir := filepath.Join(base, "floor")
	if err := os.Mkdir(floorDir, 0o700); err != nil {
		b.Fatal(err)
	}
	var mount, teardown, floorMount, floorUmount []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, _, err := m.PodFiles("bench"); err != nil {
			b.Fatal(err)
		}
		mount = append(mount, time.Since(t0))
		t0 = time.Now()
		if err := m.Teardown("bench"); err != nil {
			b.Fatal(err)
		}
		teardown = append(teardown, time.Since(t0))
		t0 = time.Now()
		if err := unix.Mount("tmpfs", floorDir, "tmpfs", 0, podFilesOptions); err != nil {
			b.Fatal(err)
		}
		floorMount = append(floorMount, time.Since(t0))
		t0 = time.Now()
		if err := unix.Unmount(floorDir, unix.MNT_DETACH); err != nil {
			b.Fatal(err)
		}
		floorUmount = append(floorUmount, time.Since(t0))
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	b.ReportMetric(us(median(mount)), "podfiles-µs")
	b.ReportMetric(us(median(teardown)), "teardown-µs")
	b.ReportMetric(us(median(floorMount)), "mount-floor-µs")
	b.ReportMetric(us(median(floorUmount)), "umount-floor-µs")
	b.ReportMetric(0, "ns/op")
}
