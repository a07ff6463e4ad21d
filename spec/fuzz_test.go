package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFile feeds arbitrary bytes through decode, defaults and
// validation. Seeds: the examples, the committed corpus in
// testdata/fuzz/FuzzParseFile and a few hostile shapes. Properties: it
// never panics or hangs, every problem names the file, and every valid pod
// survives a round trip through its normalized JSON with the same hashes.
func FuzzParseFile(f *testing.F) {
	paths, _ := filepath.Glob("../examples/pods/*.yaml")
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(validPodYAML))
	f.Add([]byte(billionLaughs()))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"j\"},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"x\"}]}}"))
	lim := Limits{MaxBytes: 64 << 10, MaxNodes: 20_000}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, fileErrs := ParseFile("fuzz.yaml", data, lim)
		for _, e := range fileErrs {
			if e.File != "fuzz.yaml" || e.Error() == "" {
				t.Fatalf("file error without file name: %#v", e)
			}
		}
		for _, d := range docs {
			for _, e := range d.Errs {
				if e.File != "fuzz.yaml" || e.Doc != d.Index {
					t.Fatalf("document error without file/doc: %#v", e)
				}
			}
			if !d.Valid() || d.Pod == nil {
				continue
			}
			js, err := json.Marshal(d.Pod)
			if err != nil {
				t.Fatalf("marshal valid pod: %v", err)
			}
			again, fe := ParseFile("again.json", js, Limits{})
			if len(fe) > 0 || len(again) != 1 || !again[0].Valid() {
				var errs FieldErrors
				if len(again) == 1 {
					errs = again[0].Errs
				}
				t.Fatalf("valid pod does not re-parse from its JSON %s: %v %v", js, fe, errs)
			}
			if SandboxHash(again[0].Pod) != SandboxHash(d.Pod) {
				t.Fatalf("sandbox hash changed over a JSON round trip: %s", js)
			}
		}
	})
}
