package main

import (
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime/image"
)

func TestByteSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{
		"10Gi": 10 << 30, "512M": 512e6, "1073741824": 1 << 30, "-1": -1, "1.5Ki": 1536,
	} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"ten", "0", "-2", "1e30", "0.5", ""} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted: %d", in, b)
		}
	}
	b := byteSize(image.DefaultMaxLayerSize)
	if b.String() != "10Gi" {
		t.Errorf("String() = %q", b.String())
	}
	// Every command that opens the store passes the caps on.
	root, g := newRootCommand(nil, nil)
	runCmd, _, err := root.Find([]string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	if err := runCmd.ParseFlags([]string{"--max-layer-size", "1Mi", "--max-image-size", "-1", "--pod-pids-limit", "64", "--reserved-pids", "-1"}); err != nil {
		t.Fatal(err)
	}
	if o := g.withImageCaps(image.Options{}); o.MaxLayerSize != 1<<20 || o.MaxImageSize != -1 {
		t.Errorf("image options %+v", o)
	}
	if c := g.linuxConfig(); c.PodPidsLimit != 64 || c.ReservedPids != -1 {
		t.Errorf("runtime config pids limits %d %d", c.PodPidsLimit, c.ReservedPids)
	}
}
