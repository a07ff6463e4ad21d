package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	logfollow "github.com/pelagos-containers/pelagos-agent/runtime/crilog/follow"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux"
)

func init() { registerCommand(newContainerCommand) }

func newContainerCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "container",
		Short: "Run, list, inspect, log, exec into, stop and remove containers directly",
		Long: `Containers run inside pod sandboxes (see "sandbox"). These commands work
on the runtime directly, like crictl, for debugging and scripts; the agent's
own pods are managed from their manifests.`,
	}
	addLowLevelFlags(cmd, g)
	cmd.AddCommand(newContainerRunCommand(g), newContainerListCommand(g), newContainerInspectCommand(g),
		newContainerLogsCommand(g), newContainerExecCommand(g), newContainerStopCommand(g), newContainerRemoveCommand(g))
	return cmd
}

// containerRuntime opens the runtime with the image store under the state
// root.
func (g *globalOptions) containerRuntime() (*linux.Runtime, *image.Store, error) {
	rt, err := linux.New(g.linuxConfig())
	if err != nil {
		return nil, nil, err
	}
	store, err := image.Open(g.withImageCaps(image.Options{Root: g.Root, Logger: g.log}))
	if err != nil {
		rt.Close()
		return nil, nil, err
	}
	rt.SetImageStore(store)
	return rt, store, nil
}

// errSilent carries an exit status that needs no message.
var errSilent = errors.New("")

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func newContainerRunCommand(g *globalOptions) *cobra.Command {
	var (
		sandbox, name, user, memory string
		env                         []string
		cpus                        float64
	)
	cmd := &cobra.Command{
		Use:   "run --sandbox ID|NAME [--name N] [--env K=V]... [--user UID[:GID]] [--memory BYTES] [--cpus N] IMAGE [-- CMD ARG...]",
		Short: "Start a container in a sandbox and print its ID",
		Long: `Start a container from a stored image (pulled if missing) in an existing
sandbox, and print its ID once the process runs. CMD replaces the image's
entrypoint, as a pod's command does.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sandbox == "" {
				return usageErr("--sandbox is required")
			}
			cfg := &runtime.ContainerConfig{Image: args[0], Name: name}
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash != 1 {
					return usageErr("exactly one IMAGE before --, got %d arguments", dash)
				}
				cfg.Command = args[1:]
			} else if len(args) > 1 {
				return usageErr("the command goes after --: %s IMAGE -- CMD ARG...", cmd.CommandPath())
			}
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageErr("--env %q: want K=V", kv)
				}
				cfg.Env = append(cfg.Env, runtime.EnvVar{Name: k, Value: v})
			}
			if user != "" {
				u, gr, hasGroup := strings.Cut(user, ":")
				uid, err := strconv.ParseInt(u, 10, 64)
				if err != nil || uid < 0 {
					return usageErr("--user %q: want UID[:GID]", user)
				}
				cfg.Security.RunAsUser = &uid
				if hasGroup {
					gid, err := strconv.ParseInt(gr, 10, 64)
					if err != nil || gid < 0 {
						return usageErr("--user %q: want UID[:GID]", user)
					}
					cfg.Security.RunAsGroup = &gid
				}
			}
			if memory != "" {
				q, err := resource.ParseQuantity(memory)
				if err != nil || q.Value() <= 0 {
					return usageErr("--memory %q: want bytes (or a quantity such as 64Mi)", memory)
				}
				cfg.Resources.MemoryLimit = q.Value()
			}
			if cpus < 0 {
				return usageErr("--cpus %v: must not be negative", cpus)
			}
			cfg.Resources.CPULimitMilli = int64(cpus * 1000)
			rt, store, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			sb, err := resolveSandbox(cmd.Context(), rt, sandbox)
			if err != nil {
				return err
			}
			cfg.SandboxID = sb.ID
			if _, err := store.EnsureImage(cmd.Context(), cfg.Image, runtime.PullOptions{Policy: runtime.PullIfNotPresent}); err != nil {
				return err
			}
			if cfg.Name == "" {
				cfg.Name = "c-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
			}
			c, err := rt.StartContainer(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, c.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sandbox, "sandbox", "", "sandbox ID or name (required)")
	f.StringVar(&name, "name", "", "container name (default: generated)")
	f.StringArrayVar(&env, "env", nil, "environment variable K=V (repeatable)")
	f.StringVar(&user, "user", "", "run as UID[:GID]")
	f.StringVar(&memory, "memory", "", "memory limit in bytes (or a quantity: 64Mi)")
	f.Float64Var(&cpus, "cpus", 0, "CPU limit in cores (0.5 = half a core)")
	return cmd
}

// containerInfo is `container inspect`'s JSON object and one element of
// `container ls --json`.
type containerInfo struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	SandboxID  string            `json:"sandbox_id"`
	Pod        string            `json:"pod"`
	Image      string            `json:"image"`
	ImageID    string            `json:"image_id,omitempty"`
	State      string            `json:"state"`
	PID        int               `json:"pid"`
	ExitCode   *int              `json:"exit_code"`
	Signal     string            `json:"signal,omitempty"`
	Reason     string            `json:"reason"`
	Message    string            `json:"message,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  *time.Time        `json:"started_at"`
	FinishedAt *time.Time        `json:"finished_at"`
	LogPath    string            `json:"log_path"`
	CgroupPath string            `json:"cgroup_path"`
	Labels     map[string]string `json:"labels,omitempty"`
}

func infoOf(c *runtime.Container) containerInfo {
	in := containerInfo{
		ID: c.ID, Name: c.Name, SandboxID: c.SandboxID, Pod: c.Pod.String(), Image: c.Image, ImageID: c.ImageID,
		State: string(c.State), PID: c.PID, Signal: c.Signal, Reason: c.Reason, Message: c.Message,
		CreatedAt: c.CreatedAt, LogPath: c.LogPath, CgroupPath: c.CgroupPath, Labels: c.Labels,
	}
	if c.State == runtime.ContainerExited {
		code := c.ExitCode
		in.ExitCode = &code
		in.PID = 0
	}
	if !c.StartedAt.IsZero() {
		in.StartedAt = &c.StartedAt
	}
	if !c.FinishedAt.IsZero() {
		in.FinishedAt = &c.FinishedAt
	}
	return in
}

func newContainerListCommand(g *globalOptions) *cobra.Command {
	var sandbox string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls [--sandbox ID] [--json]",
		Aliases: []string{"list"},
		Short:   "List containers: ID NAME SANDBOX IMAGE STATE PID EXIT CODE",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, _, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			filter := runtime.ContainerFilter{}
			if sandbox != "" {
				sb, err := resolveSandbox(cmd.Context(), rt, sandbox)
				if err != nil {
					return err
				}
				filter.SandboxID = sb.ID
			}
			list, err := rt.ListContainers(cmd.Context(), filter)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]containerInfo, 0, len(list))
				for _, c := range list {
					out = append(out, infoOf(c))
				}
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSANDBOX\tIMAGE\tSTATE\tPID\tEXIT CODE")
			for _, c := range list {
				in := infoOf(c)
				pid, code := "-", "-"
				if in.PID > 0 {
					pid = strconv.Itoa(in.PID)
				}
				if in.ExitCode != nil {
					code = strconv.Itoa(*in.ExitCode)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Name, c.SandboxID, c.Image, c.State, pid, code)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&sandbox, "sandbox", "", "only containers of this sandbox (ID or name)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func getContainer(ctx context.Context, rt *linux.Runtime, id string) (*runtime.Container, error) {
	c, err := rt.GetContainer(ctx, id)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil, &exitError{code: exitFailure, err: fmt.Errorf("container %q: %w", id, runtime.ErrNotFound)}
	}
	return c, err
}

func newContainerInspectCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect ID",
		Short: "Print a container as a JSON object",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, _, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			c, err := getContainer(cmd.Context(), rt, args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(infoOf(c))
		},
	}
}

func newContainerLogsCommand(g *globalOptions) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs ID [-f]",
		Short: "Print a container's log (stdout and stderr); -f follows until it exits",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, _, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			c, err := getContainer(cmd.Context(), rt, args[0])
			if err != nil {
				return err
			}
			if !follow {
				return crilog.Read(c.LogPath, g.stdout, crilog.ReadOptions{})
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			done := make(chan struct{})
			exits, err := rt.WatchExits(ctx)
			if err != nil {
				return err
			}
			go func() {
				defer close(done)
				for {
					// Checked after the watch starts, so an exit in between
					// is not missed.
					if c, err := rt.GetContainer(ctx, c.ID); err != nil || c.State == runtime.ContainerExited {
						return
					}
					select {
					case <-ctx.Done():
						return
					case <-exits:
					}
				}
			}()
			return logfollow.Follow(ctx, c.LogPath, g.stdout, crilog.ReadOptions{}, done)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the container exits")
	return cmd
}

func newContainerExecCommand(g *globalOptions) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "exec ID -- CMD [ARG...]",
		Short: "Run a command in a running container; exits with the command's status",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usageErr("usage: %s ID -- CMD [ARG...]", cmd.CommandPath())
			}
			rt, _, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			if _, err := getContainer(cmd.Context(), rt, args[0]); err != nil {
				return err
			}
			code, err := rt.Exec(cmd.Context(), args[0], runtime.ExecOptions{
				Cmd: args[1:], Stdin: os.Stdin, Stdout: g.stdout, Stderr: g.stderr, Timeout: timeout,
			})
			if err != nil {
				return err
			}
			if code != 0 {
				// The command's own status, without an "Error:" line: the
				// command said what it had to.
				return &exitError{code: code, err: errSilent}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "kill the command after this long (0: no limit)")
	return cmd
}

func newContainerStopCommand(g *globalOptions) *cobra.Command {
	var seconds int
	cmd := &cobra.Command{
		Use:   "stop [--time S] ID",
		Short: "Stop a container: stop signal, up to --time seconds, then SIGKILL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if seconds < 0 {
				return usageErr("--time %d: must not be negative", seconds)
			}
			rt, _, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			if _, err := getContainer(cmd.Context(), rt, args[0]); err != nil {
				return err
			}
			return rt.StopContainer(cmd.Context(), args[0], time.Duration(seconds)*time.Second)
		},
	}
	cmd.Flags().IntVarP(&seconds, "time", "t", 10, "seconds to wait after the stop signal")
	return cmd
}

func newContainerRemoveCommand(g *globalOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [-f] ID",
		Short: "Remove a stopped container (-f: kill it first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, _, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			c, err := getContainer(cmd.Context(), rt, args[0])
			if err != nil {
				return err
			}
			if c.State == runtime.ContainerRunning && !force {
				return &exitError{code: exitFailure, err: fmt.Errorf("container %s is running: stop it first or use -f", c.ID)}
			}
			return rt.RemoveContainer(cmd.Context(), c.ID)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container before removing it")
	return cmd
}
