package main

import (
	"fmt"
	goruntime "runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set by the linker: -X main.version=... -X main.commit=...
var (
	version = "dev"
	commit  = ""
)

func init() { registerCommand(newVersionCommand) }

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version (as --version does)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(g.stdout, versionText())
			return nil
		},
	}
}

// buildCommit is the commit the binary was built from: -X main.commit,
// else the build's VCS information, else "".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

// versionText is what `version` and `--version` print.
func versionText() string {
	c := buildCommit()
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("pelagos-agent %s\ncommit: %s\ngo: %s %s/%s", version, c, goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
}
