// Command pelagos-agent runs Kubernetes-style pods on a Linux node without
// Kubernetes. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/reexec"
)

func main() {
	// The hidden helper entry points (pause, shim, container init) must run
	// before anything else starts.
	if reexec.Init() {
		return
	}
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
