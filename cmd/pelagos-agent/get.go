package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
)

func init() { registerCommand(newGetCommand) }

func (g *globalOptions) client() *api.Client { return api.NewClient(g.Socket) }

func newGetCommand(g *globalOptions) *cobra.Command {
	var output, namespace string
	var all bool
	cmd := &cobra.Command{
		Use:               "get pods|deployments|statefulsets|daemonsets|jobs [NAME...]",
		Short:             "List pods or workloads, kubectl-style (-o wide|json|yaml)",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeResourceThenPods(g, "pods", "deployments", "statefulsets", "daemonsets", "jobs"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns := namespace
			if all {
				ns = ""
			}
			if kind, ok := workloadKinds[args[0]]; ok {
				return getWorkloads(cmd, g, kind, ns, args[1:], output, all)
			}
			if r := args[0]; r != "pods" && r != "pod" && r != "po" {
				return &exitError{code: exitUsage, err: fmt.Errorf("unknown resource %q: pods, deployments, statefulsets, daemonsets or jobs", r)}
			}
			if output == "json" || output == "yaml" {
				return printRawPods(cmd, g, ns, args[1:], output)
			}
			list, err := g.client().Pods(cmd.Context(), ns)
			if err != nil {
				return err
			}
			if names := args[1:]; len(names) > 0 {
				var keep []reconcile.Pod
				for _, p := range list.Items {
					for _, n := range names {
						if p.Metadata.Name == n {
							keep = append(keep, p)
						}
					}
				}
				if len(keep) == 0 {
					return fmt.Errorf("pods %q not found", strings.Join(names, ", "))
				}
				list.Items = keep
			}
			switch output {
			case "", "wide":
				printPods(g.stdout, list.Items, output == "wide", all, clock())
				if len(list.Items) == 0 {
					if all || namespace == "" {
						fmt.Fprintln(g.stderr, "No pods found.")
					} else {
						fmt.Fprintf(g.stderr, "No pods found in %s namespace.\n", namespace)
					}
				}
				printManifestErrors(cmd, g, list.Items)
				return nil
			default:
				return &exitError{code: exitUsage, err: fmt.Errorf("-o %q: use wide, json or yaml", output)}
			}
		},
	}
	addSocketFlag(cmd.Flags(), g)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: wide, json or yaml")
	addNamespaceFlags(cmd, g, &namespace, &all)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"wide", "json", "yaml"}, noFiles))
	return cmd
}

// printRawPods prints pods as the API serves them, as kubectl does: one
// named pod is printed itself, anything else as a List.
func printRawPods(cmd *cobra.Command, g *globalOptions, ns string, names []string, output string) error {
	c := g.client()
	var items []json.RawMessage
	if len(names) == 1 {
		raw, err := c.RawPod(cmd.Context(), dashNS(ns), names[0])
		if err != nil {
			return err
		}
		return printObject(g.stdout, raw, output)
	}
	all, err := c.RawPods(cmd.Context(), ns)
	if err != nil {
		return err
	}
	for _, raw := range all {
		var m struct {
			Metadata struct{ Name string } `json:"metadata"`
		}
		if json.Unmarshal(raw, &m) == nil && (len(names) == 0 || slices.Contains(names, m.Metadata.Name)) {
			items = append(items, raw)
		}
	}
	if len(names) > 0 && len(items) == 0 {
		return fmt.Errorf("pods %q not found", strings.Join(names, ", "))
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	list, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}, "items": items})
	if err != nil {
		return err
	}
	return printObject(g.stdout, list, output)
}

