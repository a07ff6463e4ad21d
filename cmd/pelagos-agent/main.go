// Command pelagos-agent runs Kubernetes-style pods on a Linux node without
// Kubernetes. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// The pause, shims and container inits are separate helper binaries that
// the agent embeds and runs from sealed copies (runtime/linux/helperbin):
// this binary is never re-executed as one.
func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(exitCode(err))
}

// exitError carries a specific exit status out of run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
