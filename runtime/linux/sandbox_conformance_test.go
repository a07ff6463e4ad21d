package linux

import (
	"context"
	"errors"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/runtimetest"
)

func TestConformance(t *testing.T) {
	runtimetest.Run(t, runtimetest.Harness{NewEnv: func(t *testing.T) *runtimetest.Env {
		e := newTestEnv(t)
		return &runtimetest.Env{
			Open: func() runtime.Runtime { return e.open(t) },
			HalfCreate: func(t *testing.T, rt runtime.Runtime, cfg *runtime.SandboxConfig) {
				r := rt.(*Runtime)
				r.crashAt = stepVeth
				defer func() { r.crashAt = "" }()
				if _, err := r.CreateSandbox(context.Background(), cfg); !errors.Is(err, errSimulatedCrash) {
					t.Fatalf("half-create: err = %v; want the simulated crash", err)
				}
			},
			KillPause: func(t *testing.T, rt runtime.Runtime, id string) { killPause(t, rt.(*Runtime), id) },
			Census:    func(t *testing.T) { e.check(t) },
		}
	}})
}
