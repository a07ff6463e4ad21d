package linux

import (
	"bytes"
	"context"
	"os"
	"path"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
)

// hostileImage is the busybox image with the top-level directory dir
// replaced by a symlink to target, and target (with its parents) made as a
// real directory inside the image, as an attacker would ship it so that a
// resolver confined to the root is satisfied.
func hostileImage(t *testing.T, dir, target string) v1.Image {
	t.Helper()
	base, err := imagetest.BusyboxEntries()
	if err != nil {
		t.Fatal(err)
	}
	var entries []imagetest.Entry
	for _, e := range base {
		if e.Header.Name != dir+"/" {
			entries = append(entries, e)
		}
	}
	entries = append(entries, imagetest.Symlink(dir, target))
	var parents []string
	for p := strings.TrimPrefix(path.Clean(target), "/"); p != "." && p != ""; p = path.Dir(p) {
		parents = append([]string{p + "/"}, parents...)
	}
	for _, p := range parents {
		entries = append(entries, imagetest.Dir(p, 0o755))
	}
	return imagetest.Image(t, v1.Config{Env: []string{imagetest.DefaultPath}}, imagetest.Gzip, entries)
}

// TestAttackProcSymlinkCorePattern is the attacker's image of issue 11
// (CVE-2019-19921 class): /proc -> /bad-proc, with a real /bad-proc. On a
// runtime that resolves /proc inside the root but applies its masks by host
// path, procfs lands on /bad-proc with no read-only /proc/sys, and root in
// the container rewrites the host's kernel.core_pattern. The start must be
// refused, naming the symlink, and the host's core_pattern stay as it was.
func TestAttackProcSymlinkCorePattern(t *testing.T) {
	e := newCtrEnv(t, nil)
	const ref = "pelagos.test/hostile-proc:1"
	imagetest.ImportInto(t, e.store, ref, hostileImage(t, "proc", "/bad-proc"))

	const corePattern = "/proc/sys/kernel/core_pattern"
	before, err := os.ReadFile(corePattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Should the defence fail, put the host back as it was.
		if now, err := os.ReadFile(corePattern); err == nil && !bytes.Equal(now, before) {
			os.WriteFile(corePattern, before, 0)
		}
	})
	cfg := e.config("attacker", "/bin/sh", "-c",
		"echo core.pelagos-attack > /proc/sys/kernel/core_pattern; cat /proc/sys/kernel/core_pattern")
	cfg.Image = ref
	c, err := e.rt.StartContainer(context.Background(), cfg)
	if err == nil {
		e.waitExit(t, c.ID)
		t.Errorf("a container with /proc -> /bad-proc started")
	} else if want := "rootfs: mount /proc: image's /proc is a symlink to /bad-proc: refused"; !strings.Contains(err.Error(), want) {
		t.Errorf("start error = %v\nwant it to contain %q", err, want)
	} else {
		t.Logf("refused: %v", err)
	}
	if after, _ := os.ReadFile(corePattern); !bytes.Equal(after, before) {
		t.Errorf("host kernel.core_pattern changed from %q to %q", before, after)
	}
	e.check(t)
}

// TestAttackDevSymlinkHostDir: /dev -> a host directory (with the same path
// made inside the image). A runtime that makes /dev's nodes by host path
// would create them in the host directory; the start must be refused and
// the directory stay empty.
func TestAttackDevSymlinkHostDir(t *testing.T) {
	e := newCtrEnv(t, nil)
	host := t.TempDir()
	const ref = "pelagos.test/hostile-dev:1"
	imagetest.ImportInto(t, e.store, ref, hostileImage(t, "dev", host))
	cfg := e.config("attacker", "/bin/true")
	cfg.Image = ref
	c, err := e.rt.StartContainer(context.Background(), cfg)
	if err == nil {
		e.waitExit(t, c.ID)
		t.Errorf("a container with /dev -> %s started", host)
	} else if want := "rootfs: mount /dev: image's /dev is a symlink to " + host + ": refused"; !strings.Contains(err.Error(), want) {
		t.Errorf("start error = %v\nwant it to contain %q", err, want)
	} else {
		t.Logf("refused: %v", err)
	}
	if ents, _ := os.ReadDir(host); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the container's /dev was made in the host directory %s: %v", host, names)
	}
	e.check(t)
}
