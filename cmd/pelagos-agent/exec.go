package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/runtime"
)

func init() { registerCommand(newExecCommand) }

func newExecCommand(g *globalOptions) *cobra.Command {
	var namespace, container string
	var stdin, tty bool
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-it] -- COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Long: "Run a command in a running container, over the same protocol as kubectl exec. With -t the\n" +
			"command gets a terminal sized like yours; with -i -t your terminal is put in raw mode, so\n" +
			"keys such as Ctrl-C reach the command.",
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: completeOnePod(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return &exitError{code: exitUsage, err: fmt.Errorf("usage: exec POD -- COMMAND [ARG...]")}
			}
			opts := api.ExecOptions{Container: container, Cmd: args[1:], TTY: tty, Stdout: g.stdout, Stderr: g.stderr}
			in := cmd.InOrStdin()
			if stdin {
				opts.Stdin = in
			}
			if tty {
				done, ok, err := setupTerminal(in, stdin, &opts)
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(g.stderr, "Unable to use a TTY - input is not a terminal or the right kind of file")
					opts.TTY = false
				}
				defer done()
			}
			code, err := g.client().Exec(cmd.Context(), namespace, args[0], opts)
			if err != nil {
				return err
			}
			if code != 0 {
				// The command's own status, without an error line: as kubectl.
				return &exitError{code: code, err: errSilent}
			}
			return nil
		},
	}
	f := cmd.Flags()
	addSocketFlag(f, g)
	addNamespaceFlags(cmd, g, &namespace, nil)
	f.StringVarP(&container, "container", "c", "", "container (default: the pod's first container)")
	_ = cmd.RegisterFlagCompletionFunc("container", completeContainerFlag(g))
	f.BoolVarP(&stdin, "stdin", "i", false, "pass stdin to the command")
	f.BoolVarP(&tty, "tty", "t", false, "allocate a terminal for the command")
	return cmd
}

// setupTerminal gives the command a terminal like the user's: its size
// now and on every change (SIGWINCH), and, when input is passed, raw mode
// for the user's terminal until done is called. ok is false when the
// input is not a terminal.
func setupTerminal(in io.Reader, stdin bool, opts *api.ExecOptions) (done func(), ok bool, err error) {
	f, isFile := in.(*os.File)
	if !isFile || !term.IsTerminal(int(f.Fd())) {
		return func() {}, false, nil
	}
	fd := int(f.Fd())
	var cleanups []func()
	done = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	if stdin {
		state, err := term.MakeRaw(fd)
		if err != nil {
			return func() {}, false, fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		cleanups = append(cleanups, func() { _ = term.Restore(fd, state) })
	}
	sizes := make(chan runtime.TermSize, 1)
	send := func() {
		w, h, err := term.GetSize(fd)
		if err != nil {
			return
		}
		select {
		case <-sizes: // not sent yet: the newer size wins
		default:
		}
		sizes <- runtime.TermSize{Width: uint16(w), Height: uint16(h)}
	}
	send()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				send()
			case <-stop:
				return
			}
		}
	}()
	cleanups = append(cleanups, func() { signal.Stop(winch); close(stop) })
	opts.Resize = sizes
	return done, true, nil
}
