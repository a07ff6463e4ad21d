//go:build linux

package volume

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

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
