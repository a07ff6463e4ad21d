package main

import (
	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
)

func init() { registerCommand(newLogsCommand) }

func newLogsCommand(g *globalOptions) *cobra.Command {
	var namespace string
	opts := api.LogOptions{}
	cmd := &cobra.Command{
		Use:   "logs POD",
		Short: "Print a container's log (-f to follow)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().Logs(cmd.Context(), namespace, args[0], opts, g.stdout)
		},
	}
	f := cmd.Flags()
	addSocketFlag(f, g)
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace")
	f.StringVarP(&opts.Container, "container", "c", "", "container (default: the pod's first container)")
	f.BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new lines until the container exits")
	f.IntVar(&opts.TailLines, "tail", -1, "print only the last N lines")
	f.BoolVarP(&opts.Previous, "previous", "p", false, "the previous, terminated attempt of the container")
	f.BoolVar(&opts.Timestamps, "timestamps", false, "prefix each line with its time")
	return cmd
}
