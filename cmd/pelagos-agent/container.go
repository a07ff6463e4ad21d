package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
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
	_ = cmd.RegisterFlagCompletionFunc("sandbox", completeSandboxes(g))
	f.StringVar(&name, "name", "", "container name (default: generated)")
	f.StringArrayVar(&env, "env", nil, "environment variable K=V (repeatable)")
	f.StringVar(&user, "user", "", "run as UID[:GID]")
	f.StringVar(&memory, "memory", "", "memory limit in bytes (or a quantity: 64Mi)")
	f.Float64Var(&cpus, "cpus", 0, "CPU limit in cores (0.5 = half a core)")
	return cmd
}

// containerInfo is what `container inspect` and `container ls -o json`
// print: the runtime's container with its field names, an exit code only
// once it has exited (null before), and no PID after.
type containerInfo struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	SandboxID   string            `json:"sandboxID"`
	Pod         runtime.PodKey    `json:"pod"`
	Attempt     int               `json:"attempt"`
	Image       string            `json:"image"`
	ImageID     string            `json:"imageID,omitempty"`
	State       string            `json:"state"`
	PID         int               `json:"pid,omitempty"`
	ExitCode    *int              `json:"exitCode"`
	Signal      string            `json:"signal,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Message     string            `json:"message,omitempty"`
	CreatedAt   time.Time         `json:"createdAt"`
	StartedAt   *time.Time        `json:"startedAt"`
	FinishedAt  *time.Time        `json:"finishedAt"`
	LogPath     string            `json:"logPath"`
	CgroupPath  string            `json:"cgroupPath"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func infoOf(c *runtime.Container) containerInfo {
	in := containerInfo{
		ID: c.ID, Name: c.Name, SandboxID: c.SandboxID, Pod: c.Pod, Attempt: c.Attempt, Image: c.Image, ImageID: c.ImageID,
		State: string(c.State), PID: c.PID, Signal: c.Signal, Reason: c.Reason, Message: c.Message,
		CreatedAt: c.CreatedAt, LogPath: c.LogPath, CgroupPath: c.CgroupPath, Labels: c.Labels, Annotations: c.Annotations,
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
	o := &listOptions{}
	var sandbox string
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:     "ls [-a] [--sandbox ID|NAME] [-o table|json|yaml] [--no-trunc] [-q]",
		Aliases: []string{"list"},
		Short:   "List running containers (-a: all): ID NAME POD SANDBOX IMAGE STATE ATTEMPT CREATED PID EXIT CODE",
		Long: `List the running containers, or with -a every container, as crictl ps
does. -o json and -o yaml print each as container inspect does (camelCase
fields); the table cuts IDs to 13 characters unless --no-trunc, and any
unique beginning of an ID names a container.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				// Printed here, not by cobra, which would write it into
				// the JSON on stdout.
				fmt.Fprintln(g.stderr, "Flag --json has been deprecated, use -o json")
				o.output = "json"
			}
			if err := checkOutput(o.output); err != nil {
				return err
			}
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
			infos := []containerInfo{}
			for _, c := range list {
				if all || c.State == runtime.ContainerRunning {
					infos = append(infos, infoOf(c))
				}
			}
			return printContainers(g.stdout, infos, o, clock())
		},
	}
	addListFlags(cmd, o)
	cmd.Flags().BoolVarP(&all, "all", "a", false, "every container, not only running ones")
	cmd.Flags().StringVar(&sandbox, "sandbox", "", "only containers of this sandbox (ID or name)")
	_ = cmd.RegisterFlagCompletionFunc("sandbox", completeSandboxes(g))
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	_ = cmd.Flags().MarkHidden("json")
	return cmd
}

func printContainers(w io.Writer, infos []containerInfo, o *listOptions, now time.Time) error {
	return printList(w, infos, o, func(in containerInfo) string { return in.ID },
		"ID\tNAME\tPOD\tSANDBOX\tIMAGE\tSTATE\tATTEMPT\tCREATED\tPID\tEXIT CODE", func(in containerInfo) string {
			pid, code := pidAndCode(in)
			return strings.Join([]string{o.id(in.ID), in.Name, in.Pod.String(), o.id(in.SandboxID), in.Image, in.State,
				strconv.Itoa(in.Attempt), since(in.CreatedAt, now), pid, code}, "\t")
		})
}

// pidAndCode are a container's PID while it runs and exit code once it
// has exited, "-" otherwise.
func pidAndCode(in containerInfo) (pid, code string) {
	pid, code = "-", "-"
	if in.PID > 0 {
		pid = strconv.Itoa(in.PID)
	}
	if in.ExitCode != nil {
		code = strconv.Itoa(*in.ExitCode)
	}
	return pid, code
}

// getContainer finds a container by ID, else by the unique beginning of
// its ID (tables show 13 characters).
func getContainer(ctx context.Context, rt runtime.Runtime, id string) (*runtime.Container, error) {
	c, err := rt.GetContainer(ctx, id)
	if !errors.Is(err, runtime.ErrNotFound) && !errors.Is(err, runtime.ErrInvalidConfig) {
		return c, err
	}
	list, lerr := rt.ListContainers(ctx, runtime.ContainerFilter{})
	if lerr != nil {
		return nil, lerr
	}
	var match []*runtime.Container
	for _, c := range list {
		if id != "" && strings.HasPrefix(c.ID, id) {
			match = append(match, c)
		}
	}
	return onlyOne("container ID prefix", id, match, func(c *runtime.Container) string { return c.ID })
}

func newContainerInspectCommand(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:               "inspect ID...",
		Short:             "Print containers (-o json, yaml or table); one as an object, several as a list",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeContainers(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			rt, _, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			var infos []containerInfo
			for _, id := range args {
				c, err := getContainer(cmd.Context(), rt, id)
				if err != nil {
					return err
				}
				infos = append(infos, infoOf(c))
			}
			return printInspected(g.stdout, infos, output, containerFields)
		},
	}
	addInspectOutput(cmd, &output)
	return cmd
}

func containerFields(in containerInfo) []field {
	when := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	pid, code := pidAndCode(in)
	return []field{
		{"ID", in.ID}, {"Name", in.Name}, {"Pod", in.Pod.String()}, {"Sandbox", in.SandboxID}, {"Attempt", strconv.Itoa(in.Attempt)},
		{"Image", in.Image}, {"Image ID", dash(in.ImageID)}, {"State", in.State}, {"PID", pid}, {"Exit Code", code},
		{"Reason", dash(in.Reason)}, {"Created", in.CreatedAt.UTC().Format(time.RFC3339)}, {"Started", when(in.StartedAt)},
		{"Finished", when(in.FinishedAt)}, {"Log", dash(in.LogPath)}, {"Cgroup", dash(in.CgroupPath)},
		{"Labels", keyValues(in.Labels)},
	}
}

func newContainerLogsCommand(g *globalOptions) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:               "logs ID [-f]",
		Short:             "Print a container's log (stdout and stderr); -f follows until it exits",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeContainers(g),
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
		Use:               "exec ID -- CMD [ARG...]",
		Short:             "Run a command in a running container; exits with the command's status",
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: completeContainers(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usageErr("usage: %s ID -- CMD [ARG...]", cmd.CommandPath())
			}
			rt, _, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			c, err := getContainer(cmd.Context(), rt, args[0])
			if err != nil {
				return err
			}
			code, err := rt.Exec(cmd.Context(), c.ID, runtime.ExecOptions{
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
		Use:               "stop [--time S] ID",
		Short:             "Stop a container: stop signal, up to --time seconds, then SIGKILL",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeContainers(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if seconds < 0 {
				return usageErr("--time %d: must not be negative", seconds)
			}
			rt, _, err := g.containerRuntime()
			if err != nil {
				return err
			}
			defer rt.Close()
			c, err := getContainer(cmd.Context(), rt, args[0])
			if err != nil {
				return err
			}
			return rt.StopContainer(cmd.Context(), c.ID, time.Duration(seconds)*time.Second)
		},
	}
	cmd.Flags().IntVarP(&seconds, "time", "t", 10, "seconds to wait after the stop signal")
	return cmd
}

func newContainerRemoveCommand(g *globalOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:               "rm [-f] ID",
		Short:             "Remove a stopped container (-f: kill it first)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeContainers(g),
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
