package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux"
)

// Exit statuses shared by every command.
const (
	exitFailure = 1 // the command ran and found a problem
	exitUsage   = 2 // the command line is wrong
)

// defaultSocket is where the agent serves its API unless told otherwise.
const defaultSocket = linux.DefaultRunRoot + "/agent.sock"

// globalOptions are the settings commands share. Each command registers
// only the flags it uses (addSocketFlag, addRootFlags, addNetworkFlags);
// the config file and the environment fill in what the command line leaves
// out. All host-global names are here so that several agents and every
// test can run side by side.
type globalOptions struct {
	Config       string
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
	// args is the command line, kept so that SIGHUP can work out the
	// settings again from it, the config file and the environment.
	args []string
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
			if err := applySettings(cmd, g); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if err := g.setupLogging(); err != nil {
				return err
			}
			if p := cmd.Parent(); p != nil && p.Annotations[lowLevelGroup] != "" {
				return g.locateState(cmd)
			}
			return nil
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.Version = versionText()
	root.SetOut(stdout)
	root.SetErr(stderr)
	f := root.PersistentFlags()
	f.StringVar(&g.Config, "config", "", "settings `FILE`: YAML or JSON, keys are the long flag names of run (default "+
		defaultConfigPath+" when it exists, or $"+envConfig+"; \"\" for none)")
	f.StringVar(&g.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&g.LogFormat, "log-format", "", "log format: json or console (default: console on a terminal, else json)")
	for _, newCmd := range commandFactories {
		root.AddCommand(newCmd(g))
	}
	return root, g
}

// addSocketFlag is for the commands that talk to the running agent.
func addSocketFlag(f *pflag.FlagSet, g *globalOptions) {
	f.StringVar(&g.Socket, "socket", defaultSocket, "the agent's API socket (or $"+envSocket+")")
}

// addRootFlags is for the commands that read or write the runtime's state.
func addRootFlags(f *pflag.FlagSet, g *globalOptions) {
	f.StringVar(&g.Root, "root", linux.DefaultStateRoot, "state root: images, IP leases, volumes, logs")
	f.StringVar(&g.RunRoot, "run-root", linux.DefaultRunRoot, "run root: sandbox and container records (wiped at reboot)")
}

// addNetworkFlags is for the commands that make sandboxes and pull images:
// the host-global names, which every agent on a host must have its own of,
// and the limits that hold the node together.
func addNetworkFlags(f *pflag.FlagSet, g *globalOptions) {
	f.StringVar(&g.Bridge, "bridge", linux.DefaultBridge, "bridge the pod sandboxes attach to")
	f.StringVar(&g.Subnet, "subnet", linux.DefaultSubnet, "pod subnet; the bridge takes its first address")
	f.StringVar(&g.NetNSPrefix, "netns-prefix", linux.DefaultNetNSPrefix, "prefix of the named network namespaces under /run/netns")
	f.StringVar(&g.CgroupParent, "cgroup-parent", "", "cgroup under which pod cgroups are made (default: below the agent's own cgroup)")
	f.StringVar(&g.NFTable, "nft-table", linux.DefaultNFTable, "nftables table holding the agent's rules")
	addSysctlFlag(f, g)
	addLimitFlags(f, &g.Limits)
}

func addSysctlFlag(f *pflag.FlagSet, g *globalOptions) {
	f.BoolVar(&g.AllowUnsafeSysctls, "allow-unsafe-sysctls", false, "let pods set namespaced sysctls beyond Kubernetes' safe list")
}

// run is the whole program; main and tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root, g := newRootCommand(stdout, stderr)
	g.args = args
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

// logTimeFormat is RFC 3339 with milliseconds: sortable, unambiguous, and
// fine enough to order the steps of a 25 ms pod start.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// setupLogging builds the logger from --log-level and --log-format. The
// level is zerolog's global one so that SIGHUP can change it for every
// component holding a copy of the logger.
func (g *globalOptions) setupLogging() error {
	level, err := zerolog.ParseLevel(g.LogLevel)
	if err != nil || g.LogLevel == "" {
		return &exitError{code: exitUsage, err: fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", g.LogLevel)}
	}
	// Process-wide choices, made once here for every package's logger:
	// times in UTC with milliseconds, durations as Go duration strings
	// ("14.04ms") so that no number goes without its unit.
	zerolog.TimeFieldFormat = logTimeFormat
	zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
	zerolog.DurationFieldFormat = zerolog.DurationFormatString
	var w io.Writer = g.stderr
	term := isTerminal(g.stderr)
	format := g.LogFormat
	if format == "" {
		format = "json"
		if term {
			format = "console"
		}
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: g.stderr, NoColor: !term || noColor(), TimeFormat: logTimeFormat, TimeLocation: time.UTC}
	default:
		return &exitError{code: exitUsage, err: fmt.Errorf("--log-format: %q is not json or console", g.LogFormat)}
	}
	zerolog.SetGlobalLevel(level)
	g.log = zerolog.New(w).With().Timestamp().Logger()
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// noColor follows https://no-color.org: NO_COLOR set and not empty.
func noColor() bool { return os.Getenv("NO_COLOR") != "" }

// linuxConfig is the runtime configuration the settings describe.
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