// dashNS is the namespace a named get looks in: all namespaces (-A) has
// no meaning for one name, so it is the default one.
func dashNS(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// printObject prints JSON as kubectl's -o json (four-space indent) or -o
// yaml.
func printObject(w io.Writer, raw []byte, output string) error {
	if output == "yaml" {
		b, err := yaml.JSONToYAML(raw)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "    "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}

// printManifestErrors shows, under the table, the problems a person must
// fix: broken manifests (with the pod that keeps its last good version) and
// an unreadable directory.
func printManifestErrors(cmd *cobra.Command, g *globalOptions, pods []reconcile.Pod) {
	var lines []string
	for _, p := range pods {
		if e := p.Status.Pelagos.LastError; e != nil && e.File != "" {
			what := ""
			if p.Status.Pelagos.Stale {
				what = " (running its last good version)"
			}
			lines = append(lines, fmt.Sprintf("pod %s/%s%s: %s", p.Metadata.Namespace, p.Metadata.Name, what, e.Message))
		}
	}
	dir, files, err := g.client().FileErrors(cmd.Context())
	if err == nil {
		if dir != "" {
			lines = append(lines, "manifest directory: "+dir+" (keeping every pod as it is)")
		}
		for _, f := range files {
			msg := f.Message
			if !strings.Contains(msg, f.File) {
				msg = f.File + ": " + msg
			}
			dup := false
			for _, l := range lines {
				if strings.HasSuffix(l, ": "+f.Message) {
					dup = true
				}
			}
			if !dup {
				lines = append(lines, msg)
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(g.stdout, "\nManifest errors:")
		for _, l := range lines {
			fmt.Fprintln(g.stdout, "  "+l)
		}
	}
}

func printPods(w io.Writer, pods []reconcile.Pod, wide, withNS bool, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	hdr := "NAME\tREADY\tSTATUS\tRESTARTS\tAGE\tIP"
	if withNS {
		hdr = "NAMESPACE\t" + hdr
	}
	if wide {
		hdr += "\tSANDBOX\tFILE"
	}
	fmt.Fprintln(tw, hdr)
	for _, p := range pods {
		st := p.Status
		ready, restarts := 0, 0
		var lastRestart time.Time
		// As kubectl counts them: native sidecars are containers of the
		// pod, the ready ones once started.
		statuses := slices.Clone(st.ContainerStatuses)
		sidecars := sidecarNames(p.Spec)
		for _, c := range st.InitContainerStatuses {
			if sidecars[c.Name] {
				c.Ready = c.Ready && c.Started != nil && *c.Started
				statuses = append(statuses, c)
			}
		}
		for _, c := range statuses {
			if c.Ready {
				ready++
			}
			restarts += c.RestartCount
			if t := c.LastState.Terminated; t != nil && t.FinishedAt.After(lastRestart) {
				lastRestart = t.FinishedAt
			}
		}
		rs := fmt.Sprint(restarts)
		if restarts > 0 && !lastRestart.IsZero() {
			rs += " (" + duration.HumanDuration(now.Sub(lastRestart)) + " ago)"
		}
		row := fmt.Sprintf("%s\t%d/%d\t%s\t%s\t%s\t%s", p.Metadata.Name, ready, len(statuses), podStatus(p), rs,
			ageOf(p, now), dashIfEmpty(st.PodIP))
		if withNS {
			row = p.Metadata.Namespace + "\t" + row
		}
		if wide {
			row += "\t" + dashIfEmpty(shortID(st.Pelagos.SandboxID)) + "\t" + dashIfEmpty(st.Pelagos.SourceFile)
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
}

// sidecarNames are the native sidecars (init containers with
// restartPolicy Always) of a pod's spec, as the agent or its API hands it.
func sidecarNames(podSpec any) map[string]bool {
	b, err := json.Marshal(podSpec)
	if err != nil {
		return nil
	}
	var s struct {
		InitContainers []struct {
			Name          string `json:"name"`
			RestartPolicy string `json:"restartPolicy"`
		} `json:"initContainers"`
	}
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	out := map[string]bool{}
	for _, c := range s.InitContainers {
		if c.RestartPolicy == "Always" {
			out[c.Name] = true
		}
	}
	return out
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// shortIDLen is how much of an ID tables show, as crictl's.
const shortIDLen = 13

func shortID(id string) string {
	if len(id) > shortIDLen {
		return id[:shortIDLen]
	}
	return id
}

func ageOf(p reconcile.Pod, now time.Time) string {
	if p.Metadata.CreationTimestamp == nil {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(*p.Metadata.CreationTimestamp))
}

// podStatus is kubectl's STATUS column: the most telling container reason,
// Init:N/M while init containers run, else the phase.
// initialized reports the pod's Initialized condition.
func initialized(st reconcile.PodStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == "Initialized" {
			return c.Status == "True"
		}
	}
	return false
}

func podStatus(p reconcile.Pod) string {
	st := p.Status
	if st.Reason != "" {
		return st.Reason
	}
	sidecars := sidecarNames(p.Spec)
	for i, c := range st.InitContainerStatuses {
		if initialized(st) {
			break // a sidecar that restarts later does not make it Init again
		}
		switch {
		case c.State.Terminated != nil && c.State.Terminated.ExitCode == 0:
			continue
		case sidecars[c.Name] && c.State.Running != nil && c.Started != nil && *c.Started:
			continue
		case c.State.Terminated != nil:
			return "Init:" + c.State.Terminated.Reason
		case c.State.Waiting != nil && c.State.Waiting.Reason != "" && c.State.Waiting.Reason != "PodInitializing":
			return "Init:" + c.State.Waiting.Reason
		default:
			return fmt.Sprintf("Init:%d/%d", i, len(st.InitContainerStatuses))
		}
	}
	var terminated string
	running := false
	for _, c := range st.ContainerStatuses {
		switch {
		case c.State.Waiting != nil && c.State.Waiting.Reason != "":
			return c.State.Waiting.Reason
		case c.State.Terminated != nil && terminated == "":
			terminated = c.State.Terminated.Reason
		case c.State.Running != nil:
			running = true
		}
	}
	switch {
	case st.Phase == reconcile.PhaseSucceeded:
		return "Completed"
	case st.Phase == reconcile.PhaseFailed && terminated != "":
		return terminated
	case st.Phase == reconcile.PhaseFailed:
		return "Error"
	case !running && terminated != "":
		return terminated
	}
	return st.Phase
}
