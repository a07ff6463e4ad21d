package linux

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/caps"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/rootfs"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/seccomp"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/shim"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

var (
	_ runtime.ExitWatcher   = (*Runtime)(nil)
	_ runtime.StatsProvider = (*Runtime)(nil)
)

// ImageLayers is what containers need from the image store: the unpacked
// layers of an image, lowest first, and its config. *image.Store has it.
type ImageLayers interface {
	LayerDirs(ctx context.Context, ref string) ([]string, *runtime.Image, error)
}

// DefaultPidsLimit is pids.max of a container when neither the pod nor the
// agent's configuration sets one.
const DefaultPidsLimit = 4096

// containers holds the container half of the Runtime: handles that are
// cheap to rebuild, never state (records under the run root are the truth).
type containers struct {
	rt      *Runtime // the Runtime holding this as its ctr field
	mu      sync.Mutex
	images  ImageLayers
	cgroups map[string]*cgroups.Manager // by configured parent

	// spares keeps shim daemons started ahead of need (shims.go).
	spares shimPool
	// index holds the container records read so far (index.go).
	index ctrIndex
}

// SetImageStore sets where images come from. Without it the runtime opens
// the store under its state root on first use.
func (r *Runtime) SetImageStore(s ImageLayers) {
	r.ctr.mu.Lock()
	r.ctr.images = s
	r.ctr.mu.Unlock()
}

func (r *Runtime) imageStore() (ImageLayers, error) {
	r.ctr.mu.Lock()
	defer r.ctr.mu.Unlock()
	if r.ctr.images == nil {
		s, err := image.Open(image.Options{Root: r.cfg.StateRoot, Logger: r.log, InsecureRegistries: r.cfg.InsecureRegistries})
		if err != nil {
			return nil, err
		}
		r.ctr.images = s
	}
	return r.ctr.images, nil
}

func (r *Runtime) cgroupManager(parent string) (*cgroups.Manager, error) {
	r.ctr.mu.Lock()
	defer r.ctr.mu.Unlock()
	if m := r.ctr.cgroups[parent]; m != nil {
		return m, nil
	}
	m, err := cgroups.New(parent)
	if err != nil {
		return nil, err
	}
	if r.ctr.cgroups == nil {
		r.ctr.cgroups = map[string]*cgroups.Manager{}
	}
	r.ctr.cgroups[parent] = m
	return m, nil
}

// termLogFile is the termination message file in a container's run
// directory; the other files there are the record package's.
const termLogFile = "termination-log"

func (r *Runtime) containersDir() string         { return record.ContainersDir(r.cfg.RunRoot) }
func (r *Runtime) containerDir(id string) string { return filepath.Join(r.containersDir(), id) }
func (r *Runtime) containerStateDir(id string) string {
	return filepath.Join(r.cfg.StateRoot, "containers", id)
}
func (r *Runtime) sandboxLogDir(sandboxID string) string {
	return filepath.Join(r.cfg.StateRoot, "logs", sandboxID)
}
func podCgroup(sandboxID string) string { return "pod-" + sandboxID }
func ctrCgroup(sandboxID, id string) string {
	return podCgroup(sandboxID) + "/ctr-" + id
}

func readContainerRecord(dir string) (*record.Container, error) {
	rec, err := record.ReadContainer(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("container %s: %w", filepath.Base(dir), runtime.ErrNotFound)
		}
		return nil, fmt.Errorf("container %s: %w", filepath.Base(dir), err)
	}
	return rec, nil
}

// containerRecord returns the record of container id (ErrNotFound when
// there is none), from the index.
func (r *Runtime) containerRecord(id string) (*record.Container, error) {
	e, err := r.ctr.index.get(id)
	if err != nil {
		return nil, err
	}
	return e.rec, nil
}

// observeCreated is the container as its intent record describes it.
func observeCreated(rec *record.Container) *runtime.Container {
	return &runtime.Container{
		ID: rec.ID, SandboxID: rec.SandboxID, Pod: rec.Pod, Name: rec.Config.Name,
		Attempt: rec.Config.Attempt, Image: rec.Config.Image, ImageID: rec.ImageID, MountImageIDs: rec.MountImageIDs(),
		State: runtime.ContainerCreated, CreatedAt: rec.CreatedAt, LogPath: rec.LogPath,
		CgroupPath: rec.CgroupPath, Labels: maps.Clone(rec.Config.Labels),
		Annotations: maps.Clone(rec.Config.Annotations),
	}
}

