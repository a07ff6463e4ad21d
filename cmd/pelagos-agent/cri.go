package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pelagos-containers/pelagos-agent/reconcile/agent"
)

func init() { registerCommand(newCRICommand) }

// addCRIFlags adds the flags of o with the names prefixed; listen is the
// default socket ("" for run, where the flag switches the CRI on).
func addCRIFlags(f *pflag.FlagSet, o *agent.CRIOptions, prefix, listen string) {
	f.StringVar(&o.Listen, prefix+"listen", listen, "unix socket the CRI is served on (kubelet's --container-runtime-endpoint=unix://<socket>)")
	f.StringVar(&o.StreamingAddr, prefix+"streaming-addr", agent.DefaultStreamingAddr, "TCP address of the CRI's exec/attach/port-forward endpoint (kubelet proxies to it; port 0 picks one)")
	f.StringVar(&o.CNIConfDir, prefix+"cni-conf-dir", "", "make pod networks with the first CNI network configuration in this directory (e.g. /etc/cni/net.d) instead of the agent's bridge")
	f.StringSliceVar(&o.CNIBinDirs, prefix+"cni-bin-dir", agent.DefaultCNIBinDirs, "directories of the CNI plugins")
}

func newCRICommand(g *globalOptions) *cobra.Command {
	o := &agent.Options{}
	cmd := &cobra.Command{
		Use:   "cri",
		Short: "Serve the Kubernetes CRI (v1) on a unix socket, for kubelet and crictl",
		Long: `Serve the Container Runtime Interface on --listen: kubelet
(--container-runtime-endpoint=unix://<socket>), crictl and critest drive the
runtime through it. Pods made through the CRI are kubelet's; the manifest
agent ('run') never touches them, and 'run --cri-listen' serves both from
one process. On SIGTERM or SIGINT the server stops and every pod keeps
running; the next start adopts them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return agent.RunCRI(cmd.Context(), g.agentOptions(o))
		},
	}
	f := cmd.Flags()
	addRootFlags(f, g)
	addNetworkFlags(f, g)
	addCRIFlags(f, &o.CRI, "", agent.DefaultCRISocket)
	f.StringSliceVar(&o.InsecureRegistries, "insecure-registry", nil, "registry host:port reachable over plain HTTP (loopback always is)")
	addMirrorFlag(f, &o.Mirrors)
	return cmd
}

// addMirrorFlag adds --registry-mirror, which the image store takes as is.
func addMirrorFlag(f *pflag.FlagSet, m *map[string]string) {
	f.StringToStringVar(m, "registry-mirror", nil, "pull a registry's images from a mirror instead: REGISTRY=HOST[:PORT] (e.g. docker.io=127.0.0.1:5000); repeatable")
}
