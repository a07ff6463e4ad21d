package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/pelagos-containers/pelagos-agent/reconcile/agent/internal/sdnotify"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/cri"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux"
)

// DefaultCRISocket is where kubelet's --container-runtime-endpoint points.
const DefaultCRISocket = "/run/pelagos/cri.sock"

// DefaultStreamingAddr keeps the streaming endpoint on loopback, where
// kubelet reaches it, as containerd does.
const DefaultStreamingAddr = "127.0.0.1:0"

// DefaultCNIBinDirs are where CNI plugins are installed: the upstream
// release's place and Debian's package's.
var DefaultCNIBinDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}

// CRIOptions are the CRI server's settings: `cri` has them as flags as
// they are, `run` with a "cri-" prefix.
type CRIOptions struct {
	Listen        string
	StreamingAddr string
	CNIConfDir    string
	CNIBinDirs    []string
}

// RunCRI serves the CRI alone (the `cri` command) on o.CRI.Listen until
// ctx ends or a SIGTERM or SIGINT arrives; every pod keeps running. Of
// the rest of o it uses the runtime's and the image store's settings, the
// log and the version.
func RunCRI(ctx context.Context, o Options) error {
	setAgentOOMScore(o.Log)
	lock, err := lockStateRoot(o.Runtime.StateRoot)
	if err != nil {
		return err
	}
	defer lock.Close()
	rt, err := linux.New(o.runtimeConfig())
	if err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	images, err := image.Open(o.imageOptions())
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
			o.Log.Info().Str("signal", s.String()).Msg("stopping the CRI server; pods keep running")
			stop()
		case <-ctx.Done():
		}
	}()
	return serveCRI(ctx, &o, rt, images)
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
			if c.UsesImage(id) {
				return true
			}
		}
		return false
	}
}

// serveCRI serves the CRI for rt and images on o.CRI.Listen, and its
// streaming endpoint on o.CRI.StreamingAddr, until ctx ends. The server's
// records live under the run root, as the runtime's do.
func serveCRI(ctx context.Context, o *Options, rt runtime.Runtime, images *image.Store) error {
	log := o.Log.With().Str("component", "cri").Logger()
	c, root := o.CRI, o.Runtime.StateRoot
	sl, err := net.Listen("tcp", c.StreamingAddr)
	if err != nil {
		return fmt.Errorf("streaming address: %w", err)
	}
	defer sl.Close()
	opts := cri.Options{
		Runtime: rt, Images: images, Streaming: sl,
		StateDir:   filepath.Join(o.Runtime.RunRoot, "cri"),
		SeccompDir: filepath.Join(root, "seccomp"),
		ImageFSDir: images.Dir(), ContainerFSDir: filepath.Join(root, "containers"),
		RuntimeVersion: o.Version,
		Log:            log,
	}
	if c.CNIConfDir != "" {
		// libcni's result cache is ours, not the host's /var/lib/cni.
		opts.Network = cri.NewCNI(c.CNIConfDir, c.CNIBinDirs, filepath.Join(root, "cni"))
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
	l, err := api.Listen(c.Listen)
	if err != nil {
		return fmt.Errorf("CRI socket: %w", err)
	}
	defer os.Remove(c.Listen)
	log.Info().Str("socket", c.Listen).Str("streaming", sl.Addr().String()).Str("cni", c.CNIConfDir).Str("root", root).Msg("CRI server ready")
	notify(log, sdnotify.Ready("serving the CRI on "+c.Listen))
	return srv.Serve(ctx, l)
}
