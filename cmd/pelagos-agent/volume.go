package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

func init() { registerCommand(newVolumeCommand) }

// The volume commands show and remove persistent volumes: the node-local
// directories that persistentVolumeClaims name, which outlive their pods.
// They work on the state root directly, like the sandbox commands, and
// can run beside the agent.

func newVolumeCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "List, inspect and remove persistent volumes (what persistentVolumeClaims name)",
		Long: `A pod's persistentVolumeClaim is a directory of this node, named by the
claim in the pod's namespace, made on first use under the state root
(<root>/persistent-volumes/<namespace>/<name>/data). It outlives the pod,
so a recreated pod finds its data, and goes only with "volume rm", which
refuses while a pod uses it. A PersistentVolumeClaim document in the
manifest directory sizes it: a quota where the filesystem enforces one,
advisory elsewhere (see QUOTA).`,
	}
	addLowLevelFlags(cmd, g)
	cmd.AddCommand(newVolumeListCommand(g), newVolumeInspectCommand(g), newVolumeRemoveCommand(g))
	return cmd
}

// volumeRef reads NAME or NAMESPACE/NAME, the namespace defaulting to ns.
func volumeRef(arg, ns string) (string, string, error) {
	name := arg
	if before, after, ok := strings.Cut(arg, "/"); ok {
		ns, name = before, after
	}
	if ns == "" || name == "" || strings.ContainsAny(ns+name, "/\\\x00") || ns == "." || ns == ".." || name == "." || name == ".." {
		return "", "", &exitError{code: exitUsage, err: fmt.Errorf("volume %q: want NAME or NAMESPACE/NAME", arg)}
	}
	return ns, name, nil
}

// quotaText is the QUOTA column: how the size is held.
func quotaText(q volume.Quota) string {
	switch {
	case q.Size == 0:
		return "none"
	case q.Enforced:
		return "enforced"
	}
	return "advisory"
}

func sizeText(n int64) string {
	if n == 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%ci", v, "KMGTPE"[i])
}

func newVolumeListCommand(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls [-o table|json|yaml]",
		Aliases: []string{"list"},
		Short:   "List persistent volumes: NAMESPACE NAME SIZE QUOTA USED PODS AGE",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			vols, err := rt.PersistentVolumes()
			if err != nil {
				return err
			}
			if output != "table" {
				return printStructured(g.stdout, nonNil(vols), output)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tNAME\tSIZE\tQUOTA\tUSED\tPODS\tAGE")
			for _, v := range vols {
				ageText := "<unknown>"
				if !v.Created.IsZero() {
					ageText = duration.HumanDuration(clock().Sub(v.Created))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", v.Namespace, v.Name, sizeText(v.Quota.Size), quotaText(v.Quota),
					sizeText(v.Used), len(v.UsedBy), ageText)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func newVolumeInspectCommand(g *globalOptions) *cobra.Command {
	var ns, output string
	cmd := &cobra.Command{
		Use:   "inspect NAME|NAMESPACE/NAME",
		Short: "Print a persistent volume: its path, size, how the size is held, what it uses, which pods use it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ns, name, err := volumeRef(args[0], ns)
			if err != nil {
				return err
			}
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			v, err := rt.PersistentVolume(ns, name)
			if errors.Is(err, runtime.ErrNotFound) {
				return &exitError{code: exitFailure, err: fmt.Errorf("persistent volume %s/%s not found", ns, name)}
			}
			if err != nil {
				return err
			}
			return printInspected(g.stdout, []*volume.PersistentVolume{v}, output, volumeFields)
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "the claim's namespace")
	addInspectOutput(cmd, &output)
	return cmd
}

func newVolumeRemoveCommand(g *globalOptions) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:     "rm NAME|NAMESPACE/NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove persistent volumes and their data; refused for a volume a pod uses",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.sandboxRuntime()
			if err != nil {
				return err
			}
			var errs []error
			for _, a := range args {
				ns, name, err := volumeRef(a, ns)
				if err != nil {
					return err
				}
				if _, err := rt.PersistentVolume(ns, name); errors.Is(err, runtime.ErrNotFound) {
					errs = append(errs, fmt.Errorf("persistent volume %s/%s not found", ns, name))
					continue
				}
				if err := rt.RemovePersistentVolume(ns, name); err != nil {
					if errors.Is(err, runtime.ErrConflict) {
						err = fmt.Errorf("%w (delete the pods that use it first)", err)
					}
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(g.stdout, "%s/%s\n", ns, name)
			}
			if len(errs) > 0 {
				return &exitError{code: exitFailure, err: errors.Join(errs...)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "the claims' namespace")
	return cmd
}

func volumeFields(v *volume.PersistentVolume) []field {
	usedBy := strings.Join(v.UsedBy, ",")
	if usedBy == "" {
		usedBy = "<none>"
	}
	return []field{
		{"Name", v.Name}, {"Namespace", v.Namespace}, {"Path", v.Path}, {"Created", v.Created.UTC().Format(time.RFC3339)},
		{"Size", sizeText(v.Quota.Size)}, {"Quota", quotaText(v.Quota)}, {"Used", sizeText(v.Used)}, {"Used By", usedBy},
	}
}
