package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
)

func init() { registerCommand(newEventsCommand) }

func newEventsCommand(g *globalOptions) *cobra.Command {
	var watch, all bool
	var namespace string
	cmd := &cobra.Command{
		Use:   "events [-n NAMESPACE | -A] [--watch]",
		Short: "List the agent's recent events (--watch to stream)",
		Long: `List the events of a namespace ("default" unless -n; -A for every
namespace), as kubectl get events does. The node's events are in the
default namespace, as kubelet records them. A repeated event is listed once
with its count: "8s (x7 over 20s)".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := g.client()
			ns := namespace
			if all {
				ns = ""
			}
			if watch {
				fmt.Fprintln(g.stdout, watchRow(eventsHeader(all)))
				return c.WatchNamespaceEvents(cmd.Context(), ns, func(ev reconcile.Event) error {
					_, err := fmt.Fprintln(g.stdout, watchRow(eventRow(ev, all, ev.LastTimestamp.Local().Format("15:04:05"))))
					return err
				})
			}
			evs, err := c.Events(cmd.Context(), ns, "")
			if err != nil {
				return err
			}
			printEvents(g.stdout, evs, all, clock())
			switch {
			case len(evs) > 0:
			case all:
				fmt.Fprintln(g.stderr, "No events found.")
			default:
				fmt.Fprintf(g.stderr, "No events found in %s namespace.\n", namespace)
			}
			return nil
		},
	}
	addSocketFlag(cmd.Flags(), g)
	addNamespaceFlags(cmd, g, &namespace, &all)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep printing events as they happen")
	return cmd
}

// watchRow lays out a tab-separated row in columns of fixed widths: a
// stream cannot wait for the lines that would set them. A wider value
// pushes the rest of its line along.
func watchRow(row string) string {
	cells := strings.Split(row, "\t")
	widths := []int{9, 6, 20, 34}
	if len(cells) == 6 {
		widths = append([]int{12}, widths...)
	}
	var b strings.Builder
	for i, c := range cells {
		b.WriteString(c)
		if i < len(widths) {
			b.WriteString(strings.Repeat(" ", max(widths[i]-len(c), 0)+3))
		}
	}
	return b.String()
}

func eventsHeader(withNS bool) string {
	h := "LAST SEEN\tTYPE\tREASON\tOBJECT\tMESSAGE"
	if withNS {
		h = "NAMESPACE\t" + h
	}
	return h
}

// eventNamespace is the namespace an event is listed in: its object's,
// or the default one for the node's, as kubelet records them.
func eventNamespace(ev reconcile.Event) string {
	if ns := ev.InvolvedObject.Namespace; ns != "" {
		return ns
	}
	return "default"
}

func eventRow(ev reconcile.Event, withNS bool, seen string) string {
	row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", seen, ev.Type, ev.Reason, object(ev.InvolvedObject), terminalEscaper.Replace(ev.Message))
	if withNS {
		row = eventNamespace(ev) + "\t" + row
	}
	return row
}

// object names an event's object as kubectl's OBJECT column does
// (pod/web), with the container's field path when there is one. A
// manifest file's events name it by its path.
func object(o reconcile.ObjectRef) string {
	sep := "/"
	if strings.HasPrefix(o.Name, "/") {
		sep = " "
	}
	s := strings.ToLower(o.Kind) + sep + o.Name
	if o.FieldPath != "" {
		s += " " + o.FieldPath
	}
	return s
}

// printEvents prints events in the order they were last seen, the first
// column, as kubectl events does.
func printEvents(w io.Writer, evs []reconcile.Event, withNS bool, now time.Time) {
	if len(evs) == 0 {
		return
	}
	evs = slices.Clone(evs)
	slices.SortStableFunc(evs, func(a, b reconcile.Event) int { return a.LastTimestamp.Compare(b.LastTimestamp) })
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, eventsHeader(withNS))
	for _, ev := range evs {
		fmt.Fprintln(tw, eventRow(ev, withNS, seen(ev, now)))
	}
	tw.Flush()
}

// seen is kubectl's way of showing an aggregated event: "8s (x7 over 20s)",
// the age of the last occurrence, then the count over the age of the first.
func seen(ev reconcile.Event, now time.Time) string {
	a := duration.HumanDuration(now.Sub(ev.LastTimestamp))
	if ev.Count > 1 {
		a = fmt.Sprintf("%s (x%d over %s)", a, ev.Count, duration.HumanDuration(now.Sub(ev.FirstTimestamp)))
	}
	return a
}
