package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/rootfs"
)

// This file holds what a caller that prepares more than the reconciler
// does needs (the CRI server, for kubelet): a log path of its own, host
// paths it made ready as mounts, limits changed in place, and a pod
// network of its own making (CNI).

// checkExternalNetwork refuses what SandboxConfig.ExternalNetwork cannot
// go with: the caller's network publishes the ports.
func checkExternalNetwork(cfg *runtime.SandboxConfig, ns runtime.NamespaceOptions) error {
	if !cfg.ExternalNetwork {
		return nil
	}
	if ns.Network != runtime.NamespacePod {
		return fmt.Errorf("externalNetwork with network namespace %s: only a pod's own namespace can be handed over: %w", ns.Network, runtime.ErrInvalidConfig)
	}
	if len(cfg.Ports) > 0 {
		return fmt.Errorf("externalNetwork with %d ports: the caller's network publishes them: %w", len(cfg.Ports), runtime.ErrInvalidConfig)
	}
	return nil
}

// setupExternalNetwork is step 3 of a sandbox whose network the caller
// makes: the namespace pinned by name, its loopback up, nothing else.
func (r *Runtime) setupExternalNetwork(rec *sandboxRecord) error {
	nsf, err := r.pinNetNS(rec)
	if err != nil {
		return err
	}
	defer nsf.Close()
	h, err := netlink.NewHandleAt(netns.NsHandle(int(nsf.Fd())), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("create sandbox %s: netlink in pod netns: %w", rec.ID, err)
	}
	defer h.Close()
	// lo is always index 1 in a new namespace.
	if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}); err != nil {
		return fmt.Errorf("create sandbox %s: set lo up: %w", rec.ID, err)
	}
	return nil
}

var _ runtime.ResourceUpdater = (*Runtime)(nil)

// useCallerLogPath applies ContainerConfig.LogPath: the log goes where the
// caller asks, and its rotation replaces ours.
func useCallerLogPath(rec *record.Container, cfg *runtime.ContainerConfig) error {
	if cfg.LogPath == "" {
		return nil
	}
	if !filepath.IsAbs(cfg.LogPath) || filepath.Clean(cfg.LogPath) != cfg.LogPath {
		return fmt.Errorf("logPath %q: not an absolute, clean path: %w", cfg.LogPath, runtime.ErrInvalidConfig)
	}
	rec.LogPath, rec.LogFollow = cfg.LogPath, true
	return nil
}

// imageUser is the user the container runs as when RunAsUser is not set:
// the caller's user name, or the image's USER.
func imageUser(cfg *runtime.ContainerConfig, img *runtime.Image) string {
	if cfg.Security.RunAsUserName != "" {
		return cfg.Security.RunAsUserName
	}
	return img.Config.User
}

// hostMountBind is the bind of mounts[i] when it names a host path. The
// path must exist: making it is the caller's job, and a typo must not
// become an empty directory on the host.
func hostMountBind(i int, m runtime.Mount) (rootfs.Bind, error) {
	if m.Volume != "" || m.SubPath != "" {
		return rootfs.Bind{}, fmt.Errorf("mounts[%d]: hostPath %q goes without volume and subPath: %w", i, m.HostPath, runtime.ErrInvalidConfig)
	}
	if !filepath.IsAbs(m.HostPath) {
		return rootfs.Bind{}, fmt.Errorf("mounts[%d]: hostPath %q: not absolute: %w", i, m.HostPath, runtime.ErrInvalidConfig)
	}
	if !filepath.IsAbs(m.ContainerPath) {
		return rootfs.Bind{}, fmt.Errorf("mounts[%d]: containerPath %q: not absolute: %w", i, m.ContainerPath, runtime.ErrInvalidConfig)
	}
	if _, err := os.Stat(m.HostPath); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return rootfs.Bind{}, fmt.Errorf("mounts[%d]: hostPath: %w: %w", i, err, runtime.ErrInvalidConfig)
		}
		return rootfs.Bind{}, fmt.Errorf("mounts[%d]: hostPath: %w", i, err)
	}
	return rootfs.Bind{Source: m.HostPath, Destination: m.ContainerPath, ReadOnly: m.ReadOnly}, nil
}

// UpdateContainerResources implements runtime.ResourceUpdater: the new
// limits are written to the running container's cgroup, then recorded. A
// zero keeps the limit in force (the contract's "unset"), so an update
// never lifts a limit by accident.
func (r *Runtime) UpdateContainerResources(ctx context.Context, id string, res runtime.Resources) error {
	if err := validID(id); err != nil {
		return fmt.Errorf("update container %q: %w", id, runtime.ErrNotFound)
	}
	unlock := r.lockID("container/" + id)
	defer unlock()
	e, err := r.ctr.index.get(id)
	if err != nil {
		return fmt.Errorf("update container: %w", err)
	}
	c, err := e.observe()
	if err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	if c.State != runtime.ContainerRunning {
		return fmt.Errorf("update container %s: it is %s, not running: %w", id, c.State, runtime.ErrConflict)
	}
	// The index's record is shared: the update is made on a copy.
	cp := *e.rec
	rec := &cp
	next := rec.Config.Resources
	set := func(cur *int64, v int64) {
		if v != 0 {
			*cur = v
		}
	}
	set(&next.MemoryLimit, res.MemoryLimit)
	set(&next.MemoryRequest, res.MemoryRequest)
	set(&next.CPULimitMilli, res.CPULimitMilli)
	set(&next.CPURequestMilli, res.CPURequestMilli)
	set(&next.PidsLimit, res.PidsLimit)
	cgr := cgroups.Resources{MemoryMax: res.MemoryLimit, CPULimitMilli: res.CPULimitMilli,
		CPURequestMilli: res.CPURequestMilli, PidsMax: res.PidsLimit}
	if err := cgr.Validate(); err != nil {
		return fmt.Errorf("update container %s: %w: %w", id, err, runtime.ErrInvalidConfig)
	}
	cg, err := r.cgroupManager(rec.CgroupParent)
	if err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	// Create writes what is set and leaves the rest; the cgroup must be
	// there already, or it would make a fresh, empty one.
	if !cg.Exists(rec.CgroupRel) {
		return fmt.Errorf("update container %s: cgroup %s is gone: %w", id, rec.CgroupPath, runtime.ErrConflict)
	}
	if err := cg.Create(rec.CgroupRel, cgr); err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	rec.Config.Resources = next
	if err := record.WriteJSON(filepath.Join(rec.Dir, record.ContainerFile), rec); err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	st, err := rec.State()
	if err != nil {
		st = nil
	}
	r.ctr.index.put(rec, st)
	return nil
}
