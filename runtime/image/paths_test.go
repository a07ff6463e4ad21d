package image

import (
	"errors"
	"strings"
	"testing"
)

// FuzzCleanName: an accepted name is relative, clean and free of "..";
// a refused one is ErrHostileLayer.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a/b", "./a", "../a", "/etc/passwd", "a/../../b", "a//b/", ".", "", "..", "a/..b", ".wh...", "a/./b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := cleanName(name)
		if err != nil {
			if !errors.Is(err, ErrHostileLayer) {
				t.Fatalf("cleanName(%q): %v is not ErrHostileLayer", name, err)
			}
			return
		}
		if strings.HasPrefix(got, "/") || got == ".." || strings.HasPrefix(got, "../") || strings.Contains(got, "/../") ||
			strings.HasSuffix(got, "/..") || strings.Contains(got, "//") || strings.HasSuffix(got, "/") {
			t.Fatalf("cleanName(%q) = %q: not a clean relative path", name, got)
		}
	})
}
