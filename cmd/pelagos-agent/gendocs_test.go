package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenDocs(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir := t.TempDir()
	root, _ := newRootCommand(io.Discard, io.Discard)
	if err := genDocs(root, dir); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"man/man1/pelagos-agent.1":            `.TH "PELAGOS-AGENT" "1" "Nov 2023"`,
		"man/man1/pelagos-agent-run.1":        `\fB--manifests\fP="/etc/pelagos/pods"`,
		"man/man1/pelagos-agent-sandbox-ls.1": `\fB--run-root\fP="/run/pelagos"`,
		"completions/pelagos-agent.bash":      "__start_pelagos-agent",
		"completions/_pelagos-agent":          "#compdef pelagos-agent",
		"completions/pelagos-agent.fish":      "complete -c pelagos-agent",
	} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: %v; want %q in it", file, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "man/man1/pelagos-agent-gen-docs.1")); err == nil {
		t.Error("the hidden gen-docs command has a man page")
	}
}
