package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

func init() { registerCommand(newApplyCommand) }

func newApplyCommand(g *globalOptions) *cobra.Command {
	o := &agentOptions{}
	var once bool
	var timeout, settle time.Duration
	cmd := &cobra.Command{
		Use:   "apply --once DIR",
		Short: "Converge the node to DIR once, without a daemon; exit 0 when every pod runs",
		Long: `Make the node match the manifests in DIR, wait until every pod is Running
(or Succeeded), print a summary and exit: 0 when all pods got there, 1 with the
reasons otherwise. Pods that DIR does not name are removed, as the daemon would.
It takes the same lock as ` + "`run`" + `, so it refuses to run beside an agent.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !once {
				return &exitError{code: exitUsage, err: fmt.Errorf("apply needs --once (the daemon is `pelagos-agent run`)")}
			}
			o.Manifests = args[0]
			return applyOnce(cmd.Context(), g, o, timeout, settle)
		},
	}
	f := cmd.Flags()
	addRootFlags(f, g)
	addNetworkFlags(f, g)
	addAgentFlags(f, o)
	f.Lookup("manifests").Hidden = true
	f.BoolVar(&once, "once", false, "converge once and exit (required)")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "give up waiting after this long")
	f.DurationVar(&settle, "settle", 2*time.Second, "how long every pod must stay running, without restarts, to count")
	return cmd
}

func applyOnce(ctx context.Context, g *globalOptions, o *agentOptions, timeout, settle time.Duration) error {
	snap, err := manifest.LoadDir(o.Manifests, manifest.Options{SkipTrustCheck: o.SkipTrustCheck, AllowUnsafeSysctls: g.AllowUnsafeSysctls})
	if err != nil {
		return fmt.Errorf("no truth to apply: %w", err)
	}
	a, err := buildAgent(g, o, false)
	if err != nil {
		return err
	}
	defer a.close()
	set := translator(g.Root).FromSnapshot(snap, nil)
	for _, fe := range set.Errors {
		fmt.Fprintf(g.stderr, "manifest error: %s\n", fe.Message)
	}
	a.rec.SetDesired(set)

	if o.DryRun {
		boxes, err := a.view.ListSandboxes(ctx)
		if err != nil {
			return err
		}
		keys := map[runtime.PodKey]bool{}
		for _, d := range set.Pods {
			keys[d.Key] = true
		}
		for _, b := range boxes {
			keys[b.Pod] = true
		}
		for k := range keys {
			p, err := a.rec.Plan(ctx, k)
			if err != nil {
				return err
			}
			fmt.Fprint(g.stdout, p.String())
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.rec.Run(runCtx) }()
	defer func() { stopRun(); <-done }()

	want := map[runtime.PodKey]bool{}
	for _, d := range set.Pods {
		want[d.Key] = true
	}
	// A container that crashes right after starting is "Running" for a
	// moment: success needs the pods to stay as they are for --settle.
	var stableSince time.Time
	var stableKey string
	for {
		pods := a.rec.Pods()
		settled, bad := summarize(pods, want)
		if settled {
			key := restartsKey(pods)
			if key != stableKey || stableSince.IsZero() {
				stableKey, stableSince = key, time.Now()
			}
			if time.Since(stableSince) < settle {
				settled = false
			}
		} else {
			stableSince = time.Time{}
		}
		if settled {
			boxes, _ := a.view.ListSandboxes(ctx)
			extra := 0
			for _, b := range boxes {
				if !want[b.Pod] {
					extra++
				}
			}
			if extra == 0 {
				printPods(g.stdout, pods, false, true, time.Now())
				if len(bad) > 0 || len(set.Errors) > 0 {
					for _, b := range bad {
						fmt.Fprintln(g.stderr, b)
					}
					return &exitError{code: exitFailure, err: fmt.Errorf("%d pod(s) did not reach Running, %d manifest error(s)", len(bad), len(set.Errors))}
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			printPods(g.stdout, pods, false, true, time.Now())
			for _, b := range bad {
				fmt.Fprintln(g.stderr, b)
			}
			return &exitError{code: exitFailure, err: fmt.Errorf("timed out after %s waiting for pods to converge", timeout)}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// summarize reports whether every wanted pod is settled (Running with all
// containers running, Succeeded, or stuck in a state only a person can fix)
// and the lines describing the pods that did not make it.
func summarize(pods []reconcile.Pod, want map[runtime.PodKey]bool) (bool, []string) {
	settled := true
	var bad []string
	seen := 0
	for _, p := range pods {
		k := runtime.PodKey{Namespace: p.Metadata.Namespace, Name: p.Metadata.Name}
		if !want[k] {
			settled = false // still being removed
			continue
		}
		seen++
		status := podStatus(p)
		switch {
		case p.Status.Phase == reconcile.PhaseSucceeded:
		case p.Status.Phase == reconcile.PhaseRunning && status == reconcile.PhaseRunning:
		case status == "CrashLoopBackOff" || status == "ImagePullBackOff" || status == "CreateContainerConfigError" ||
			status == "Error" || status == "Init:Error" || p.Status.Phase == reconcile.PhaseFailed:
			bad = append(bad, fmt.Sprintf("pod %s: %s%s", k, status, lastErr(p)))
		default:
			settled = false
		}
	}
	return settled && seen == len(want), bad
}

// restartsKey summarises every container's state and restart count, so a
// restart or a state change during the settle time is noticed.
func restartsKey(pods []reconcile.Pod) string {
	var b []byte
	for _, p := range pods {
		for _, c := range p.Status.ContainerStatuses {
			b = fmt.Appendf(b, "%s/%s/%s:%d:%v;", p.Metadata.Namespace, p.Metadata.Name, c.Name, c.RestartCount, c.State.Running != nil)
		}
	}
	return string(b)
}

func lastErr(p reconcile.Pod) string {
	if e := p.Status.Pelagos.LastError; e != nil {
		return ": " + e.Message
	}
	return ""
}
