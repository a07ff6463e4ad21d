package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
)

func init() { registerCommand(newDescribeCommand) }

func newDescribeCommand(g *globalOptions) *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "describe pod NAME",
		Short: "Show a pod's status, containers and recent events",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if r := args[0]; r != "pod" && r != "pods" && r != "po" {
				return &exitError{code: exitUsage, err: fmt.Errorf("unknown resource %q: only pod", r)}
			}
			c := g.client()
			p, err := c.Pod(cmd.Context(), namespace, args[1])
			if err != nil {
				return err
			}
			evs, err := c.Events(cmd.Context(), namespace, args[1])
			if err != nil {
				return err
			}
			describePod(g.stdout, p, evs, time.Now())
			return nil
		},
	}
	addSocketFlag(cmd.Flags(), g)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace")
	return cmd
}

func describePod(w io.Writer, p *reconcile.Pod, evs []reconcile.Event, now time.Time) {
	st := p.Status
	kv := func(k, v string) { fmt.Fprintf(w, "%-14s %s\n", k+":", v) }
	kv("Name", p.Metadata.Name)
	kv("Namespace", p.Metadata.Namespace)
	if p.Metadata.CreationTimestamp != nil {
		kv("Start Time", p.Metadata.CreationTimestamp.Format(time.RFC1123Z))
	}
	kv("Labels", mapLine(p.Metadata.Labels))
	kv("Status", podStatus(*p))
	if st.Message != "" {
		kv("Message", st.Message) // why it waits: OutOfCapacity, NodeMismatch...
	}
	for _, o := range p.Metadata.OwnerReferences {
		kv("Controlled By", o.Kind+"/"+o.Name)
	}
	kv("Phase", st.Phase)
	kv("IP", dashIfEmpty(st.PodIP))
	kv("QoS Class", dashIfEmpty(st.QOSClass))
	kv("Source", dashIfEmpty(st.Pelagos.SourceFile))
	kv("Sandbox", dashIfEmpty(st.Pelagos.SandboxID))
	kv("Netns", dashIfEmpty(st.Pelagos.NetNS))
	if st.Pelagos.PausePID != 0 {
		kv("Pause PID", fmt.Sprint(st.Pelagos.PausePID))
	}
	if e := st.Pelagos.LastError; e != nil {
		msg := e.Message
		if st.Pelagos.Stale {
			msg += " (the pod runs its last good version)"
		}
		kv("Last Error", msg)
	}
	section := func(title string, cs []reconcile.ContainerStatus) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintln(w, title+":")
		for _, c := range cs {
			fmt.Fprintf(w, "  %s:\n", c.Name)
			fmt.Fprintf(w, "    Container ID:  %s\n", dashIfEmpty(c.ContainerID))
			fmt.Fprintf(w, "    Image:         %s\n", c.Image)
			fmt.Fprintf(w, "    Image ID:      %s\n", dashIfEmpty(c.ImageID))
			describeState(w, "    State:         ", c.State)
			if c.LastState.Terminated != nil || c.LastState.Waiting != nil || c.LastState.Running != nil {
				describeState(w, "    Last State:    ", c.LastState)
			}
			fmt.Fprintf(w, "    Ready:         %v\n", c.Ready)
			fmt.Fprintf(w, "    Restart Count: %d\n", c.RestartCount)
		}
	}
	section("Init Containers", st.InitContainerStatuses)
	section("Containers", st.ContainerStatuses)
	if len(st.Conditions) > 0 {
		fmt.Fprintln(w, "Conditions:")
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  Type\tStatus")
		for _, c := range st.Conditions {
			fmt.Fprintf(tw, "  %s\t%s\n", c.Type, c.Status)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "Events:")
	if len(evs) == 0 {
		fmt.Fprintln(w, "  <none>")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  Type\tReason\tAge\tFrom\tMessage")
	fmt.Fprintln(tw, "  ----\t------\t----\t----\t-------")
	for _, ev := range evs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", ev.Type, ev.Reason, seen(ev, now), "pelagos-agent", ev.Message)
	}
	tw.Flush()
}

func describeState(w io.Writer, prefix string, s reconcile.ContainerState) {
	switch {
	case s.Running != nil:
		fmt.Fprintf(w, "%sRunning\n      Started:     %s\n", prefix, s.Running.StartedAt.Format(time.RFC1123Z))
	case s.Waiting != nil:
		fmt.Fprintf(w, "%sWaiting\n      Reason:      %s\n", prefix, s.Waiting.Reason)
		if s.Waiting.Message != "" {
			fmt.Fprintf(w, "      Message:     %s\n", s.Waiting.Message)
		}
	case s.Terminated != nil:
		t := s.Terminated
		fmt.Fprintf(w, "%sTerminated\n      Reason:      %s\n      Exit Code:   %d\n", prefix, t.Reason, t.ExitCode)
		if !t.StartedAt.IsZero() {
			fmt.Fprintf(w, "      Started:     %s\n", t.StartedAt.Format(time.RFC1123Z))
		}
		if !t.FinishedAt.IsZero() {
			fmt.Fprintf(w, "      Finished:    %s\n", t.FinishedAt.Format(time.RFC1123Z))
		}
		if t.Message != "" {
			fmt.Fprintf(w, "      Message:     %s\n", t.Message)
		}
	default:
		fmt.Fprintf(w, "%s<none>\n", prefix)
	}
}

func mapLine(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
