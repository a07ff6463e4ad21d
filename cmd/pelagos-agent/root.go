package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux"
)

// Exit statuses shared by every command.
const (
	exitFailure = 1 // the command ran and found a problem
	exitUsage   = 2 // the command line is wrong
)

// globalOptions are the flags every command shares. All host-global names are
// here so that several agents and every test can run side by side.
type globalOptions struct {
	Root         string
	RunRoot      string
	Socket       string
	LogLevel     string
	LogFormat    string
	Bridge       string
	Subnet       string
	NetNSPrefix  string
	CgroupParent string
	NFTable      string
	// AllowUnsafeSysctls lets pods set namespaced sysctls outside
	// Kubernetes' safe list (never non-namespaced ones).
	AllowUnsafeSysctls bool
	Limits             limitOptions

	stdout, stderr io.Writer
	log            zerolog.Logger
}

// commandFactory builds one top-level subcommand. Each command group lives in
// its own file and registers itself from init, so the groups stay independent.
type commandFactory func(g *globalOptions) *cobra.Command

var commandFactories []commandFactory

func registerCommand(f commandFactory) { commandFactories = append(commandFactories, f) }

func newRootCommand(stdout, stderr io.Writer) (*cobra.Command, *globalOptions) {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "pelagos-agent",
		Short:         "Run Kubernetes-style pods on a Linux node without Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setupLogging()
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	f := root.PersistentFlags()
	f.StringVar(&g.Root, "root", "/var/lib/pelagos", "state root: images, IP leases, volumes, logs")
	f.StringVar(&g.RunRoot, "run-root", "/run/pelagos", "run root: sandbox and container records (wiped at reboot)")
	f.StringVar(&g.Socket, "socket", "/run/pelagos/agent.sock", "the agent's API socket")
	f.StringVar(&g.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&g.LogFormat, "log-format", "", "log format: json or console (default: console on a terminal, else json)")
	f.StringVar(&g.Bridge, "bridge", "pelagos0", "bridge the pod sandboxes attach to")
	f.StringVar(&g.Subnet, "subnet", "10.88.0.0/16", "pod subnet; the bridge takes its first address")
	f.StringVar(&g.NetNSPrefix, "netns-prefix", "pelagos-", "prefix of the named network namespaces under /run/netns")
	f.StringVar(&g.CgroupParent, "cgroup-parent", "", "cgroup under which pod cgroups are made (default: below the agent's own cgroup)")
	f.StringVar(&g.NFTable, "nft-table", "pelagos", "nftables table holding the agent's rules")
	f.BoolVar(&g.AllowUnsafeSysctls, "allow-unsafe-sysctls", false, "let pods set namespaced sysctls beyond Kubernetes' safe list")
	addLimitFlags(f, &g.Limits)
	for _, newCmd := range commandFactories {
		root.AddCommand(newCmd(g))
	}
	return root, g
}

// run is the whole program; main and tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root, _ := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	err := root.ExecuteContext(ctx)
	if err != nil {
		if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "accepts ") ||
			strings.HasPrefix(err.Error(), "requires ") {
			err = &exitError{code: exitUsage, err: err}
		}
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, "Error:", msg)
		}
	}
	return err
}

func (g *globalOptions) setupLogging() error {
	level, err := zerolog.ParseLevel(g.LogLevel)
	if err != nil || g.LogLevel == "" {
		return &exitError{code: exitUsage, err: fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", g.LogLevel)}
	}
	var w io.Writer = g.stderr
	format := g.LogFormat
	if format == "" {
		format = "json"
		if f, ok := g.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: g.stderr}
	default:
		return &exitError{code: exitUsage, err: fmt.Errorf("--log-format: %q is not json or console", g.LogFormat)}
	}
	g.log = zerolog.New(w).Level(level).With().Timestamp().Logger()
	return nil
}

// linuxConfig is the runtime configuration the global flags describe.
func (g *globalOptions) linuxConfig() linux.Config {
	return linux.Config{
		StateRoot:    g.Root,
		RunRoot:      g.RunRoot,
		Bridge:       g.Bridge,
		Subnet:       g.Subnet,
		NetNSPrefix:  g.NetNSPrefix,
		CgroupParent: g.CgroupParent,
		NFTable:      g.NFTable,

		AllowUnsafeSysctls: g.AllowUnsafeSysctls,
		PodPidsLimit:       g.Limits.PodPidsLimit,
		ReservedPids:       g.Limits.ReservedPids,
		Logger:             g.log,
	}
}
