package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Pod-lifecycle glue (issue 8) that needs the running sandbox: values only
// known once it exists (status.podIP; status.hostIP stays unsupported, the
// reconciler cannot know the node's address) and projected volumes that follow
// their ConfigMap and Secret documents.

// podIPPlaceholder stands for the pod IP in a translated container config
// until the sandbox exists. A NUL can never be part of a real environment
// value or argument, so it cannot collide with user text, and it survives
// $(VAR) expansion into command and args unchanged.
const podIPPlaceholder = "\x00pelagos:status.podIP\x00"

func hasPlaceholder(cfg *runtime.ContainerConfig) bool {
	has := func(s string) bool { return strings.Contains(s, "\x00pelagos:") }
	for _, e := range cfg.Env {
		if has(e.Value) {
			return true
		}
	}
	for _, s := range cfg.Command {
		if has(s) {
			return true
		}
	}
	for _, s := range cfg.Args {
		if has(s) {
			return true
		}
	}
	return false
}

// fillPodIP replaces the placeholders with the sandbox's addresses. The
// config is a copy owned by the caller; slices are cloned before writing.
func (r *Reconciler) fillPodIP(ctx context.Context, boxID string, cfg *runtime.ContainerConfig) error {
	if !hasPlaceholder(cfg) {
		return nil
	}
	sb, err := r.rt.GetSandbox(ctx, boxID)
	if err != nil {
		return fmt.Errorf("container %s: status.podIP: %w", cfg.Name, err)
	}
	podIP := sb.IP
	if podIP == "" {
		// hostNetwork: the pod's address is the host's; loopback is the
		// one address every host has.
		podIP = "127.0.0.1"
	}
	repl := strings.NewReplacer(podIPPlaceholder, podIP)
	env := make([]runtime.EnvVar, len(cfg.Env))
	for i, e := range cfg.Env {
		env[i] = runtime.EnvVar{Name: e.Name, Value: repl.Replace(e.Value)}
	}
	cfg.Env = env
	cfg.Command = replaceAll(cfg.Command, repl)
	cfg.Args = replaceAll(cfg.Args, repl)
	return nil
}

func replaceAll(in []string, repl *strings.Replacer) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = repl.Replace(s)
	}
	return out
}

// syncVolumes rewrites the projected volumes (ConfigMaps, Secrets, the
// downward API) of a running sandbox from the current documents and the
// pod's labels and annotations, and gives persistent volumes the size
// their claims now ask, as the kubelet's periodic
// sync does: when the pod was translated anew (its file or the documents
// it reads changed), when its sandbox is new, and on every full resync.
// The runtime swaps a volume only when its files changed; a runtime
// without the ability (VolumeUpdater) keeps the files it was created with.
func (r *Reconciler) syncVolumes(ctx context.Context, d *DesiredPod, box *runtime.Sandbox) error {
	vu, ok := r.rt.(runtime.VolumeUpdater)
	if !ok || d == nil || box == nil {
		return nil
	}
	r.mu.Lock()
	m := r.memLocked(d.Key)
	done := m.volumesFor == d && m.volumesBox == box.ID
	r.mu.Unlock()
	if done {
		return nil
	}
	var errs []error
	for i := range d.Sandbox.Volumes {
		v := &d.Sandbox.Volumes[i]
		if v.Files == nil && v.Persistent == nil {
			continue
		}
		// Errors name the volume, never its contents (it may be a Secret).
		if err := vu.UpdateVolume(ctx, box.ID, v); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: update volume %q: %w", d.Key, v.Name, err))
		}
	}
	if len(errs) == 0 {
		r.mu.Lock()
		m.volumesFor, m.volumesBox = d, box.ID
		r.mu.Unlock()
	}
	return errors.Join(errs...)
}
