package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/agent"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

func init() { registerCommand(newRunCommand) }

// addAgentFlags adds the flags `run` and `apply --once` share.
func addAgentFlags(f *pflag.FlagSet, o *agent.Options) {
	f.StringVar(&o.Manifests, "manifests", "/etc/pelagos/pods", "directory of Pod manifests the node must match")
	f.DurationVar(&o.Resync, "resync", 10*time.Second, "period of the full re-list of manifests and runtime (safety net)")
	f.DurationVar(&o.BackoffInitial, "backoff-initial", reconcile.DefaultBackoff.Initial, "CrashLoopBackOff: first restart delay")
	f.DurationVar(&o.BackoffMax, "backoff-max", reconcile.DefaultBackoff.Max, "CrashLoopBackOff: longest restart delay")
	f.IntVar(&o.Workers, "workers", 16, "pods worked on at once")
	f.IntVar(&o.MaxPods, "max-pods", reconcile.DefaultMaxPods, "pods that may own a sandbox at once; the others wait (OutOfCapacity) in order of manifest creation; 0 or less: no limit")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan for each pod and change nothing")
	f.BoolVar(&o.SkipTrustCheck, "insecure-skip-trust-check", false, "load manifests even from files and directories others may write (development only)")
	f.StringSliceVar(&o.InsecureRegistries, "insecure-registry", nil, "registry host:port reachable over plain HTTP (loopback always is)")
	f.StringToStringVar(&o.NodeLabels, "node-labels", nil, "the node's labels (key=value,...), beside kubernetes.io/hostname, /os and /arch: pods whose nodeSelector or node affinity do not match them are not run here")
	f.StringSliceVar(&o.NodeTaints, "node-taints", nil, "the node's taints (key[=value]:Effect,...): pods that do not tolerate a NoSchedule or NoExecute taint are not run here")
	addMirrorFlag(f, &o.Mirrors)
}

func newRunCommand(g *globalOptions) *cobra.Command {
	o := &agent.Options{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: make the node match the manifest directory and keep it so",
		Long: `Run the agent in the foreground. It watches --manifests, creates, updates and
removes pods to match it, serves the API on --socket and exits on SIGTERM or
SIGINT, leaving the pods running for the next start to adopt (unless
--stop-pods-on-exit). SIGHUP re-reads --config and the manifests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ao := g.agentOptions(o)
			ao.Reload = func() ([]string, error) { return g.reloadSettings(cmd) }
			return usageExit(agent.Run(cmd.Context(), ao))
		},
	}
	f := cmd.Flags()
	addSocketFlag(f, g)
	addRootFlags(f, g)
	addNetworkFlags(f, g)
	addAgentFlags(f, o)
	f.StringVar(&o.MetricsAddr, "metrics-addr", "", "also serve Prometheus metrics on this TCP address (e.g. 127.0.0.1:9464)")
	f.DurationVar(&o.Debounce, "debounce", 2*time.Millisecond, "quiet time after a file event before the manifests are reloaded")
	f.DurationVar(&o.RemovalSettle, "removal-settle", manifest.DefaultSettle,
		"how long a manifest file must stay missing before its pods are removed (tools that replace a file by unlink and create leave it missing for a moment); 0 removes at once")
	f.BoolVar(&o.StopPodsOnExit, "stop-pods-on-exit", false, "remove every pod on SIGTERM/SIGINT instead of leaving them running")
	f.StringVar(&o.APIListen, "api-listen", agent.DefaultAPIListen, "also serve the Kubernetes API on this TCP address, with TLS and client certificates (see `kubeconfig`); \"\" serves only the socket")
	f.StringVar(&o.APIWriteDir, "api-write-dir", "", "accept API writes (kubectl apply/create/replace/delete of Pods, ConfigMaps, Secrets) as manifest files in this directory, which is watched too")
	addCRIFlags(f, &o.CRI, "cri-", "")
	return cmd
}

// agentOptions completes o, whose fields the command's own flags set,
// with the settings the commands share.
func (g *globalOptions) agentOptions(o *agent.Options) agent.Options {
	ao := *o
	ao.Runtime = g.linuxConfig()
	ao.Images = g.withImageCaps(image.Options{Root: g.Root, Logger: g.log})
	ao.Socket = g.Socket
	ao.SettingsFile = g.Config
	ao.Log = g.log
	ao.Out = g.stdout
	ao.Version, ao.Commit = version, buildCommit()
	return ao
}

// usageExit gives a setting the agent cannot start with the exit status
// of a wrong command line.
func usageExit(err error) error {
	if ue := (*agent.UsageError)(nil); errors.As(err, &ue) {
		return &exitError{code: exitUsage, err: err}
	}
	return err
}
