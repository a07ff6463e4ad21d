package record

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadRefusesWhatCannotBeUsed(t *testing.T) {
	dir := t.TempDir()
	cdir := filepath.Join(dir, "c1")
	if err := os.Mkdir(cdir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty", "", "empty file"},
		{"garbage", "\x00\xffzz", "not a JSON record"},
		{"truncated", `{"version":1,"id":"c1","sandboxID":`, "not a JSON record"},
		{"no version", `{"id":"c1","sandboxID":"s"}`, "no version"},
		{"future", `{"version":2,"id":"c1","sandboxID":"s"}`, "version 2 is newer than this agent's (1)"},
		{"another container", `{"version":1,"id":"c2","sandboxID":"s"}`, `names container "c2"`},
		{"no sandbox", `{"version":1,"id":"c1"}`, `of sandbox ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(cdir, ContainerFile), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadContainer(cdir)
			var ce *CorruptError
			if !errors.As(err, &ce) || !IsCorrupt(err) || !strings.Contains(err.Error(), tc.want) || ce.Path != filepath.Join(cdir, ContainerFile) {
				t.Fatalf("ReadContainer: %v, want a CorruptError of %s with %q", err, ContainerFile, tc.want)
			}
		})
	}
	if err := os.WriteFile(filepath.Join(cdir, ContainerFile), []byte(`{"version":1,"id":"c1","sandboxID":"s","dir":"`+cdir+`","runRoot":"`+dir+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := ReadContainer(cdir)
	if err != nil {
		t.Fatal(err)
	}
	// Start and exit records of the first shims carry no version: read as 1.
	if err := os.WriteFile(filepath.Join(cdir, StateFile), []byte(`{"shim":{"pid":1,"start":2}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.State(); err != nil {
		t.Errorf("a start record without a version: %v", err)
	}
	os.MkdirAll(ExitsDir(dir), 0o700)
	if err := os.WriteFile(ExitPath(dir, "c1"), []byte(`{"version":3,"containerID":"c1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exit(); !IsCorrupt(err) {
		t.Errorf("an exit record of version 3: %v, want corrupt", err)
	}
	if _, err := ReadContainer(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) || IsCorrupt(err) {
		t.Errorf("a missing record: %v, want not-exist", err)
	}
}
