package linux

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// containers holds the container half of the Runtime. This file is a
// placeholder that keeps the tree compiling; the container work replaces it.
type containers struct{}

// removeAllInSandbox stops and removes every container of the sandbox. The
// placeholder has no containers to remove.
func (c *containers) removeAllInSandbox(ctx context.Context, sandboxID string) error {
	return nil
}

func (r *Runtime) StartContainer(ctx context.Context, cfg *runtime.ContainerConfig) (*runtime.Container, error) {
	return nil, fmt.Errorf("start container %q: %w", cfg.Name, errors.ErrUnsupported)
}

func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	return fmt.Errorf("stop container %q: %w", id, errors.ErrUnsupported)
}

func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	return fmt.Errorf("remove container %q: %w", id, errors.ErrUnsupported)
}

func (r *Runtime) GetContainer(ctx context.Context, id string) (*runtime.Container, error) {
	return nil, fmt.Errorf("get container %q: %w", id, errors.ErrUnsupported)
}

func (r *Runtime) ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]*runtime.Container, error) {
	return nil, fmt.Errorf("list containers: %w", errors.ErrUnsupported)
}

func (r *Runtime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	return -1, fmt.Errorf("exec in container %q: %w", id, errors.ErrUnsupported)
}
