package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux"
)

func init() { registerCommand(newSandboxCommand) }

// cliNamespace is the pod namespace of sandboxes made by hand with
// `sandbox create`; the agent's own pods carry their manifests' namespaces.
const cliNamespace = "default"

func newSandboxCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Create, list, inspect and remove pod sandboxes directly",
		Long: `Pod sandboxes are what every pod runs in: a network namespace on the
bridge, with IPC and UTS namespaces held open by a small pause process.
These commands work on the runtime directly, for debugging and scripts.`,
	}
	addLowLevelFlags(cmd, g)
	cmd.AddCommand(newSandboxCreateCommand(g), newSandboxListCommand(g), newSandboxRemoveCommand(g),
		newSandboxInspectCommand(g), newSandboxGCCommand(g))
	return cmd
}

func (g *globalOptions) sandboxRuntime() (*linux.Runtime, error) {
	rt, err := linux.New(g.linuxConfig())
	if err != nil {
		return nil, err
	}
	return rt, nil
}

func newSandboxCreateCommand(g *globalOptions) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "create [--name NAME]",
		Short: "Create a sandbox and print its ID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			var b [8]byte
			rand.Read(b[:])
			id := hex.EncodeToString(b[:])
			if name == "" {
				name = id
			}
			sb, err := rt.CreateSandbox(cmd.Context(), &runtime.SandboxConfig{
				ID:  id,
				Pod: runtime.PodKey{Namespace: cliNamespace, Name: name},
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, sb.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "sandbox (pod) name; also the hostname (default: the ID)")
	return cmd
}

// sandboxListEntry is one element of `sandbox ls --json`. The first six
// names are the seed's and stay as they are: scripts read them.
type sandboxListEntry struct {
	ID          string                   `json:"id"`
	Name        string                   `json:"name"`
	PausePID    int                      `json:"pause_pid"`
	NSName      string                   `json:"ns_name"`
	VethHost    string                   `json:"veth_host"`
	ContainerIP string                   `json:"container_ip"`
	Namespace   string                   `json:"namespace"`
	Status      string                   `json:"status"`
	Reason      string                   `json:"reason,omitempty"`
	NetNSPath   string                   `json:"netns_path,omitempty"`
	Namespaces  runtime.NamespaceOptions `json:"namespaces"`
	CreatedAt   time.Time                `json:"created_at"`
}

func status(sb *runtime.Sandbox) string {
	if sb.State == runtime.SandboxReady {
		return "running"
	}
	return "dead"
}

func newSandboxListCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls [--json]",
		Aliases: []string{"list"},
		Short:   "List sandboxes: ID NAME STATUS IP NS_NAME (status running or dead)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			list, err := rt.ListSandboxes(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]sandboxListEntry, 0, len(list))
				for _, sb := range list {
					out = append(out, sandboxListEntry{
						ID: sb.ID, Name: sb.Pod.Name, PausePID: sb.PausePID, NSName: sb.NetNSName,
						VethHost: sb.VethHost, ContainerIP: sb.IP, Namespace: sb.Pod.Namespace,
						Status: status(sb), Reason: sb.Reason, NetNSPath: sb.NetNSPath,
						Namespaces: sb.Namespaces, CreatedAt: sb.CreatedAt,
					})
				}
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tIP\tNS_NAME")
			for _, sb := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", sb.ID, sb.Pod.Name, status(sb), dash(sb.IP), dash(sb.NetNSName))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// resolveSandbox finds a sandbox by ID, else by name. The argument is
// checked before it is used in any path.
func resolveSandbox(ctx context.Context, rt runtime.Runtime, arg string) (*runtime.Sandbox, error) {
	if arg == "" || arg == "." || arg == ".." || strings.ContainsAny(arg, "/\\\x00") {
		return nil, &exitError{code: exitFailure, err: fmt.Errorf("sandbox %q: not an ID or name", arg)}
	}
	list, err := rt.ListSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	var byName []*runtime.Sandbox
	for _, sb := range list {
		if sb.ID == arg {
			return sb, nil
		}
		if sb.Pod.Name == arg {
			byName = append(byName, sb)
		}
	}
	switch len(byName) {
	case 0:
		return nil, &exitError{code: exitFailure, err: fmt.Errorf("sandbox %q: %w", arg, runtime.ErrNotFound)}
	case 1:
		return byName[0], nil
	}
	var ids []string
	for _, sb := range byName {
		ids = append(ids, sb.ID)
	}
	return nil, &exitError{code: exitFailure, err: fmt.Errorf("sandbox name %q is ambiguous: use an ID (%s)", arg, strings.Join(ids, ", "))}
}

func newSandboxRemoveCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID|NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a sandbox and everything it made",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			sb, err := resolveSandbox(cmd.Context(), rt, args[0])
			if err != nil {
				return err
			}
			return rt.RemoveSandbox(cmd.Context(), sb.ID)
		},
	}
}

func newSandboxInspectCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect ID|NAME",
		Short: "Print a sandbox as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			sb, err := resolveSandbox(cmd.Context(), rt, args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(sb)
		},
	}
}

func newSandboxGCCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Remove what a crash left behind (half-made or dead sandboxes, orphaned netns, veths, leases)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			rep, err := rt.GC(cmd.Context())
			if rep != nil {
				for _, line := range rep.Removed {
					fmt.Fprintln(g.stdout, "removed", line)
				}
			}
			return err
		},
	}
}
