package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
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

func status(sb *runtime.Sandbox) string {
	if sb.State == runtime.SandboxReady {
		return "running"
	}
	return "dead"
}

func newSandboxListCommand(g *globalOptions) *cobra.Command {
	o := &listOptions{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls [-o table|json|yaml] [--no-trunc] [-q]",
		Aliases: []string{"list"},
		Short:   "List sandboxes: ID NAME NAMESPACE STATUS IP NS_NAME CREATED (status running or dead)",
		Long: `List sandboxes. -o json and -o yaml print each as sandbox inspect does
(the runtime's fields, camelCase); the table cuts IDs to 13 characters
unless --no-trunc, and any unique beginning of an ID names a sandbox.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				// Printed here, not by cobra, which would write it into
				// the JSON on stdout.
				fmt.Fprintln(g.stderr, "Flag --json has been deprecated, use -o json")
				o.output = "json"
			}
			if err := checkOutput(o.output); err != nil {
				return err
			}
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			list, err := rt.ListSandboxes(cmd.Context())
			if err != nil {
				return err
			}
			return printSandboxes(g.stdout, list, o, clock())
		},
	}
	addListFlags(cmd, o)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	_ = cmd.Flags().MarkHidden("json")
	return cmd
}

func printSandboxes(w io.Writer, list []*runtime.Sandbox, o *listOptions, now time.Time) error {
	return printList(w, list, o, func(sb *runtime.Sandbox) string { return sb.ID },
		"ID\tNAME\tNAMESPACE\tSTATUS\tIP\tNS_NAME\tCREATED", func(sb *runtime.Sandbox) string {
			return strings.Join([]string{o.id(sb.ID), sb.Pod.Name, sb.Pod.Namespace, status(sb), dash(sb.IP),
				dash(sb.NetNSName), since(sb.CreatedAt, now)}, "\t")
		})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// resolveSandbox finds a sandbox by ID, else by name, else by the unique
// beginning of its ID (tables show 13 characters). The argument is
// checked before it is used in any path.
func resolveSandbox(ctx context.Context, rt runtime.Runtime, arg string) (*runtime.Sandbox, error) {
	if arg == "" || arg == "." || arg == ".." || strings.ContainsAny(arg, "/\\\x00") {
		return nil, &exitError{code: exitFailure, err: fmt.Errorf("sandbox %q: not an ID or name", arg)}
	}
	list, err := rt.ListSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	var byName, byPrefix []*runtime.Sandbox
	for _, sb := range list {
		if sb.ID == arg {
			return sb, nil
		}
		if sb.Pod.Name == arg {
			byName = append(byName, sb)
		}
		if strings.HasPrefix(sb.ID, arg) {
			byPrefix = append(byPrefix, sb)
		}
	}
	if len(byName) > 0 {
		return onlyOne("sandbox name", arg, byName, func(sb *runtime.Sandbox) string { return sb.ID })
	}
	return onlyOne("sandbox ID prefix", arg, byPrefix, func(sb *runtime.Sandbox) string { return sb.ID })
}

// onlyOne is the one object an argument names among matches, or an error
// that says there is none, or which IDs to choose from.
func onlyOne[T any](what, arg string, matches []T, id func(T) string) (T, error) {
	var zero T
	switch len(matches) {
	case 0:
		kind, _, _ := strings.Cut(what, " ")
		return zero, &exitError{code: exitFailure, err: fmt.Errorf("%s %q: %w", kind, arg, runtime.ErrNotFound)}
	case 1:
		return matches[0], nil
	}
	ids := make([]string, 0, len(matches))
	for _, m := range matches {
		ids = append(ids, id(m))
	}
	return zero, &exitError{code: exitFailure, err: fmt.Errorf("%s %q is ambiguous: use an ID (%s)", what, arg, strings.Join(ids, ", "))}
}

func newSandboxRemoveCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:               "rm ID|NAME",
		Aliases:           []string{"remove"},
		Short:             "Remove a sandbox and everything it made",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSandboxes(g),
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
	var output string
	cmd := &cobra.Command{
		Use:               "inspect ID|NAME...",
		Short:             "Print sandboxes (-o json, yaml or table); one as an object, several as a list",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			var sbs []*runtime.Sandbox
			for _, arg := range args {
				sb, err := resolveSandbox(cmd.Context(), rt, arg)
				if err != nil {
					return err
				}
				sbs = append(sbs, sb)
			}
			return printInspected(g.stdout, sbs, output, sandboxFields)
		},
	}
	addInspectOutput(cmd, &output)
	return cmd
}

func sandboxFields(sb *runtime.Sandbox) []field {
	return []field{
		{"ID", sb.ID}, {"Name", sb.Pod.Name}, {"Namespace", sb.Pod.Namespace}, {"UID", dash(sb.UID)},
		{"State", string(sb.State)}, {"Reason", dash(sb.Reason)}, {"Created", sb.CreatedAt.UTC().Format(time.RFC3339)},
		{"IP", dash(sb.IP)}, {"Netns", dash(sb.NetNSPath)}, {"Veth", dash(sb.VethHost)},
		{"Pause PID", strconv.Itoa(sb.PausePID)}, {"Cgroup", dash(sb.CgroupPath)},
		{"Labels", keyValues(sb.Labels)}, {"Annotations", keyValues(sb.Annotations)},
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
