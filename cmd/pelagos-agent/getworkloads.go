package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	utilduration "k8s.io/apimachinery/pkg/util/duration"
)

// workloadKinds maps the names `get` takes (as kubectl's: plural,
// singular, short) to a workload kind.
var workloadKinds = map[string]string{
	"deployments": "Deployment", "deployment": "Deployment", "deploy": "Deployment",
	"statefulsets": "StatefulSet", "statefulset": "StatefulSet", "sts": "StatefulSet",
	"daemonsets": "DaemonSet", "daemonset": "DaemonSet", "ds": "DaemonSet",
	"jobs": "Job", "job": "Job",
}

// servedWorkload is a workload as the agent serves it, enough of it for
// the tables.
type servedWorkload struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name              string    `json:"name"`
		Namespace         string    `json:"namespace"`
		CreationTimestamp time.Time `json:"creationTimestamp"`
	} `json:"metadata"`
	Spec struct {
		Replicas    *int32 `json:"replicas"`
		Completions *int32 `json:"completions"`
		Parallelism *int32 `json:"parallelism"`
		Template    struct {
			Spec struct {
				NodeSelector map[string]string `json:"nodeSelector"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
	Status struct {
		Replicas, ReadyReplicas, UpdatedReplicas, AvailableReplicas int32
		DesiredNumberScheduled, CurrentNumberScheduled, NumberReady int32
		UpdatedNumberScheduled, NumberAvailable                     int32
		Active, Succeeded, Failed                                   int32
		StartTime, CompletionTime                                   *time.Time
		Conditions                                                  []struct{ Type, Status, Reason string }
	} `json:"status"`
}

// getWorkloads is `get deployments|statefulsets|daemonsets|jobs [NAME...]`.
func getWorkloads(cmd *cobra.Command, g *globalOptions, kind, ns string, names []string, output string, all bool) error {
	raws, err := g.client().Workloads(cmd.Context())
	if err != nil {
		return err
	}
	var items []json.RawMessage
	var list []servedWorkload
	for _, raw := range raws {
		var w servedWorkload
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("decode workload: %w", err)
		}
		if w.Kind != kind || (ns != "" && w.Metadata.Namespace != ns) || (len(names) > 0 && !slices.Contains(names, w.Metadata.Name)) {
			continue
		}
		items = append(items, raw)
		list = append(list, w)
	}
	plural := strings.ToLower(kind) + "s"
	if len(names) > 0 && len(list) == 0 {
		return fmt.Errorf("%s %q not found", plural, strings.Join(names, ", "))
	}
	switch output {
	case "json", "yaml":
		if len(names) == 1 {
			return printObject(g.stdout, items[0], output)
		}
		if items == nil {
			items = []json.RawMessage{}
		}
		b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}, "items": items})
		if err != nil {
			return err
		}
		return printObject(g.stdout, b, output)
	case "", "wide":
		printWorkloads(g.stdout, kind, list, all, time.Now())
		if len(list) == 0 {
			if ns == "" {
				fmt.Fprintln(g.stderr, "No resources found.")
			} else {
				fmt.Fprintf(g.stderr, "No resources found in %s namespace.\n", ns)
			}
		}
		return nil
	}
	return &exitError{code: exitUsage, err: fmt.Errorf("-o %q: use wide, json or yaml", output)}
}

// printWorkloads prints kubectl's table for the kind.
func printWorkloads(w io.Writer, kind string, list []servedWorkload, withNS bool, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	hdr := map[string]string{
		"Deployment":  "NAME\tREADY\tUP-TO-DATE\tAVAILABLE\tAGE",
		"StatefulSet": "NAME\tREADY\tAGE",
		"DaemonSet":   "NAME\tDESIRED\tCURRENT\tREADY\tUP-TO-DATE\tAVAILABLE\tNODE SELECTOR\tAGE",
		"Job":         "NAME\tSTATUS\tCOMPLETIONS\tDURATION\tAGE",
	}[kind]
	if withNS {
		hdr = "NAMESPACE\t" + hdr
	}
	fmt.Fprintln(tw, hdr)
	for _, o := range list {
		st := o.Status
		ageCol := "<unknown>"
		if !o.Metadata.CreationTimestamp.IsZero() {
			ageCol = utilduration.HumanDuration(now.Sub(o.Metadata.CreationTimestamp))
		}
		replicas := int32(0)
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
		var row string
		switch kind {
		case "Deployment":
			row = fmt.Sprintf("%s\t%d/%d\t%d\t%d\t%s", o.Metadata.Name, st.ReadyReplicas, replicas, st.UpdatedReplicas, st.AvailableReplicas, ageCol)
		case "StatefulSet":
			row = fmt.Sprintf("%s\t%d/%d\t%s", o.Metadata.Name, st.ReadyReplicas, replicas, ageCol)
		case "DaemonSet":
			var sel []string
			for k, v := range o.Spec.Template.Spec.NodeSelector {
				sel = append(sel, k+"="+v)
			}
			sort.Strings(sel)
			row = fmt.Sprintf("%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s", o.Metadata.Name, st.DesiredNumberScheduled, st.CurrentNumberScheduled,
				st.NumberReady, st.UpdatedNumberScheduled, st.NumberAvailable, dashIfEmpty(strings.Join(sel, ",")), ageCol)
		case "Job":
			status := "Running"
			for _, c := range st.Conditions {
				if c.Status == "True" {
					status = c.Type
				}
			}
			completions := fmt.Sprintf("%d/1", st.Succeeded)
			if o.Spec.Parallelism != nil {
				completions = fmt.Sprintf("%d/1 of %d", st.Succeeded, *o.Spec.Parallelism)
			}
			if o.Spec.Completions != nil {
				completions = fmt.Sprintf("%d/%d", st.Succeeded, *o.Spec.Completions)
			}
			duration := ""
			if st.StartTime != nil {
				end := now
				if st.CompletionTime != nil {
					end = *st.CompletionTime
				}
				duration = utilduration.HumanDuration(end.Sub(*st.StartTime))
			}
			row = fmt.Sprintf("%s\t%s\t%s\t%s\t%s", o.Metadata.Name, status, completions, dashIfEmpty(duration), ageCol)
		}
		if withNS {
			row = o.Metadata.Namespace + "\t" + row
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
}
