package follow

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
)

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := crilog.NewWriter(path, crilog.Options{MaxSize: 200, MaxFiles: 30})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go w.Copy(crilog.Stdout, pr)
	outR, outW := io.Pipe()
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- Follow(context.Background(), path, outW, crilog.ReadOptions{}, done); outW.Close() }()
	got := make(chan string, 1)
	go func() { b, _ := io.ReadAll(outR); got <- string(b) }()
	var want strings.Builder
	for i := range 40 {
		fmt.Fprintf(pw, "follow %02d\n", i)
		fmt.Fprintf(&want, "follow %02d\n", i)
	}
	pw.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != want.String() {
		t.Errorf("followed:\n%s\nwant:\n%s", g, want.String())
	}
}
