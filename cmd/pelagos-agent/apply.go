package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/agent"
	"github.com/pelagos-containers/pelagos-agent/reconcile/workload"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/spec"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

func init() { registerCommand(newApplyCommand) }

func newApplyCommand(g *globalOptions) *cobra.Command {
	o := &agent.Options{}
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

func applyOnce(ctx context.Context, g *globalOptions, o *agent.Options, timeout, settle time.Duration) error {
	snap, err := manifest.LoadDir(o.Manifests, manifest.Options{SkipTrustCheck: o.SkipTrustCheck, AllowUnsafeSysctls: g.AllowUnsafeSysctls})
	if err != nil {
		return fmt.Errorf("no truth to apply: %w", err)
	}
	a, err := agent.New(g.agentOptions(o))
	if err != nil {
		return usageExit(err)
	}
	defer a.Close()
	rec, workloads, view := a.Reconciler(), a.Workloads(), a.View()
	set := a.Translator().FromSnapshot(snap, nil)
	for _, fe := range set.Errors {
		fmt.Fprintf(g.stderr, "manifest error: %s\n", fe.Message)
	}
	workloads.SetManifests(set, snap)

	if o.DryRun {
		boxes, err := view.ListSandboxes(ctx)
		if err != nil {
			return err
		}
		keys := map[runtime.PodKey]bool{}
		for _, k := range workloads.PodKeys() {
			keys[k] = true
		}
		for _, b := range boxes {
			keys[b.Pod] = true
		}
		for k := range keys {
			p, err := rec.Plan(ctx, k)
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
	go func() { defer close(done); _ = rec.Run(runCtx) }()
	wlDone := make(chan struct{})
	go func() { defer close(wlDone); workloads.Run(runCtx) }()
	defer func() { stopRun(); <-done; <-wlDone }()

	var want map[runtime.PodKey]bool
	// A container that crashes right after starting is "Running" for a
	// moment: success needs the pods to stay as they are for --settle.
	var stableSince time.Time
	var stableKey string
	for {
		// The workloads' pods change as they scale and their Jobs run.
		want = map[runtime.PodKey]bool{}
		for _, k := range workloads.PodKeys() {
			want[k] = true
		}
		pods := rec.Pods()
		settled, bad := summarize(pods, want)
		jobsDone, jobsBad := summarizeJobs(workloads.Workloads())
		settled = settled && jobsDone
		bad = append(bad, jobsBad...)
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
			boxes, _ := view.ListSandboxes(ctx)
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
		if owner := p.Metadata.OwnerReferences; len(owner) > 0 && owner[0].Kind == spec.KindJob {
			continue // a Job's attempts: the Job's own outcome counts (summarizeJobs)
		}
		status := podStatus(p)
		switch {
		case p.Status.Reason == reconcile.ReasonNodeMismatch:
			// Meant for another node: owning nothing is its settled state.
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

// summarizeJobs reports whether every Job has finished, and a line for each
// one that failed.
func summarizeJobs(objs []workload.Object) (bool, []string) {
	done := true
	var bad []string
	for _, o := range objs {
		st, ok := o.Status.(workload.JobStatus)
		if o.Kind != spec.KindJob || !ok {
			continue
		}
		finished := false
		for _, c := range st.Conditions {
			switch c.Type {
			case "Complete":
				finished = true
			case "Failed":
				finished = true
				bad = append(bad, fmt.Sprintf("job %s/%s: Failed: %s: %s", o.Metadata.Namespace, o.Metadata.Name, c.Reason, c.Message))
			}
		}
		done = done && finished
	}
	return done, bad
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
