package spec

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// BenchmarkParseExamples measures ParseFile (strict decode, shape limits,
// defaults, validation, line numbers) over every example against a
// baseline measured in the same run: a plain non-strict sigs.k8s.io/yaml
// Unmarshal of the same documents, which is what a loader without any of
// these checks would cost. The two alternate so they share the machine's
// noise; medians and their ratio are reported as metrics.
func BenchmarkParseExamples(b *testing.B) {
	paths, _ := filepath.Glob("../examples/pods/*.yaml")
	var files [][]byte
	var chunks [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, data)
		for _, c := range splitDocuments(data) {
			chunks = append(chunks, c.data)
		}
	}
	if len(files) == 0 {
		b.Fatal("no examples")
	}
	strict := make([]time.Duration, 0, b.N)
	base := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		for _, data := range files {
			docs, fe := ParseFile("x.yaml", data, Limits{})
			if len(fe) > 0 || len(docs) == 0 {
				b.Fatal("example failed to parse")
			}
		}
		t1 := time.Now()
		for _, c := range chunks {
			var p Pod
			if err := yaml.Unmarshal(c, &p); err != nil {
				b.Fatal(err)
			}
		}
		t2 := time.Now()
		strict = append(strict, t1.Sub(t0))
		base = append(base, t2.Sub(t1))
	}
	b.StopTimer()
	ms, mb := median(strict), median(base)
	b.ReportMetric(float64(ms.Microseconds()), "median-µs/strict")
	b.ReportMetric(float64(mb.Microseconds()), "median-µs/baseline")
	if mb > 0 {
		b.ReportMetric(float64(ms)/float64(mb), "ratio")
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