func newContainerID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StartContainer implements runtime.Runtime.
func (r *Runtime) StartContainer(ctx context.Context, cfg *runtime.ContainerConfig) (*runtime.Container, error) {
	if cfg.SandboxID == "" || cfg.Name == "" || cfg.Image == "" {
		return nil, fmt.Errorf("start container %q: sandbox ID, name and image are required: %w", cfg.Name, runtime.ErrInvalidConfig)
	}
	id := cfg.ID
	if id == "" {
		id = newContainerID()
	}
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if err := validID(cfg.SandboxID); err != nil {
		return nil, fmt.Errorf("start container %q: sandbox %q: %w", cfg.Name, cfg.SandboxID, runtime.ErrNotFound)
	}
	// The spare shim pool is topped up once this start is reported, so the
	// refill never competes with it.
	defer r.ctr.spares.fill()
	// The sandbox lock first, as RemoveSandbox takes it before removing
	// containers: a start never races the sandbox's teardown, and two
	// starts of one name and attempt cannot both pass the check below.
	unlockSandbox := r.lockID(cfg.SandboxID)
	defer unlockSandbox()
	unlock := r.lockID("container/" + id)
	defer unlock()
	// GC leaves a directory without a record alone while this runs.
	inflight.Store(r.containerDir(id), true)
	defer inflight.Delete(r.containerDir(id))
	if e, err := r.ctr.index.get(id); err == nil {
		if e.rec.SandboxID != cfg.SandboxID || e.rec.Config.Name != cfg.Name {
			return nil, fmt.Errorf("start container %s: held by %s/%s: %w", id, e.rec.SandboxID, e.rec.Config.Name, runtime.ErrAlreadyExists)
		}
		if c, err := r.ctr.index.observe(e); err == nil {
			return c, nil
		}
	} else if !errors.Is(err, runtime.ErrNotFound) {
		return nil, err
	}
	if r.setAsidePending(kindContainer, id) {
		// Its processes and cgroup are being removed: the ID is not free
		// until they are.
		return nil, fmt.Errorf("start container %s: a container of this ID was set aside and is being cleaned up: %w", id, runtime.ErrConflict)
	}
	sb, err := r.sandboxRecord(cfg.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if sb.Phase != phaseReady || !sb.Pause.Alive() {
		return nil, fmt.Errorf("start container %q: sandbox %s is not ready: %w", cfg.Name, sb.ID, runtime.ErrConflict)
	}
	if err := r.ensurePodFiles(sb); err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	// A name and attempt is one container in a sandbox: a retry after a
	// lost reply must not start the same container twice.
	others, err := r.ctr.index.list(cfg.SandboxID)
	if err != nil {
		return nil, err
	}
	for _, o := range others {
		if o.rec.Config.Name == cfg.Name && o.rec.Config.Attempt == cfg.Attempt {
			return nil, fmt.Errorf("start container %q attempt %d in sandbox %s: held by %s: %w", cfg.Name, cfg.Attempt, cfg.SandboxID, o.rec.ID, runtime.ErrAlreadyExists)
		}
	}
	imgs, err := r.imageStore()
	if err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	layers, img, err := imgs.LayerDirs(ctx, cfg.Image)
	if err != nil {
		return nil, fmt.Errorf("start container %q: image %s: %w", cfg.Name, cfg.Image, err)
	}
	mountImages, err := resolveMountImages(ctx, imgs, cfg.Mounts)
	if err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	c := *cfg
	c.ID = id
	rec, res, prog, err := r.buildContainerRecord(&c, sb, layers, img)
	if err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	rec.MountImages = mountImages
	if err := os.MkdirAll(r.containersDir(), 0o700); err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if err := os.MkdirAll(record.ExitsDir(r.cfg.RunRoot), 0o700); err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if err := os.Mkdir(rec.Dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("start container %s: being created or removed by another process: %w", id, runtime.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	// The intent is recorded before anything is made, so a crash at any
	// later point leaves a record that RemoveContainer can finish; the
	// owner file beside it still names the pod and the sandbox if the
	// record is ever damaged (quarantine.go).
	err = r.writeOwner(rec.Dir, r.containerOwner(rec))
	if err == nil {
		err = record.WriteJSON(filepath.Join(rec.Dir, record.ContainerFile), rec)
	}
	if err != nil {
		os.RemoveAll(rec.Dir)
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	// The compiled filter is large and only the shim and exec read it: it
	// has a file of its own, out of the record every observation decodes.
	if prog != nil {
		if err := record.WriteJSON(filepath.Join(rec.Dir, record.SeccompFile), prog); err != nil {
			r.removeContainer(ctx, rec)
			return nil, fmt.Errorf("start container %q (%s): %w", cfg.Name, id, err)
		}
	}
	if err := r.prepareContainer(rec, res, sb); err != nil {
		r.removeContainer(ctx, rec)
		return nil, fmt.Errorf("start container %q (%s): %w", cfg.Name, id, err)
	}
	st, err := r.startShim(rec)
	if err != nil {
		r.removeContainer(ctx, rec)
		return nil, fmt.Errorf("start container %q (%s): %w", cfg.Name, id, err)
	}
	// What the shim reported is the truth of this start: no record is
	// read back.
	r.ctr.index.put(rec, st)
	started := observeCreated(rec)
	started.State, started.PID, started.StartedAt = runtime.ContainerRunning, st.Init.PID, st.StartedAt
	return started, nil
}

// buildContainerRecord resolves the container's process, security settings
// and filesystem from its config, the sandbox and the image.
func (r *Runtime) buildContainerRecord(cfg *runtime.ContainerConfig, sb *sandboxRecord, layers []string, img *runtime.Image) (*record.Container, cgroups.Resources, *seccomp.Program, error) {
	var res cgroups.Resources
	args, err := resolveArgs(cfg.Command, cfg.Args, img.Config.Entrypoint, img.Config.Cmd)
	if err != nil {
		return nil, res, nil, err
	}
	passwd, _ := imageFile(layers, "/etc/passwd")
	group, _ := imageFile(layers, "/etc/group")
	ident, err := resolveUser(&cfg.Security, imageUser(cfg, img), passwd, group)
	if err != nil {
		return nil, res, nil, err
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = img.Config.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !filepath.IsAbs(cwd) {
		return nil, res, nil, fmt.Errorf("workingDir %q: not absolute: %w", cwd, runtime.ErrInvalidConfig)
	}
	sec := &cfg.Security
	capset, err := caps.Resolve(sec.CapAdd, sec.CapDrop, sec.Privileged)
	if err != nil {
		return nil, res, nil, fmt.Errorf("%v: %w", err, runtime.ErrInvalidConfig)
	}
	parent := sb.CgroupParent
	if parent == "" {
		parent = r.cfg.CgroupParent
	}
	cg, err := r.cgroupManager(parent)
	if err != nil {
		return nil, res, nil, err
	}
	if cg.Unified && !sec.Privileged {
		// No device controller is programmed on cgroup v2 (that needs an
		// eBPF device program): without CAP_MKNOD a container cannot make a
		// node for a host device, which keeps the /dev boundary closed.
		capset = slices.DeleteFunc(capset, func(c string) bool { return c == "CAP_MKNOD" })
	}
	var prog *seccomp.Program
	if !sec.Privileged {
		var profile = sec.Seccomp
		switch profile.Type {
		case "", seccomp.RuntimeDefault:
			p, err := seccomp.Default(capset)
			if err != nil {
				return nil, res, nil, err
			}
			if prog, err = seccomp.Compile(p); err != nil {
				return nil, res, nil, err
			}
		case seccomp.Unconfined:
		case seccomp.Localhost:
			p, err := seccomp.LoadLocalhost(filepath.Join(r.cfg.StateRoot, "seccomp"), profile.LocalhostProfile, capset)
			if err != nil {
				return nil, res, nil, fmt.Errorf("%w: %w", err, runtime.ErrInvalidConfig)
			}
			if prog, err = seccomp.Compile(p); err != nil {
				return nil, res, nil, fmt.Errorf("localhost profile %s: %w: %w", profile.LocalhostProfile, err, runtime.ErrInvalidConfig)
			}
		default:
			return nil, res, nil, fmt.Errorf("seccomp profile type %q: %w", profile.Type, runtime.ErrInvalidConfig)
		}
	}
	id := cfg.ID
	stateDir := r.containerStateDir(id)
	rec := &record.Container{
		Version: record.Version, ID: id, SandboxID: sb.ID, Pod: sb.Pod, Config: *cfg, ImageID: img.ID,
		CreatedAt: time.Now().UTC(), RunRoot: r.cfg.RunRoot, Dir: r.containerDir(id), StateDir: stateDir,
		LogPath:      filepath.Join(r.sandboxLogDir(sb.ID), cfg.Name, fmt.Sprintf("%d.log", cfg.Attempt)),
		LogMaxSize:   r.cfg.LogMaxSize,
		LogMaxFiles:  r.cfg.LogMaxFiles,
		CgroupParent: parent, CgroupRel: ctrCgroup(sb.ID, id), CgroupPath: cg.Path(ctrCgroup(sb.ID, id)),
		Pause: sb.Pause, Namespaces: sb.Namespaces, StopSignal: img.Config.StopSignal,
		Process: record.Process{
			Args: args, Env: mergeEnv(img.Config.Env, cfg.Env, sb.Hostname, ident.Home), Cwd: cwd,
			User: *ident, Caps: capset, NoNewPrivs: !sec.AllowPrivilegeEscalation && !sec.Privileged,
			SeccompFile: prog != nil, OOMScoreAdj: cfg.OOMScoreAdj,
		},
		Rootfs: rootfs.Spec{
			Rootfs: filepath.Join(stateDir, "rootfs"), Lower: layers,
			Upper: filepath.Join(stateDir, "upper"), Work: filepath.Join(stateDir, "work"),
			ReadOnly: sec.ReadOnlyRootfs, Privileged: sec.Privileged,
		},
	}
	// Read-write, as the kubelet mounts them: they are on the pod's
	// size-capped tmpfs (ensurePodFiles), not on the host's disk.
	for _, f := range []struct{ file, dest string }{
		{HostsFile, "/etc/hosts"}, {HostnameFile, "/etc/hostname"}, {ResolvConfFile, "/etc/resolv.conf"},
	} {
		rec.Rootfs.Binds = append(rec.Rootfs.Binds, rootfs.Bind{Source: r.podFile(sb.ID, f.file), Destination: f.dest})
	}
	if err := useCallerLogPath(rec, cfg); err != nil {
		return nil, res, nil, err
	}
	if cfg.TerminationMessagePath != "" {
		if !filepath.IsAbs(cfg.TerminationMessagePath) {
			return nil, res, nil, fmt.Errorf("terminationMessagePath %q: not absolute: %w", cfg.TerminationMessagePath, runtime.ErrInvalidConfig)
		}
		rec.TerminationLog = r.podFile(sb.ID, termLogFile+"-"+id)
		rec.MessageFromLogs = cfg.TerminationMessageFromLogs
		rec.Rootfs.Binds = append(rec.Rootfs.Binds, rootfs.Bind{Source: rec.TerminationLog, Destination: cfg.TerminationMessagePath})
	}
	res = cgroups.Resources{
		MemoryMax: cfg.Resources.MemoryLimit, CPULimitMilli: cfg.Resources.CPULimitMilli,
		CPURequestMilli: cfg.Resources.CPURequestMilli, PidsMax: cfg.Resources.PidsLimit,
		RestrictDevices: !sec.Privileged,
	}
	if res.PidsMax == 0 {
		res.PidsMax = r.cfg.PidsLimit
	}
	if res.PidsMax == 0 {
		res.PidsMax = DefaultPidsLimit
	}
	if err := res.Validate(); err != nil {
		return nil, res, nil, fmt.Errorf("%w: %w", err, runtime.ErrInvalidConfig)
	}
	return rec, res, prog, nil
}

// prepareContainer makes what the shim needs: directories, log directory,
// cgroups and volume binds.
func (r *Runtime) prepareContainer(rec *record.Container, res cgroups.Resources, sb *sandboxRecord) error {
	if err := os.MkdirAll(rec.StateDir, 0o700); err != nil {
		return err
	}
	// The upper directory is the container's "/": its mode is what a
	// non-root workload sees there, so it gets the usual 0755.
	for _, d := range []string{rec.Rootfs.Rootfs, rec.Rootfs.Upper, rec.Rootfs.Work} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(rec.LogPath), 0o700); err != nil {
		return err
	}
	if rec.TerminationLog != "" {
		if err := os.WriteFile(rec.TerminationLog, nil, 0o666); err != nil {
			return err
		}
		// Writable by whatever user the container runs as.
		if err := os.Chown(rec.TerminationLog, int(rec.Process.User.UID), int(rec.Process.User.GID)); err != nil {
			return err
		}
	}
	cg, err := r.cgroupManager(rec.CgroupParent)
	if err != nil {
		return err
	}
	if err := r.createPodCgroup(cg, sb, res.PidsMax); err != nil {
		return err
	}
	if err := cg.Create(rec.CgroupRel, res); err != nil {
		return err
	}
	if len(rec.Config.Mounts) > 0 {
		vols := volume.New(r.cfg.StateRoot, r.cfg.RunRoot)
		for i, m := range rec.Config.Mounts {
			if m.Image != "" || m.HostPath != "" {
				var b rootfs.Bind
				if m.Image != "" {
					b, err = imageMountBind(rec, i)
				} else {
					b, err = hostMountBind(i, m)
				}
				if err != nil {
					return err
				}
				rec.Rootfs.Binds = append(rec.Rootfs.Binds, b)
				continue
			}
			var vc *runtime.VolumeConfig
			for j := range sb.Config.Volumes {
				if sb.Config.Volumes[j].Name == m.Volume {
					vc = &sb.Config.Volumes[j]
				}
			}
			if vc == nil {
				return fmt.Errorf("mounts[%d]: volume %q is not a volume of the pod: %w", i, m.Volume, runtime.ErrInvalidConfig)
			}
			if !filepath.IsAbs(m.ContainerPath) {
				return fmt.Errorf("mounts[%d]: containerPath %q: not absolute: %w", i, m.ContainerPath, runtime.ErrInvalidConfig)
			}
			src := vols.HostPath(rec.SandboxID, vc)
			if m.SubPath != "" {
				if src, err = vols.PrepareSubPath(rec.SandboxID, rec.ID, i, src, m.SubPath); err != nil {
					return fmt.Errorf("mounts[%d]: %w", i, err)
				}
			}
			// ConfigMap and Secret files are read-only in Kubernetes
			// whatever the mount says: the runtime owns their updates.
			rec.Rootfs.Binds = append(rec.Rootfs.Binds, rootfs.Bind{Source: src, Destination: m.ContainerPath, ReadOnly: m.ReadOnly || vc.Files != nil})
		}
		// The binds are part of what the shim reads.
		if err := record.WriteJSON(filepath.Join(rec.Dir, record.ContainerFile), rec); err != nil {
			return err
		}
	}
	return nil
}

// StopContainer implements runtime.Runtime: the image's stop signal (or
// SIGTERM) to the workload, up to grace for it to exit, then SIGKILL to
// every process in its cgroup. It returns once the exit is recorded.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	rec, err := r.containerRecord(id)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	unlock := r.lockID("container/" + id)
	defer unlock()
	return r.stopContainer(ctx, rec, grace)
}

func (r *Runtime) stopContainer(ctx context.Context, rec *record.Container, grace time.Duration) error {
	if _, err := rec.Exit(); err == nil {
		return nil
	}
	st, err := rec.State()
	if err != nil {
		// Never started: nothing runs but what a crashed start left in the
		// cgroup.
		return r.killContainerCgroup(rec)
	}
	sig := unix.SIGTERM
	if rec.StopSignal != "" {
		if s := parseSignal(rec.StopSignal); s != 0 {
			sig = s
		}
	}
	if grace > 0 && st.Stops {
		// The shim keeps the grace period, whether this process waits
		// for it or goes away (it is stopping): the next agent finds the
		// exit recorded.
		err := r.requestStop(rec, st, sig, grace)
		if err == nil {
			if err := st.Shim.WaitGone(ctx, grace+shim.KillTimeout+5*time.Second); err != nil {
				return fmt.Errorf("stop container %s: the shim keeps the stop: %w", rec.ID, err)
			}
			return r.recordLostExit(rec, st)
		}
		if !errors.Is(err, procid.ErrGone) {
			return fmt.Errorf("stop container %s: %w", rec.ID, err)
		}
		// The shim is gone (killed from outside): the agent stops the
		// workload itself.
	}
	if grace > 0 {
		if err := st.Init.SignalAndWait(ctx, sig, grace); err != nil {
			return fmt.Errorf("stop container %s: %w", rec.ID, err)
		}
	}
	if err := r.killContainerCgroup(rec); err != nil {
		return fmt.Errorf("stop container %s: %w", rec.ID, err)
	}
	// The shim records the exit and exits; wait for it, bounded.
	if err := st.Shim.WaitGone(ctx, 10*time.Second); err != nil {
		return fmt.Errorf("stop container %s: shim: %w", rec.ID, err)
	}
	return r.recordLostExit(rec, st)
}

// requestStop asks the container's shim to stop it: sig now, every
// process of its cgroup killed after grace (record.Stop). A stop already
// asked for with an earlier deadline keeps it: a restarted agent repeating
// the stop never extends the grace period.
func (r *Runtime) requestStop(rec *record.Container, st *record.State, sig unix.Signal, grace time.Duration) error {
	req := &record.Stop{Version: record.Version, Signal: int(sig), Deadline: time.Now().Add(grace).UTC()}
	if old, err := rec.ReadStop(); err == nil && old != nil && old.Deadline.Before(req.Deadline) {
		req = old
	}
	if err := record.WriteJSON(filepath.Join(rec.Dir, record.StopFile), req); err != nil {
		return err
	}
	return st.Shim.Signal(unix.SIGUSR1)
}

// recordLostExit records an exit for a container whose shim is gone
// without one (it was killed from outside, before the workload): nobody
// knows the status, but the container reads as exited rather than unknown
// for ever.
func (r *Runtime) recordLostExit(rec *record.Container, st *record.State) error {
	if _, err := rec.Exit(); err == nil {
		return nil
	}
	ex := &record.Exit{Version: record.Version, ContainerID: rec.ID, SandboxID: rec.SandboxID, Pod: rec.Pod, ExitCode: 255,
		Reason: runtime.ReasonError, Message: "shim lost: exit status unknown",
		StartedAt: st.StartedAt, FinishedAt: time.Now().UTC()}
	if err := record.WriteJSON(record.ExitPath(rec.RunRoot, rec.ID), ex); err != nil {
		return fmt.Errorf("stop container %s: %w", rec.ID, err)
	}
	return nil
}

func (r *Runtime) killContainerCgroup(rec *record.Container) error {
	cg, err := r.cgroupManager(rec.CgroupParent)
	if err != nil {
		return err
	}
	return shim.KillCgroup(cg, rec.CgroupRel)
}

func parseSignal(s string) unix.Signal {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(s, "SIG") {
		if n, err := fmt.Sscanf(s, "%d", new(int)); err == nil && n == 1 {
			var v int
			fmt.Sscanf(s, "%d", &v)
			return unix.Signal(v)
		}
		s = "SIG" + s
	}
	return unix.SignalNum(s)
}

// RemoveContainer implements runtime.Runtime: it kills what still runs,
// then removes the cgroup, the rootfs directories and the records. The log
// stays until the sandbox goes.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	rec, err := r.containerRecord(id)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	unlock := r.lockID("container/" + id)
	defer unlock()
	return r.removeContainer(ctx, rec)
}

func (r *Runtime) removeContainer(ctx context.Context, rec *record.Container) error {
	var errs []error
	if err := r.stopContainer(ctx, rec, 0); err != nil {
		errs = append(errs, err)
	}
	// A shim that never reported (a crash during start) is found by its
	// arguments and waited for as well.
	if st, err := rec.State(); err == nil {
		if err := st.Shim.WaitGone(ctx, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if cg, err := r.cgroupManager(rec.CgroupParent); err != nil {
		errs = append(errs, err)
	} else if err := cg.Remove(rec.CgroupRel); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(rec.StateDir); err != nil {
		errs = append(errs, err)
	}
	if err := volume.New(r.cfg.StateRoot, r.cfg.RunRoot).CleanupSubPaths(rec.SandboxID, rec.ID); err != nil {
		errs = append(errs, err)
	}
	if rec.TerminationLog != "" {
		if err := os.Remove(rec.TerminationLog); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove container %s: %w", rec.ID, errors.Join(errs...))
	}
	if err := os.Remove(record.ExitPath(rec.RunRoot, rec.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	// The record goes last: until then a retry knows what to undo.
	if err := os.RemoveAll(rec.Dir); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	r.ctr.index.drop(rec.ID)
	return nil
}

// removeAllInSandbox stops and removes every container of the sandbox, its
// pod cgroup and its logs. The sandbox half calls it during teardown. Each
// step runs whatever became of the others: a container kept for a file
// of its write layer that cannot be removed has no process or cgroup left,
// so its pod's cgroup and the rest of the logs still go.
func (c *containers) removeAllInSandbox(ctx context.Context, sb *sandboxRecord) error {
	r := c.rt
	ents, err := c.index.list(sb.ID)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if err := r.RemoveContainer(ctx, e.rec.ID); err != nil {
			errs = append(errs, err)
		}
	}
	parent := r.cfg.CgroupParent
	if sb.CgroupParent != "" {
		parent = sb.CgroupParent
	}
	if cg, err := r.cgroupManager(parent); err != nil {
		errs = append(errs, err)
	} else if err := cg.Remove(podCgroup(sb.ID)); err != nil {
		errs = append(errs, fmt.Errorf("remove pod cgroup of sandbox %s: %w", sb.ID, err))
	}
	if err := os.RemoveAll(r.sandboxLogDir(sb.ID)); err != nil {
		errs = append(errs, fmt.Errorf("remove logs of sandbox %s: %w", sb.ID, err))
	}
	return errors.Join(errs...)
}

// GetContainer implements runtime.Runtime.
func (r *Runtime) GetContainer(ctx context.Context, id string) (*runtime.Container, error) {
	e, err := r.ctr.index.get(id)
	if err != nil {
		return nil, fmt.Errorf("get container: %w", err)
	}
	c, err := r.ctr.index.observe(e)
	if err != nil {
		return nil, fmt.Errorf("get container: %w", err)
	}
	return c, nil
}

// ListContainers implements runtime.Runtime. With a sandbox filter it
// costs in proportion to that sandbox's containers (see ctrIndex).
func (r *Runtime) ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]*runtime.Container, error) {
	ents, err := r.ctr.index.list(filter.SandboxID)
	if err != nil {
		return nil, err
	}
	out := make([]*runtime.Container, 0, len(ents))
	for _, e := range ents {
		if c, err := r.ctr.index.observe(e); err == nil {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *runtime.Container) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// WatchExits implements runtime.ExitWatcher: it watches the directory the
// shims write exit records to, so exits that happen while nobody listens
// are still on disk for the next GetContainer.
func (r *Runtime) WatchExits(ctx context.Context) (<-chan runtime.ExitEvent, error) {
	dir := record.ExitsDir(r.cfg.RunRoot)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("watch exits: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch exits: %w", err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch exits %s: %w", dir, err)
	}
	ch := make(chan runtime.ExitEvent, 16)
	go func() {
		defer close(ch)
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// Records appear by rename; temporary files are skipped.
				if !ev.Has(fsnotify.Create) || !strings.HasSuffix(ev.Name, ".json") {
					continue
				}
				ex := &record.Exit{}
				if err := record.ReadJSON(ev.Name, ex); err != nil {
					continue
				}
				select {
				case ch <- runtime.ExitEvent{ContainerID: ex.ContainerID, SandboxID: ex.SandboxID, Pod: ex.Pod}:
				case <-ctx.Done():
					return
				}
			case <-w.Errors:
			}
		}
	}()
	return ch, nil
}

// ContainerStats implements runtime.StatsProvider from the container's
// cgroup.
func (r *Runtime) ContainerStats(ctx context.Context, id string) (*runtime.ContainerStats, error) {
	rec, err := r.containerRecord(id)
	if err != nil {
		return nil, fmt.Errorf("container stats: %w", err)
	}
	cg, err := r.cgroupManager(rec.CgroupParent)
	if err != nil {
		return nil, fmt.Errorf("container stats %s: %w", id, err)
	}
	s, err := cg.Stats(rec.CgroupRel)
	if err != nil {
		return nil, fmt.Errorf("container stats %s: %w", id, err)
	}
	return &runtime.ContainerStats{CPUUsageNanos: s.CPUUsageNanos, MemoryBytes: s.MemoryBytes, Pids: s.Pids}, nil
}
