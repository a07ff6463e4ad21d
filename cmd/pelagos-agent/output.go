package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
)

// The low-level list and inspect commands print -o table, json or yaml,
// as crictl's do. JSON and YAML carry the same camelCase fields as the
// runtime's types and the Kubernetes API; tables show IDs cut to
// shortIDLen characters unless --no-trunc.

// listOptions are the output flags of a list command.
type listOptions struct {
	output  string
	noTrunc bool
	quiet   bool
}

func addListFlags(cmd *cobra.Command, o *listOptions) {
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "show whole IDs")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print only IDs, one a line")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, noFiles))
}

// addInspectOutput gives an inspect command -o (JSON by default, as
// crictl's).
func addInspectOutput(cmd *cobra.Command, output *string) {
	cmd.Flags().StringVarP(output, "output", "o", "json", "output format: json, yaml or table")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json", "yaml", "table"}, noFiles))
}

// checkOutput refuses a format the command does not print.
func checkOutput(output string) error {
	switch output {
	case "table", "json", "yaml":
		return nil
	}
	return usageErr("-o %q: use table, json or yaml", output)
}

// printStructured prints v as -o json (kubectl's layout) or -o yaml.
func printStructured(w io.Writer, v any, output string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return printObject(w, b, output)
}

// id is an ID as a table shows it.
func (o *listOptions) id(id string) string {
	if o.noTrunc {
		return id
	}
	return shortID(id)
}

// since is a table's CREATED column: "5m ago".
func since(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t)) + " ago"
}

// field is one line of an inspect -o table.
type field struct{ key, value string }

// printFields prints an inspect -o table: one "Key: value" line each,
// values aligned; several objects are separated by a blank line.
func printFields(w io.Writer, objects ...[]field) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	for i, fs := range objects {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		for _, f := range fs {
			fmt.Fprintf(tw, "%s:\t%s\n", f.key, terminalEscaper.Replace(f.value))
		}
	}
	return tw.Flush()
}

// keyValues is a map as one table value: "a=1,b=2", sorted.
func keyValues(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// printList prints what a list command found: -o json or yaml as a list
// of objects, -q their IDs, else a table of header and one row each
// (tab-separated cells).
func printList[T any](w io.Writer, items []T, o *listOptions, id func(T) string, header string, row func(T) string) error {
	switch {
	case o.output != "table":
		return printStructured(w, nonNil(items), o.output)
	case o.quiet:
		for _, it := range items {
			fmt.Fprintln(w, id(it))
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, terminalEscaper.Replace(row(it)))
	}
	return tw.Flush()
}

// printInspected prints what an inspect command found: one object as
// itself, several as a list (as kubectl get does), or -o table as blocks
// of "Key: value" lines.
func printInspected[T any](w io.Writer, items []T, output string, fields func(T) []field) error {
	switch {
	case output == "table":
		objs := make([][]field, 0, len(items))
		for _, it := range items {
			objs = append(objs, fields(it))
		}
		return printFields(w, objs...)
	case len(items) == 1:
		return printStructured(w, items[0], output)
	}
	return printStructured(w, items, output)
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
