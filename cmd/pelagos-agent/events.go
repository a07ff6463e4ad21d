package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
)

func init() { registerCommand(newEventsCommand) }

func newEventsCommand(g *globalOptions) *cobra.Command {
	var watch bool
	var namespace string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List the agent's recent events (--watch to stream)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := g.client()
			if watch {
				fmt.Fprintln(g.stdout, "LAST SEEN\tTYPE\tREASON\tOBJECT\tMESSAGE")
				return c.WatchEvents(cmd.Context(), func(ev reconcile.Event) error {
					if namespace != "" && ev.InvolvedObject.Namespace != namespace && ev.InvolvedObject.Kind == "Pod" {
						return nil
					}
					_, err := fmt.Fprintf(g.stdout, "%s\t%s\t%s\t%s\t%s\n", ev.LastTimestamp.Local().Format("15:04:05"),
						ev.Type, ev.Reason, object(ev.InvolvedObject), ev.Message)
					return err
				})
			}
			evs, err := c.Events(cmd.Context(), namespace, "")
			if err != nil {
				return err
			}
			printEvents(g.stdout, evs, time.Now())
			if len(evs) == 0 {
				fmt.Fprintln(g.stderr, "No events found.")
			}
			return nil
		},
	}
	addSocketFlag(cmd.Flags(), g)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep printing events as they happen")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "only events about pods of this namespace")
	return cmd
}

func object(o reconcile.ObjectRef) string {
	s := strings.ToLower(o.Kind) + " " + o.Name
	if o.Kind == "Pod" {
		s = "pod/" + o.Name
		if o.Namespace != "" && o.Namespace != "default" {
			s = "pod/" + o.Namespace + "/" + o.Name
		}
	}
	if o.FieldPath != "" {
		s += " " + o.FieldPath
	}
	return s
}

func printEvents(w io.Writer, evs []reconcile.Event, now time.Time) {
	if len(evs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "LAST SEEN\tTYPE\tREASON\tOBJECT\tMESSAGE")
	for _, ev := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", seen(ev, now), ev.Type, ev.Reason, object(ev.InvolvedObject), ev.Message)
	}
	tw.Flush()
}

// seen is kubectl's way of showing an aggregated event: "8s (x7 over 20s)",
// the age of the last occurrence, then the count over the age of the first.
func seen(ev reconcile.Event, now time.Time) string {
	a := age(now.Sub(ev.LastTimestamp))
	if ev.Count > 1 {
		a = fmt.Sprintf("%s (x%d over %s)", a, ev.Count, age(now.Sub(ev.FirstTimestamp)))
	}
	return a
}
