package manifest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCache(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	loaderWrite(t, a, loaderPodYAML("a"), 0o644)
	loaderWrite(t, b, loaderPodYAML("b"), 0o644)
	cache := NewCache()
	opts := Options{Cache: cache}

	first, err := LoadDir(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadDir(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if first.Files[a].Pods[0].Pod != second.Files[a].Pods[0].Pod {
		t.Error("unchanged file was parsed again")
	}

	loaderWrite(t, a, loaderPodYAML("a2"), 0o644)
	third, err := LoadDir(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := third.Files[a].Pods[0].Pod.Metadata.Name; got != "a2" {
		t.Errorf("changed file: got pod %q, want a2", got)
	}
	uncached, err := LoadDir(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(uncached, third, cmp.AllowUnexported()); diff != "" {
		t.Errorf("cached and uncached snapshots differ:\n%s", diff)
	}

	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir, opts); err != nil {
		t.Fatal(err)
	}
	var kept []string
	for p := range cache.entries {
		kept = append(kept, filepath.Base(p))
	}
	sort.Strings(kept)
	if diff := cmp.Diff([]string{"a.yaml"}, kept); diff != "" {
		t.Errorf("cache entries after removing b.yaml (-want +got):\n%s", diff)
	}
}

// BenchmarkLoadDirExamples measures one pass over a copy of the examples
// with a warm Cache against the uncached pass (the baseline), alternating
// the two; medians and their ratio are reported.
func BenchmarkLoadDirExamples(b *testing.B) {
	paths, _ := filepath.Glob("../../examples/pods/*.yaml")
	dir := b.TempDir()
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	cached := Options{Cache: NewCache()}
	if _, err := LoadDir(dir, cached); err != nil {
		b.Fatal(err)
	}
	var warm, cold []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		s1, err := LoadDir(dir, cached)
		t1 := time.Now()
		s2, err2 := LoadDir(dir, Options{})
		t2 := time.Now()
		if err != nil || err2 != nil || len(s1.Pods) != len(paths) || len(s2.Pods) != len(paths) {
			b.Fatalf("load: %v %v", err, err2)
		}
		warm = append(warm, t1.Sub(t0))
		cold = append(cold, t2.Sub(t1))
	}
	b.StopTimer()
	mw, mc := benchMedian(warm), benchMedian(cold)
	b.ReportMetric(float64(mw.Microseconds()), "median-µs/cached")
	b.ReportMetric(float64(mc.Microseconds()), "median-µs/uncached")
	if mc > 0 {
		b.ReportMetric(float64(mw)/float64(mc), "ratio")
	}
}

func benchMedian(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
