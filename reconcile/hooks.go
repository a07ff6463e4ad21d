package reconcile

import (
	"context"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Hooks are the seams through which pod lifecycle features (probes, hooks,
// volumes fed by ConfigMaps and Secrets) plug into the loop without changing
// it. Every member is optional.
type Hooks struct {
	// PostStart runs after a container started and before it counts as
	// running; an error kills the container (FailedPostStartHook), and the
	// restart policy takes it from there.
	PostStart func(ctx context.Context, pod *DesiredPod, c *DesiredContainer, ctr *runtime.Container) error
	// PreStop runs before a running container is stopped. Its time counts
	// against the grace period: the stop gets what is left. pod is nil when
	// the manifest is gone.
	PreStop func(ctx context.Context, pod *DesiredPod, ctr *runtime.Container) error
	// Prober hears, after every pass, which containers of a pod run, so it
	// can start and stop probing them. It reports back through
	// Reconciler.SetReady and Reconciler.Kill.
	Prober Prober
}

// Prober watches running containers (readiness, liveness, startup probes).
type Prober interface {
	// Update is called after each pass with the pod (nil once removed) and
	// its running containers. It must not block.
	Update(key runtime.PodKey, pod *DesiredPod, running []*runtime.Container)
}
