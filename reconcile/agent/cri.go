package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pelagos-containers/pelagos-agent/internal/sdnotify"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/cri"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux"
)

func init() { registerCommand(newCRICommand) }

// DefaultCRISocket is where kubelet's --container-runtime-endpoint points.
const DefaultCRISocket = "/run/pelagos/cri.sock"

// criOptions are the CRI server's flags: `cri` has them as they are,
// `run` with a "cri-" prefix.
type criOptions struct {
	Listen        string
	StreamingAddr string
	CNIConfDir    string
	CNIBinDirs    []string
}

// DefaultCNIBinDirs are where CNI plugins are installed: the upstream
// release's place and Debian's package's.
var DefaultCNIBinDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}

// addCRIFlags adds the flags of o with the names prefixed; listen is the
// default socket ("" for run, where the flag switches the CRI on).
func addCRIFlags(f *pflag.FlagSet, o *criOptions, prefix, listen string) {
	f.StringVar(&o.Listen, prefix+"listen", listen, "unix socket the CRI is served on (kubelet's --container-runtime-endpoint=unix://<socket>)")
	f.StringVar(&o.StreamingAddr, prefix+"streaming-addr", DefaultStreamingAddr, "TCP address of the CRI's exec/attach/port-forward endpoint (kubelet proxies to it; port 0 picks one)")
	f.StringVar(&o.CNIConfDir, prefix+"cni-conf-dir", "", "make pod networks with the first CNI network configuration in this directory (e.g. /etc/cni/net.d) instead of the agent's bridge")
	f.StringSliceVar(&o.CNIBinDirs, prefix+"cni-bin-dir", DefaultCNIBinDirs, "directories of the CNI plugins")
}

func newCRICommand(g *globalOptions) *cobra.Command {
	var o criOptions
	var insecure []string
	var mirrors map[string]string
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
			return runCRI(cmd.Context(), g, o, insecure, mirrors)
		},
	}
	f := cmd.Flags()
	addRootFlags(f, g)
	addNetworkFlags(f, g)
	addCRIFlags(f, &o, "", DefaultCRISocket)
	f.StringSliceVar(&insecure, "insecure-registry", nil, "registry host:port reachable over plain HTTP (loopback always is)")
	addMirrorFlag(f, &mirrors)
	return cmd
}

// DefaultStreamingAddr keeps the streaming endpoint on loopback, where
// kubelet reaches it, as containerd does.
const DefaultStreamingAddr = "127.0.0.1:0"

// addMirrorFlag adds --registry-mirror, which the image store takes as is.
func addMirrorFlag(f *pflag.FlagSet, m *map[string]string) {
	f.StringToStringVar(m, "registry-mirror", nil, "pull a registry's images from a mirror instead: REGISTRY=HOST[:PORT] (e.g. docker.io=127.0.0.1:5000); repeatable")
}

func runCRI(ctx context.Context, g *globalOptions, o criOptions, insecure []string, mirrors map[string]string) error {
	setAgentOOMScore(g.log)
	lock, err := lockStateRoot(g.Root)
	if err != nil {
		return err
	}
	defer lock.Close()
	cfg := g.linuxConfig()
	cfg.InsecureRegistries = insecure
	rt, err := linux.New(cfg)
	if err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	images, err := image.Open(g.withImageCaps(image.Options{Root: g.Root, InsecureRegistries: insecure, Mirrors: mirrors, Logger: g.log}))
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	rt.SetImageStore(images)
	images.SetInUse(containersUse(rt))
	// A long-running server keeps shims started ahead of need, as run
	// does; they exit with it.
	rt.EnableSpareShim()
	defer rt.DisableSpareShim()

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			g.log.Info().Str("signal", s.String()).Msg("stopping the CRI server; pods keep running")
			stop()
		case <-ctx.Done():
		}
	}()
	return serveCRI(ctx, g, rt, images, o)
}

// containersUse tells the image store which images containers use, so that
// removing one is refused while it runs; when unsure, it is in use.
func containersUse(rt runtime.Runtime) func(string) bool {
	return func(id string) bool {
		cs, err := rt.ListContainers(context.Background(), runtime.ContainerFilter{})
		if err != nil {
			return true
		}
		for _, c := range cs {
			if c.ImageID == id {
				return true
			}
		}
		return false
	}
}

// serveCRI serves the CRI for rt and images on o.Listen, and its
// streaming endpoint on o.StreamingAddr, until ctx ends. The server's
// records live under the run root, as the runtime's do.
func serveCRI(ctx context.Context, g *globalOptions, rt runtime.Runtime, images *image.Store, o criOptions) error {
	log := g.log.With().Str("component", "cri").Logger()
	sl, err := net.Listen("tcp", o.StreamingAddr)
	if err != nil {
		return fmt.Errorf("streaming address: %w", err)
	}
	defer sl.Close()
	opts := cri.Options{
		Runtime: rt, Images: images, Streaming: sl,
		StateDir:   filepath.Join(g.RunRoot, "cri"),
		SeccompDir: filepath.Join(g.Root, "seccomp"),
		ImageFSDir: images.Dir(), ContainerFSDir: filepath.Join(g.Root, "containers"),
		RuntimeVersion: version,
		Log:            log,
	}
	if o.CNIConfDir != "" {
		// libcni's result cache is ours, not the host's /var/lib/cni.
		opts.Network = cri.NewCNI(o.CNIConfDir, o.CNIBinDirs, filepath.Join(g.Root, "cni"))
		if err := opts.Network.Ready(); err != nil {
			log.Warn().Err(err).Msg("no CNI network yet: pods wait (NetworkReady false) until a configuration appears")
		}
	}
	srv, err := cri.New(opts)
	if err != nil {
		return err
	}
	if err := srv.Recover(ctx); err != nil {
		// What could not be undone is reported; the rest is served.
		log.Warn().Err(err).Msg("CRI recovery incomplete")
	}
	l, err := api.Listen(o.Listen)
	if err != nil {
		return fmt.Errorf("CRI socket: %w", err)
	}
	defer os.Remove(o.Listen)
	log.Info().Str("socket", o.Listen).Str("streaming", sl.Addr().String()).Str("cni", o.CNIConfDir).Str("root", g.Root).Msg("CRI server ready")
	notify(log, sdnotify.Ready("serving the CRI on "+o.Listen))
	return srv.Serve(ctx, l)
}
