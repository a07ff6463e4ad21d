package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Shell completion of the names only the running agent knows: pods,
// their containers and namespaces through its API; sandboxes, containers
// and images from the runtime's state, found as the low-level commands
// find it. Cobra calls these without running the commands' hooks, so each
// works out the settings itself, and a completion that fails offers
// nothing rather than printing an error into the user's command line.

// completionTimeout bounds how long a TAB may wait for the agent.
const completionTimeout = 5 * time.Second

type completeFunc = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective)

const noFiles = cobra.ShellCompDirectiveNoFileComp

// completionContext applies the settings file and the environment to
// cmd's flags, as a run of cmd would, and bounds the wait.
func completionContext(cmd *cobra.Command, g *globalOptions) (context.Context, context.CancelFunc, error) {
	if err := applySettings(cmd, g); err != nil {
		return nil, nil, err
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	return ctx, cancel, nil
}

// namespaceOf is the namespace cmd's -n/-A flags select ("" for all).
func namespaceOf(cmd *cobra.Command) string {
	if all, err := cmd.Flags().GetBool("all-namespaces"); err == nil && all {
		return ""
	}
	if ns, err := cmd.Flags().GetString("namespace"); err == nil {
		return ns
	}
	return "default"
}

// completePods offers the names of the pods of the selected namespace
// that args does not name yet.
func completePods(g *globalOptions, cmd *cobra.Command, args []string) ([]string, cobra.ShellCompDirective) {
	ctx, cancel, err := completionContext(cmd, g)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	defer cancel()
	pods, err := g.client().KubePods(ctx, namespaceOf(cmd))
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, p := range pods {
		if !slices.Contains(args, p.Name) && !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	return names, noFiles
}

// completeOnePod completes the first argument (a pod) and nothing after.
func completeOnePod(g *globalOptions) completeFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, noFiles
		}
		return completePods(g, cmd, args)
	}
}

// completeResourceThenPods completes `get pods NAME...` and `describe pod
// NAME...`: the resource first, then pod names.
func completeResourceThenPods(g *globalOptions, resources ...string) completeFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return resources, noFiles
		}
		if r := args[0]; r != "pods" && r != "pod" && r != "po" {
			return nil, noFiles // names of workloads are not completed
		}
		return completePods(g, cmd, args[1:])
	}
}

// completeContainerFlag completes -c with the containers of the pod the
// command names, init containers too.
func completeContainerFlag(g *globalOptions) completeFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, noFiles
		}
		ctx, cancel, err := completionContext(cmd, g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		defer cancel()
		p, err := g.client().KubePod(ctx, namespaceOf(cmd), args[0])
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []string
		for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
			for _, c := range cs {
				names = append(names, c.Name)
			}
		}
		return names, noFiles
	}
}

// completeNamespaces completes -n with the namespaces the agent serves.
func completeNamespaces(g *globalOptions) completeFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		ctx, cancel, err := completionContext(cmd, g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		defer cancel()
		names, err := g.client().Namespaces(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return names, noFiles
	}
}

// addNamespaceFlags gives a client command -n (default "default") and
// -A, as kubectl's.
func addNamespaceFlags(cmd *cobra.Command, g *globalOptions, namespace *string, all *bool) {
	cmd.Flags().StringVarP(namespace, "namespace", "n", "default", "namespace")
	if all != nil {
		cmd.Flags().BoolVarP(all, "all-namespaces", "A", false, "every namespace")
	}
	_ = cmd.RegisterFlagCompletionFunc("namespace", completeNamespaces(g))
}

// lowLevelCompletion prepares a low-level command for completing: the
// settings, then where the running agent keeps its state. It reports
// false when there is no state there: a TAB creates nothing.
func lowLevelCompletion(cmd *cobra.Command, g *globalOptions) (context.Context, context.CancelFunc, bool) {
	ctx, cancel, err := completionContext(cmd, g)
	if err != nil {
		return nil, nil, false
	}
	cmd.SetContext(ctx)
	if err := g.locateState(cmd); err != nil {
		cancel()
		return nil, nil, false
	}
	for _, dir := range []string{g.Root, g.RunRoot} {
		if _, err := os.Stat(dir); err != nil {
			cancel()
			return nil, nil, false
		}
	}
	return ctx, cancel, true
}

// completeSandboxes offers sandbox IDs and names.
func completeSandboxes(g *globalOptions) completeFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 && cmd.Flags().Lookup("sandbox") == nil {
			return nil, noFiles
		}
		ctx, cancel, ok := lowLevelCompletion(cmd, g)
		if !ok {
			return nil, cobra.ShellCompDirectiveError
		}
		defer cancel()
		rt, err := g.sandboxRuntime()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		list, err := rt.ListSandboxes(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []string
		for _, sb := range list {
			out = append(out, sb.ID+"\t"+sb.Pod.String())
			if !slices.Contains(out, sb.Pod.Name) {
				out = append(out, sb.Pod.Name)
			}
		}
		return out, noFiles
	}
}

// completeContainers offers container IDs, described by pod and name.
func completeContainers(g *globalOptions) completeFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, noFiles
		}
		ctx, cancel, ok := lowLevelCompletion(cmd, g)
		if !ok {
			return nil, cobra.ShellCompDirectiveError
		}
		defer cancel()
		rt, _, err := g.containerRuntime()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		list, err := rt.ListContainers(ctx, runtime.ContainerFilter{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []string
		for _, c := range list {
			out = append(out, c.ID+"\t"+c.Pod.String()+" "+c.Name+" ("+string(c.State)+")")
		}
		return out, noFiles
	}
}

// completeImages offers the stored images' references (and, for an
// image without one, its ID).
func completeImages(g *globalOptions, o *imageOptions) completeFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		ctx, cancel, ok := lowLevelCompletion(cmd, g)
		if !ok {
			return nil, cobra.ShellCompDirectiveError
		}
		defer cancel()
		s, err := o.open(g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		imgs, err := s.ListImages(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []string
		for _, img := range imgs {
			refs := slices.Clone(img.References)
			if len(refs) == 0 || strings.HasPrefix(toComplete, "sha256:") {
				refs = append(refs, img.ID)
			}
			for _, r := range refs {
				if !slices.Contains(args, r) {
					out = append(out, r)
				}
			}
		}
		return out, noFiles
	}
}
