package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { registerCommand(newGenDocsCommand) }

// newGenDocsCommand writes what a package ships besides the binary: a man
// page per command and the shell completions. Hidden: `make package` runs
// it on the binary it packages, so the pages match that binary's flags.
func newGenDocsCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-docs DIR",
		Short:  "Write man pages (DIR/man/man1) and shell completions (DIR/completions) for packaging",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return genDocs(cmd.Root(), args[0])
		},
	}
}

func genDocs(root *cobra.Command, dir string) error {
	// Reproducible builds pin the date through SOURCE_DATE_EPOCH.
	date := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		date = time.Unix(sec, 0).UTC()
	}
	man := filepath.Join(dir, "man", "man1")
	comp := filepath.Join(dir, "completions")
	for _, d := range []string{man, comp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{Title: "PELAGOS-AGENT", Section: "1", Date: &date,
		Source: "pelagos-agent " + version, Manual: "pelagos-agent manual"}
	if err := doc.GenManTree(root, header, man); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	for file, gen := range map[string]func(string) error{
		"pelagos-agent.bash": func(p string) error { return root.GenBashCompletionFileV2(p, true) },
		"_pelagos-agent":     root.GenZshCompletionFile,
		"pelagos-agent.fish": func(p string) error { return root.GenFishCompletionFile(p, true) },
	} {
		if err := gen(filepath.Join(comp, file)); err != nil {
			return fmt.Errorf("completion %s: %w", file, err)
		}
	}
	return nil
}
