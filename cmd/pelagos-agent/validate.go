package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/spec"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

func init() { registerCommand(newValidateCommand) }

type validateOptions struct {
	output         string
	skipTrustCheck bool
	maxFileSize    int64
}

func newValidateCommand(g *globalOptions) *cobra.Command {
	o := &validateOptions{}
	cmd := &cobra.Command{
		Use:   "validate PATH...",
		Short: "Check Pod manifests (files or directories) without running them",
		Long: `Decode, default and validate Pod manifests exactly as the agent would,
including the manifest directory's rules (ignored names, trust checks,
duplicate pods). Each problem is printed as FILE: doc N: FIELD: MESSAGE.
Fields accepted with no effect on one node are printed as warnings, and
cluster objects the agent skips (Service, Ingress, ...) as info; neither
changes the exit status.

Exit status: 0 when everything is valid, 1 when anything is invalid,
2 on a usage error.`,
		Example: `  pelagos-agent validate examples/pods
  pelagos-agent validate -o json web.yaml db.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "text" && o.output != "json" {
				return &exitError{code: exitUsage, err: fmt.Errorf("-o/--output: %q is not text or json", o.output)}
			}
			if o.maxFileSize < 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("--max-file-size: %d is negative", o.maxFileSize)}
			}
			return runValidate(g.stdout, args, o, g.AllowUnsafeSysctls)
		},
	}
	f := cmd.Flags()
	addSysctlFlag(f, g)
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.BoolVar(&o.skipTrustCheck, "insecure-skip-trust-check", false,
		"do not check that manifests and their directories are owned by root (or you) and not group/world-writable; for development only")
	f.Int64Var(&o.maxFileSize, "max-file-size", spec.DefaultLimits.MaxBytes, "largest manifest file accepted, in bytes")
	return cmd
}

// validateReport is the -o json form. Field names are stable: scripts use them.
type validateReport struct {
	Valid     bool                    `json:"valid"`
	Files     []validateFile          `json:"files"`
	Errors    []validateProblem       `json:"errors"` // problems not tied to one file (a directory)
	Pods      []validatePodEntry      `json:"pods"`
	Workloads []validateWorkloadEntry `json:"workloads"`
}

type validateWorkloadEntry struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	File      string `json:"file"`
	Doc       int    `json:"doc"`
}

type validateFile struct {
	Path       string            `json:"path"`
	Valid      bool              `json:"valid"`
	Pods       int               `json:"pods"`
	ConfigMaps int               `json:"configMaps"`
	Secrets    int               `json:"secrets"`
	Workloads  int               `json:"workloads"`
	Errors     []validateProblem `json:"errors"`
	// Warnings: kind Warning (accepted with no effect on one node) or
	// Skipped (a cluster object the agent skips); never invalid.
	Warnings []validateProblem `json:"warnings"`
}

type validatePodEntry struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	File        string `json:"file"`
	Doc         int    `json:"doc"`
	SandboxHash string `json:"sandboxHash"`
}

type validateProblem struct {
	File    string `json:"file,omitempty"`
	Doc     int    `json:"doc,omitempty"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Text    string `json:"text"` // the same problem as the text output prints it
}

func problemKind(err error) string {
	switch {
	case errors.Is(err, spec.ErrWarning):
		return "Warning"
	case errors.Is(err, spec.ErrSkipped):
		return "Skipped"
	case errors.Is(err, spec.ErrUnknownField):
		return "UnknownField"
	case errors.Is(err, spec.ErrUnsupported):
		return "Unsupported"
	case errors.Is(err, manifest.ErrUntrusted):
		return "Untrusted"
	case errors.Is(err, manifest.ErrDuplicate):
		return "Duplicate"
	case errors.Is(err, manifest.ErrNotRegular):
		return "NotRegularFile"
	case errors.Is(err, manifest.ErrTooLarge):
		return "TooLarge"
	case errors.Is(err, manifest.ErrDanglingSymlink):
		return "DanglingSymlink"
	case errors.Is(err, spec.ErrSyntax):
		return "Syntax"
	case errors.Is(err, spec.ErrInvalid):
		return "Invalid"
	}
	return "IO"
}

func toProblem(err error) validateProblem {
	p := validateProblem{Kind: problemKind(err), Message: err.Error(), Text: err.Error()}
	var fe *spec.FieldError
	if errors.As(err, &fe) {
		p.File, p.Doc, p.Line, p.Field, p.Message = fe.File, fe.Doc, fe.Line, fe.Path, fe.Msg
	}
	return p
}

func runValidate(stdout io.Writer, args []string, o *validateOptions, allowUnsafeSysctls bool) error {
	opts := manifest.Options{SkipTrustCheck: o.skipTrustCheck, MaxFileSize: o.maxFileSize, AllowUnsafeSysctls: allowUnsafeSysctls}
	report := validateReport{Valid: true, Files: []validateFile{}, Errors: []validateProblem{}, Pods: []validatePodEntry{},
		Workloads: []validateWorkloadEntry{}}
	var files []*manifest.FileResult
	for _, arg := range args {
		st, err := os.Stat(arg)
		if err == nil && st.IsDir() {
			snap, err := manifest.LoadDir(arg, opts)
			if err != nil {
				report.Errors = append(report.Errors, toProblem(err))
				continue
			}
			for _, p := range snap.Paths() {
				files = append(files, snap.Files[p])
			}
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			report.Errors = append(report.Errors, toProblem(fmt.Errorf("%s: %w", arg, err)))
			continue
		}
		files = append(files, manifest.LoadFile(arg, opts))
	}
	// The directory rule (first path wins, both files told) also holds
	// across the paths named on the command line.
	merged := manifest.Merge(uniqueFiles(files)...)
	files = files[:0]
	for _, p := range merged.Paths() {
		files = append(files, merged.Files[p])
	}
	problems, warnings := len(report.Errors), 0
	for _, fr := range files {
		vf := validateFile{Path: fr.Path, Valid: fr.OK(), Pods: len(fr.Pods), ConfigMaps: len(fr.ConfigMaps),
			Secrets: len(fr.Secrets), Workloads: len(fr.Workloads), Errors: []validateProblem{}, Warnings: []validateProblem{}}
		for _, e := range fr.Errs {
			vf.Errors = append(vf.Errors, toProblem(e))
		}
		for _, w := range fr.Warnings {
			vf.Warnings = append(vf.Warnings, toProblem(w))
		}
		// In file order: document, then line (problems about the whole
		// file or document first). The loader adds some after parsing,
		// such as duplicates.
		for _, list := range [][]validateProblem{vf.Errors, vf.Warnings} {
			sort.SliceStable(list, func(i, j int) bool {
				a, b := list[i], list[j]
				if a.Doc != b.Doc {
					return a.Doc < b.Doc
				}
				return a.Line < b.Line
			})
		}
		problems += len(fr.Errs)
		warnings += len(fr.Warnings)
		for _, ws := range fr.Workloads {
			k := spec.KeyOf(ws.Workload)
			report.Workloads = append(report.Workloads, validateWorkloadEntry{Kind: k.Kind, Namespace: k.Namespace,
				Name: k.Name, File: ws.File, Doc: ws.Doc})
		}
		for _, ps := range fr.Pods {
			report.Pods = append(report.Pods, validatePodEntry{Namespace: ps.Pod.Metadata.Namespace,
				Name: ps.Pod.Metadata.Name, File: ps.File, Doc: ps.Doc, SandboxHash: spec.SandboxHash(ps.Pod)})
		}
		report.Files = append(report.Files, vf)
	}
	report.Valid = problems == 0

	if o.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return fmt.Errorf("validate: write report: %w", err)
		}
	} else {
		for _, p := range report.Errors {
			fmt.Fprintln(stdout, p.Text)
		}
		for _, f := range report.Files {
			for _, p := range f.Errors {
				fmt.Fprintln(stdout, p.Text)
			}
			for _, w := range f.Warnings {
				prefix := "warning: "
				if w.Kind == "Skipped" {
					prefix = "info: "
				}
				fmt.Fprintln(stdout, prefix+w.Text)
			}
		}
		fmt.Fprintf(stdout, "%d file(s), %d valid pod(s), %d valid workload(s), %d problem(s), %d warning(s)\n",
			len(report.Files), len(report.Pods), len(report.Workloads), problems, warnings)
	}
	if !report.Valid {
		// The problems are already printed; the exit status says the rest.
		return &exitError{code: exitFailure, err: errors.New("")}
	}
	return nil
}

// uniqueFiles drops a file named twice (as itself and through its
// directory, say), which would otherwise be reported as its own duplicate.
func uniqueFiles(files []*manifest.FileResult) []*manifest.FileResult {
	seen := map[string]bool{}
	out := files[:0]
	for _, fr := range files {
		key, err := filepath.Abs(fr.Path)
		if err != nil {
			key = fr.Path
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, fr)
	}
	return out
}
