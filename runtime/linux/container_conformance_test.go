package linux

import (
	"strconv"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/runtimetest"
)

// TestContainerConformance runs the container cases of the conformance
// suite against the kernel, with the busybox image in a store of the test's
// own and the full census after each case.
func TestContainerConformance(t *testing.T) {
	runtimetest.RunContainers(t, runtimetest.Harness{NewEnv: func(t *testing.T) *runtimetest.Env {
		e := newCtrEnv(t, nil)
		// The env's own sandbox is not the suite's: remove it up front.
		if err := e.rt.RemoveSandbox(t.Context(), e.sb.ID); err != nil {
			t.Fatal(err)
		}
		return &runtimetest.Env{
			Open: func() runtime.Runtime {
				rt := e.open(t)
				rt.SetImageStore(e.store)
				return rt
			},
			Census: func(t *testing.T) {
				e.census.Check(t, 10e9)
				if kids, _ := e.cg.Children(); len(kids) != 0 {
					t.Errorf("census: cgroups left below %s: %v", e.cg.Parent(), kids)
				}
			},
			Images:    e.store,
			TestImage: testImage,
			ServeHTTP: func(t *testing.T, rt runtime.Runtime, sb *runtime.Sandbox, port int32) {
				cfg := &runtime.ContainerConfig{SandboxID: sb.ID, Name: "httpd", Image: testImage,
					Command: []string{"/bin/busybox", "httpd", "-f", "-p", strconv.Itoa(int(port)), "-h", "/etc"}}
				if _, err := rt.StartContainer(t.Context(), cfg); err != nil {
					t.Fatal(err)
				}
			},
		}
	}})
}

func (e *ctrEnv) open(t *testing.T) *Runtime {
	return openRuntime(t, &e.cfg)
}
