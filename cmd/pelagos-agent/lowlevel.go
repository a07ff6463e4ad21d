package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/reconcile/metrics"
)

// lowLevelGroup marks the command groups that work on the runtime's state
// directly (sandbox, container, image) rather than through the agent.
const lowLevelGroup = "pelagos.io/low-level"

// addLowLevelFlags gives a low-level command group the socket (to find the
// running agent's roots), the roots and the host-global names: a new
// sandbox needs them, and so does the runtime that image rm and prune ask
// which images containers use.
func addLowLevelFlags(cmd *cobra.Command, g *globalOptions) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[lowLevelGroup] = "true"
	f := cmd.PersistentFlags()
	addSocketFlag(f, g)
	addRootFlags(f, g)
	addNetworkFlags(f, g)
}

// readOnlyCommands are the low-level subcommands that only look.
var readOnlyCommands = map[string]bool{"ls": true, "inspect": true, "logs": true}

// locateState settles where a low-level command works. Roots given on the
// command line are used as they are. Otherwise the agent answering on
// --socket says where its state is (and which host-global names it
// uses), and that wins over the settings file and the defaults: a command
// that looked anywhere else would print empty tables. A command that only
// reads never creates a root: with nothing there it says what to pass.
func (g *globalOptions) locateState(cmd *cobra.Command) error {
	changed := func(name string) bool {
		fl := cmd.Flags().Lookup(name)
		return fl != nil && fl.Changed
	}
	agentSays := false
	if !changed("root") && !changed("run-root") {
		info, err := agentInfo(cmd.Context(), g.Socket)
		switch {
		case err == nil:
			agentSays = true
			for name, v := range map[string]string{"root": info.Root, "run-root": info.RunRoot, "bridge": info.Bridge,
				"subnet": info.Subnet, "netns-prefix": info.NetNSPrefix, "nft-table": info.NFTable, "cgroup-parent": info.CgroupParent} {
				if fl := cmd.Flags().Lookup(name); fl != nil && !changed(name) {
					if err := fl.Value.Set(v); err != nil {
						return fmt.Errorf("the agent on %s reports %s %q: %w", g.Socket, name, v, err)
					}
				}
			}
			g.log.Debug().Str("socket", g.Socket).Str("root", g.Root).Str("runRoot", g.RunRoot).Msg("using the running agent's state")
		case errors.Is(err, errNoAgent):
		default:
			g.log.Warn().Err(err).Msg("cannot ask the agent where its state is; using the settings")
		}
	}
	if !readOnlyCommands[cmd.Name()] {
		return nil
	}
	dirs := []string{g.Root, g.RunRoot}
	if cmd.Parent() != nil && cmd.Parent().Name() == "image" {
		dirs = dirs[:1] // images live under the state root only
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			if agentSays {
				return fmt.Errorf("%s does not exist although the agent on %s uses it", dir, g.Socket)
			}
			return fmt.Errorf("%s does not exist and no agent answers on %s: pass the --root and --run-root "+
				"(or the --socket) of the agent whose state you want to see", dir, g.Socket)
		}
	}
	return nil
}

// errNoAgent means nothing listens on the socket.
var errNoAgent = errors.New("no agent listens")

// agentInfo reads pelagos_agent_info from the agent's metrics.
func agentInfo(ctx context.Context, socket string) (metrics.AgentInfo, error) {
	if _, err := os.Stat(socket); err != nil {
		return metrics.AgentInfo{}, errNoAgent
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/metrics", nil)
	if err != nil {
		return metrics.AgentInfo{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return metrics.AgentInfo{}, errNoAgent // a stale socket file
		}
		return metrics.AgentInfo{}, fmt.Errorf("agent on %s: %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return metrics.AgentInfo{}, fmt.Errorf("agent on %s: GET /metrics: %s", socket, resp.Status)
	}
	info, err := metrics.ParseAgentInfo(resp.Body)
	if err != nil {
		return metrics.AgentInfo{}, fmt.Errorf("agent on %s: %w", socket, err)
	}
	return info, nil
}
