package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
)

func init() { registerCommand(newExecCommand) }

func newExecCommand(g *globalOptions) *cobra.Command {
	var namespace, container string
	var stdin, tty bool
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-it] -- COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return &exitError{code: exitUsage, err: fmt.Errorf("usage: exec POD -- COMMAND [ARG...]")}
			}
			opts := api.ExecOptions{Container: container, Cmd: args[1:], TTY: tty, Stdout: g.stdout, Stderr: g.stderr}
			if stdin {
				opts.Stdin = cmd.InOrStdin()
				if opts.Stdin == nil {
					opts.Stdin = os.Stdin
				}
			}
			code, err := g.client().Exec(cmd.Context(), namespace, args[0], opts)
			if err != nil {
				return err
			}
			if code != 0 {
				// The command's own status, without an error line: as kubectl.
				return &exitError{code: code, err: fmt.Errorf("")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	addSocketFlag(f, g)
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace")
	f.StringVarP(&container, "container", "c", "", "container (default: the pod's first container)")
	f.BoolVarP(&stdin, "stdin", "i", false, "pass stdin to the command")
	f.BoolVarP(&tty, "tty", "t", false, "allocate a terminal for the command")
	return cmd
}
