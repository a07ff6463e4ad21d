// Package runtimetest is the conformance suite every runtime.Runtime must
// pass: the fake runs it everywhere, runtime/linux as root. A fake is only
// trusted because it passes the same cases as the real thing.
package runtimetest

import (
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Env is one test's view of an implementation.
type Env struct {
	// Open returns a runtime object over this test's state. Calling it again
	// returns a fresh object over the same state, as a restarted agent would
	// see it.
	Open func() runtime.Runtime
	// HalfCreate starts creating a sandbox for cfg and stops midway, as a
	// crash would, leaving whatever the implementation had made so far. It
	// returns the sandbox ID (cfg.ID is set by the suite).
	HalfCreate func(t *testing.T, rt runtime.Runtime, cfg *runtime.SandboxConfig)
	// KillPause kills the process holding the sandbox open, as an outside
	// SIGKILL would.
	KillPause func(t *testing.T, rt runtime.Runtime, id string)
	// Census, when set, fails the test if anything the test made is left
	// once every sandbox was removed. The suite calls it at the end of each
	// case.
	Census func(t *testing.T)
	// Images and TestImage, when set, let container cases obtain an image:
	// EnsureImage(TestImage, IfNotPresent) must succeed.
	Images    runtime.ImageService
	TestImage string
	// ServeHTTP, when set, makes an HTTP server listen on port inside the
	// sandbox (a container for a real runtime): the port-forward case
	// needs something to reach.
	ServeHTTP func(t *testing.T, rt runtime.Runtime, sb *runtime.Sandbox, port int32)
}

// Harness adapts an implementation to the suite.
type Harness struct {
	// NewEnv prepares an isolated environment for one test case and
	// registers its cleanup with t.
	NewEnv func(t *testing.T) *Env
	// NoNetwork is set by implementations whose sandboxes have no IP.
	NoNetwork bool
}

// groups are the case groups Run runs; each file of cases adds its own
// from init, so sandbox and container cases grow independently.
var groups []func(t *testing.T, h Harness)

// Run runs every conformance case against h.
func Run(t *testing.T, h Harness) {
	for _, g := range groups {
		g(t, h)
	}
}
