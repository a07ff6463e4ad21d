package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
)

func init() { registerCommand(newLogsCommand) }

func newLogsCommand(g *globalOptions) *cobra.Command {
	var namespace string
	opts := api.LogOptions{}
	cmd := &cobra.Command{
		Use:               "logs POD",
		Short:             "Print a container's log (-f to follow)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeOnePod(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if opts.Container == "" {
				p, err := c.Pod(cmd.Context(), namespace, args[0])
				if err != nil {
					return err
				}
				opts.Container = defaultContainer(p, g.stderr)
			}
			return c.Logs(cmd.Context(), namespace, args[0], opts, g.stdout)
		},
	}
	f := cmd.Flags()
	addSocketFlag(f, g)
	addNamespaceFlags(cmd, g, &namespace, nil)
	f.StringVarP(&opts.Container, "container", "c", "", "container (default: the pod's default-container annotation, else its first container)")
	_ = cmd.RegisterFlagCompletionFunc("container", completeContainerFlag(g))
	f.BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new lines until the container exits")
	f.IntVar(&opts.TailLines, "tail", -1, "print only the last N lines")
	f.BoolVarP(&opts.Previous, "previous", "p", false, "the previous, terminated attempt of the container")
	f.BoolVar(&opts.Timestamps, "timestamps", false, "prefix each line with its time")
	return cmd
}

// defaultContainer picks the container as kubectl does: the pod's
// kubectl.kubernetes.io/default-container annotation, else the first one,
// saying so when there was a choice.
func defaultContainer(p *reconcile.Pod, notice io.Writer) string {
	var names, all []string
	for _, c := range p.Status.ContainerStatuses {
		names = append(names, c.Name)
		all = append(all, c.Name)
	}
	for _, c := range p.Status.InitContainerStatuses {
		all = append(all, c.Name+" (init)")
	}
	if d := p.Metadata.Annotations[kubeapi.DefaultContainerAnnotation]; d != "" {
		if slices.Contains(names, d) {
			return d
		}
		if len(names) > 0 {
			fmt.Fprintf(notice, "Default container name %q in annotation not found in a pod, using %q instead.\n", d, names[0])
		}
	}
	if len(names) == 0 {
		return ""
	}
	if len(all) > 1 {
		fmt.Fprintf(notice, "Defaulted container %q out of: %s\n", names[0], strings.Join(all, ", "))
	}
	return names[0]
}
