package linux

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/caps"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/cgroups"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/reexec"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/rootfs"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/seccomp"
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

	// spares, when enabled, keeps one shim daemon started ahead of need,
	// which takes a Go process start off the critical path of a start.
	spares bool
	spare  *spareShim
}

// spareShim is a shim daemon waiting for its container.
type spareShim struct {
	ctl   *os.File // write end of its control pipe
	ready *os.File // read end of its ready pipe
	pid   int      // the daemon, or its launcher
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

// On-disk layout.
const (
	containerFile = "container.json" // written once by the agent (intent)
	stateFile     = "state.json"     // written once by the shim (started)
	termLogFile   = "termination-log"
)

func (r *Runtime) containersDir() string         { return filepath.Join(r.cfg.RunRoot, "containers") }
func (r *Runtime) containerDir(id string) string { return filepath.Join(r.containersDir(), id) }
func exitsDir(runRoot string) string             { return filepath.Join(runRoot, "container-exits") }
func exitPath(runRoot, id string) string         { return filepath.Join(exitsDir(runRoot), id+".json") }
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

// containerRecord is the agent's record of one container: everything the
// shim needs to start it and everything a new agent needs to report it.
type containerRecord struct {
	Version     int                     `json:"version"`
	ID          string                  `json:"id"`
	SandboxID   string                  `json:"sandboxID"`
	Pod         runtime.PodKey          `json:"pod"`
	Config      runtime.ContainerConfig `json:"config"`
	ImageID     string                  `json:"imageID,omitempty"`
	CreatedAt   time.Time               `json:"createdAt"`
	RunRoot     string                  `json:"runRoot"`
	Dir         string                  `json:"dir"`
	StateDir    string                  `json:"stateDir"`
	LogPath     string                  `json:"logPath"`
	LogMaxSize  int64                   `json:"logMaxSize,omitempty"`
	LogMaxFiles int                     `json:"logMaxFiles,omitempty"`
	// LogFollow: the log is the caller's (ContainerConfig.LogPath), who
	// rotates it; the shim follows the path and never rotates.
	LogFollow bool `json:"logFollow,omitempty"`

	CgroupParent string `json:"cgroupParent"`
	CgroupRel    string `json:"cgroupRel"`
	CgroupPath   string `json:"cgroupPath"`

	Pause      procID                   `json:"pause"`
	Namespaces runtime.NamespaceOptions `json:"namespaces"`
	Rootfs     rootfs.Spec              `json:"rootfs"`
	Process    processSpec              `json:"process"`
	StopSignal string                   `json:"stopSignal,omitempty"`
	// TerminationLog is the host file bound at terminationMessagePath, on
	// the pod-files tmpfs of the sandbox.
	TerminationLog string `json:"terminationLog,omitempty"`
	// MessageFromLogs: FallbackToLogsOnError (see runtime.ContainerConfig).
	MessageFromLogs bool `json:"messageFromLogs,omitempty"`
}

// containerStateRecord is written by the shim once the workload runs.
type containerStateRecord struct {
	Shim      procID    `json:"shim"`
	Init      procID    `json:"init"`
	StartedAt time.Time `json:"startedAt"`
}

// exitRecord is written by the shim when the container exits.
type exitRecord struct {
	ContainerID string         `json:"containerID"`
	SandboxID   string         `json:"sandboxID"`
	Pod         runtime.PodKey `json:"pod"`
	ExitCode    int            `json:"exitCode"`
	Signal      string         `json:"signal,omitempty"`
	Reason      string         `json:"reason"`
	Message     string         `json:"message,omitempty"`
	StartedAt   time.Time      `json:"startedAt"`
	FinishedAt  time.Time      `json:"finishedAt"`
}

func readContainerRecord(dir string) (*containerRecord, error) {
	rec := &containerRecord{}
	if err := readJSON(filepath.Join(dir, containerFile), rec); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("container %s: %w", filepath.Base(dir), runtime.ErrNotFound)
		}
		return nil, fmt.Errorf("container %s: %w", filepath.Base(dir), err)
	}
	return rec, nil
}

func (r *Runtime) containerRecord(id string) (*containerRecord, error) {
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, runtime.ErrNotFound)
	}
	return readContainerRecord(r.containerDir(id))
}

func (rec *containerRecord) nsJoin() []nsJoin {
	ns := "/proc/" + fmt.Sprint(rec.Pause.PID) + "/ns/"
	j := []nsJoin{{ns + "uts", unix.CLONE_NEWUTS}}
	if rec.Namespaces.Network == runtime.NamespacePod {
		j = append(j, nsJoin{ns + "net", unix.CLONE_NEWNET})
	}
	if rec.Namespaces.IPC == runtime.NamespacePod {
		j = append(j, nsJoin{ns + "ipc", unix.CLONE_NEWIPC})
	}
	if rec.Namespaces.PID == runtime.NamespacePod {
		j = append(j, nsJoin{ns + "pid", unix.CLONE_NEWPID})
	}
	return j
}

func (rec *containerRecord) cloneFlags() uintptr {
	f := uintptr(unix.CLONE_NEWNS)
	if rec.Namespaces.PID == runtime.NamespaceContainer || rec.Namespaces.PID == "" {
		f |= unix.CLONE_NEWPID
	}
	return f
}

func (rec *containerRecord) state() (*containerStateRecord, error) {
	st := &containerStateRecord{}
	if err := readJSON(filepath.Join(rec.Dir, stateFile), st); err != nil {
		return nil, err
	}
	return st, nil
}

func (rec *containerRecord) exit() (*exitRecord, error) {
	ex := &exitRecord{}
	if err := readJSON(exitPath(rec.RunRoot, rec.ID), ex); err != nil {
		return nil, err
	}
	return ex, nil
}

// observe reports the container as the records and the kernel show it.
func (rec *containerRecord) observe() *runtime.Container {
	c := &runtime.Container{
		ID: rec.ID, SandboxID: rec.SandboxID, Pod: rec.Pod, Name: rec.Config.Name,
		Attempt: rec.Config.Attempt, Image: rec.Config.Image, ImageID: rec.ImageID,
		State: runtime.ContainerCreated, CreatedAt: rec.CreatedAt, LogPath: rec.LogPath,
		CgroupPath: rec.CgroupPath, Labels: maps.Clone(rec.Config.Labels),
		Annotations: maps.Clone(rec.Config.Annotations),
	}
	if ex, err := rec.exit(); err == nil {
		c.State, c.ExitCode, c.Signal, c.Reason, c.Message = runtime.ContainerExited, ex.ExitCode, ex.Signal, ex.Reason, ex.Message
		c.StartedAt, c.FinishedAt = ex.StartedAt, ex.FinishedAt
		return c
	}
	st, err := rec.state()
	if err != nil {
		return c // not started (yet): created
	}
	c.StartedAt = st.StartedAt
	switch {
	case st.Init.alive():
		c.State, c.PID = runtime.ContainerRunning, st.Init.PID
	case st.Shim.alive():
		// Exited; the shim is writing the record right now.
		c.State, c.PID = runtime.ContainerRunning, st.Init.PID
	default:
		c.State, c.Reason = runtime.ContainerUnknown, "ShimLost"
	}
	return c
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
	// The sandbox lock first, as RemoveSandbox takes it before removing
	// containers: a start never races the sandbox's teardown, and two
	// starts of one name and attempt cannot both pass the check below.
	unlockSandbox := r.lockID(cfg.SandboxID)
	defer unlockSandbox()
	unlock := r.lockID("container/" + id)
	defer unlock()
	if rec, err := r.containerRecord(id); err == nil {
		if rec.SandboxID != cfg.SandboxID || rec.Config.Name != cfg.Name {
			return nil, fmt.Errorf("start container %s: held by %s/%s: %w", id, rec.SandboxID, rec.Config.Name, runtime.ErrAlreadyExists)
		}
		return rec.observe(), nil
	} else if !errors.Is(err, runtime.ErrNotFound) {
		return nil, err
	}
	sb, err := r.sandboxRecord(cfg.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if sb.Phase != phaseReady || !sb.Pause.alive() {
		return nil, fmt.Errorf("start container %q: sandbox %s is not ready: %w", cfg.Name, sb.ID, runtime.ErrConflict)
	}
	if err := r.ensurePodFiles(sb); err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	// A name and attempt is one container in a sandbox: a retry after a
	// lost reply must not start the same container twice.
	recs, err := r.containerRecords()
	if err != nil {
		return nil, err
	}
	for _, o := range recs {
		if o.SandboxID == cfg.SandboxID && o.Config.Name == cfg.Name && o.Config.Attempt == cfg.Attempt {
			return nil, fmt.Errorf("start container %q attempt %d in sandbox %s: held by %s: %w", cfg.Name, cfg.Attempt, cfg.SandboxID, o.ID, runtime.ErrAlreadyExists)
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
	c := *cfg
	c.ID = id
	rec, res, err := r.buildContainerRecord(&c, sb, layers, img)
	if err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if err := os.MkdirAll(r.containersDir(), 0o700); err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if err := os.MkdirAll(exitsDir(r.cfg.RunRoot), 0o700); err != nil {
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if err := os.Mkdir(rec.Dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("start container %s: being created or removed by another process: %w", id, runtime.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	// The intent is recorded before anything is made, so a crash at any
	// later point leaves a record that RemoveContainer can finish.
	if err := writeJSONAtomic(filepath.Join(rec.Dir, containerFile), rec); err != nil {
		os.Remove(rec.Dir)
		return nil, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if err := r.prepareContainer(rec, res, sb); err != nil {
		r.removeContainer(ctx, rec)
		return nil, fmt.Errorf("start container %q (%s): %w", cfg.Name, id, err)
	}
	if err := r.startShim(rec); err != nil {
		r.removeContainer(ctx, rec)
		return nil, fmt.Errorf("start container %q (%s): %w", cfg.Name, id, err)
	}
	return rec.observe(), nil
}

// buildContainerRecord resolves the container's process, security settings
// and filesystem from its config, the sandbox and the image.
func (r *Runtime) buildContainerRecord(cfg *runtime.ContainerConfig, sb *sandboxRecord, layers []string, img *runtime.Image) (*containerRecord, cgroups.Resources, error) {
	var res cgroups.Resources
	args, err := resolveArgs(cfg.Command, cfg.Args, img.Config.Entrypoint, img.Config.Cmd)
	if err != nil {
		return nil, res, err
	}
	passwd, _ := imageFile(layers, "/etc/passwd")
	group, _ := imageFile(layers, "/etc/group")
	ident, err := resolveUser(&cfg.Security, imageUser(cfg, img), passwd, group)
	if err != nil {
		return nil, res, err
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = img.Config.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !filepath.IsAbs(cwd) {
		return nil, res, fmt.Errorf("workingDir %q: not absolute: %w", cwd, runtime.ErrInvalidConfig)
	}
	sec := &cfg.Security
	capset, err := caps.Resolve(sec.CapAdd, sec.CapDrop, sec.Privileged)
	if err != nil {
		return nil, res, fmt.Errorf("%v: %w", err, runtime.ErrInvalidConfig)
	}
	parent := sb.CgroupParent
	if parent == "" {
		parent = r.cfg.CgroupParent
	}
	cg, err := r.cgroupManager(parent)
	if err != nil {
		return nil, res, err
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
				return nil, res, err
			}
			if prog, err = seccomp.Compile(p); err != nil {
				return nil, res, err
			}
		case seccomp.Unconfined:
		case seccomp.Localhost:
			p, err := seccomp.LoadLocalhost(filepath.Join(r.cfg.StateRoot, "seccomp"), profile.LocalhostProfile, capset)
			if err != nil {
				return nil, res, fmt.Errorf("%w: %w", err, runtime.ErrInvalidConfig)
			}
			if prog, err = seccomp.Compile(p); err != nil {
				return nil, res, fmt.Errorf("localhost profile %s: %w: %w", profile.LocalhostProfile, err, runtime.ErrInvalidConfig)
			}
		default:
			return nil, res, fmt.Errorf("seccomp profile type %q: %w", profile.Type, runtime.ErrInvalidConfig)
		}
	}
	id := cfg.ID
	stateDir := r.containerStateDir(id)
	rec := &containerRecord{
		Version: 1, ID: id, SandboxID: sb.ID, Pod: sb.Pod, Config: *cfg, ImageID: img.ID,
		CreatedAt: time.Now().UTC(), RunRoot: r.cfg.RunRoot, Dir: r.containerDir(id), StateDir: stateDir,
		LogPath:      filepath.Join(r.sandboxLogDir(sb.ID), cfg.Name, fmt.Sprintf("%d.log", cfg.Attempt)),
		LogMaxSize:   r.cfg.LogMaxSize,
		LogMaxFiles:  r.cfg.LogMaxFiles,
		CgroupParent: parent, CgroupRel: ctrCgroup(sb.ID, id), CgroupPath: cg.Path(ctrCgroup(sb.ID, id)),
		Pause: sb.Pause, Namespaces: sb.Namespaces, StopSignal: img.Config.StopSignal,
		Process: processSpec{
			Args: args, Env: mergeEnv(img.Config.Env, cfg.Env, sb.Hostname, ident.Home), Cwd: cwd,
			User: *ident, Caps: capset, NoNewPrivs: !sec.AllowPrivilegeEscalation && !sec.Privileged, Seccomp: prog,
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
		return nil, res, err
	}
	if cfg.TerminationMessagePath != "" {
		if !filepath.IsAbs(cfg.TerminationMessagePath) {
			return nil, res, fmt.Errorf("terminationMessagePath %q: not absolute: %w", cfg.TerminationMessagePath, runtime.ErrInvalidConfig)
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
		return nil, res, fmt.Errorf("%w: %w", err, runtime.ErrInvalidConfig)
	}
	return rec, res, nil
}

// prepareContainer makes what the shim needs: directories, log directory,
// cgroups and volume binds.
func (r *Runtime) prepareContainer(rec *containerRecord, res cgroups.Resources, sb *sandboxRecord) error {
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
	if err := r.createPodCgroup(cg, rec.SandboxID, res.PidsMax); err != nil {
		return err
	}
	if err := cg.Create(rec.CgroupRel, res); err != nil {
		return err
	}
	if len(rec.Config.Mounts) > 0 {
		vols := volume.New(r.cfg.StateRoot, r.cfg.RunRoot)
		for i, m := range rec.Config.Mounts {
			if m.HostPath != "" {
				b, err := hostMountBind(i, m)
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
		if err := writeJSONAtomic(filepath.Join(rec.Dir, containerFile), rec); err != nil {
			return err
		}
	}
	return nil
}

// EnableSpareShim makes the runtime keep one shim daemon started ahead of
// need (a long-running agent wants this; a one-shot CLI does not). A spare
// exits when this process does: its control pipe then reaches EOF.
func (r *Runtime) EnableSpareShim() {
	r.ctr.mu.Lock()
	r.ctr.spares = true
	r.ctr.mu.Unlock()
	go r.refillSpare()
}

// DisableSpareShim stops keeping a spare; the current one exits.
func (r *Runtime) DisableSpareShim() {
	r.ctr.mu.Lock()
	defer r.ctr.mu.Unlock()
	r.ctr.spares = false
	if sp := r.ctr.spare; sp != nil {
		sp.ctl.Close()
		sp.ready.Close()
		r.ctr.spare = nil
	}
}

// spareReady reports whether a spare is waiting, and its PID (0 when it
// was started through the launcher), for tests and benchmarks.
func (r *Runtime) spareReady() (bool, int) {
	r.ctr.mu.Lock()
	defer r.ctr.mu.Unlock()
	if r.ctr.spare == nil {
		return false, 0
	}
	return true, r.ctr.spare.pid
}

func (r *Runtime) refillSpare() {
	r.ctr.mu.Lock()
	if !r.ctr.spares || r.ctr.spare != nil {
		r.ctr.mu.Unlock()
		return
	}
	r.ctr.mu.Unlock()
	sp, err := startSpare()
	if err != nil {
		r.log.Warn().Err(err).Msg("start spare shim")
		return
	}
	r.ctr.mu.Lock()
	defer r.ctr.mu.Unlock()
	if r.ctr.spare != nil {
		sp.ctl.Close()
		sp.ready.Close()
		return
	}
	r.ctr.spare = sp
}

func (r *Runtime) takeSpare() *spareShim {
	r.ctr.mu.Lock()
	defer r.ctr.mu.Unlock()
	sp := r.ctr.spare
	r.ctr.spare = nil
	if r.ctr.spares {
		go r.refillSpare()
	}
	return sp
}

func startSpare() (*spareShim, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		readyR.Close()
		readyW.Close()
		return nil, err
	}
	pid, err := spawnShim([]string{spareArg}, readyW, ctlR)
	readyW.Close()
	ctlR.Close()
	if err != nil {
		readyR.Close()
		ctlW.Close()
		return nil, err
	}
	return &spareShim{ctl: ctlW, ready: readyR, pid: pid}, nil
}

// spawnShim starts the shim daemon with args. The daemon must not be the
// agent's child. It is cloned with CLONE_PARENT, which makes it a child of
// the agent's parent (systemd, a shell) at the cost of one process start;
// where the kernel refuses that (the agent is PID 1 of its namespace), the
// launcher starts it and exits, and the daemon is reparented.
func spawnShim(args []string, ready, ctl *os.File) (int, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	files := []*os.File{devnull, devnull, devnull, ready}
	if ctl != nil {
		files = append(files, ctl)
	}
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   shimEnv,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_PARENT},
	}
	proc, err := os.StartProcess(reexec.Self, append([]string{ShimDaemonName}, args...), attr)
	if err == nil {
		// Not our child: never waited for here.
		pid := proc.Pid
		return pid, proc.Release()
	}
	attr.Sys = &syscall.SysProcAttr{Setsid: true}
	proc, err = os.StartProcess(reexec.Self, append([]string{ShimName}, args...), attr)
	if err != nil {
		return 0, err
	}
	// The launcher exits as soon as the daemon runs; reaping it here keeps
	// the daemon out of our process tree.
	_, err = proc.Wait()
	return 0, err
}

// startShim has a shim daemon start the container and waits for its
// report: the workload runs, or the step that failed.
func (r *Runtime) startShim(rec *containerRecord) error {
	var rd *os.File
	if sp := r.takeSpare(); sp != nil {
		_, err := sp.ctl.WriteString(rec.RunRoot + "\x00" + rec.ID)
		sp.ctl.Close()
		if err == nil {
			rd = sp.ready
		} else {
			sp.ready.Close() // the spare is gone: start one the usual way
		}
	}
	if rd == nil {
		var wr *os.File
		var err error
		if rd, wr, err = os.Pipe(); err != nil {
			return err
		}
		_, err = spawnShim([]string{rec.RunRoot, rec.ID}, wr, nil)
		wr.Close()
		if err != nil {
			rd.Close()
			return fmt.Errorf("start shim: %w", err)
		}
	}
	defer rd.Close()
	var rep shimReady
	b, err := io.ReadAll(rd)
	if err != nil {
		return fmt.Errorf("start shim: %w", err)
	}
	if len(b) == 0 {
		return fmt.Errorf("start shim: %w: the shim exited without a report", errShimStart)
	}
	if err := jsonUnmarshal(b, &rep); err != nil {
		return fmt.Errorf("start shim: %w", err)
	}
	if rep.Error != "" {
		return fmt.Errorf("%w: %s", errShimStart, rep.Error)
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

func (r *Runtime) stopContainer(ctx context.Context, rec *containerRecord, grace time.Duration) error {
	if _, err := rec.exit(); err == nil {
		return nil
	}
	st, err := rec.state()
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
	if grace > 0 {
		if err := signalAndWait(ctx, st.Init, sig, grace); err != nil {
			return fmt.Errorf("stop container %s: %w", rec.ID, err)
		}
	}
	if err := r.killContainerCgroup(rec); err != nil {
		return fmt.Errorf("stop container %s: %w", rec.ID, err)
	}
	// The shim records the exit and exits; wait for it, bounded.
	if err := waitGone(ctx, st.Shim, 10*time.Second); err != nil {
		return fmt.Errorf("stop container %s: shim: %w", rec.ID, err)
	}
	if _, err := rec.exit(); err != nil {
		// The shim died before the workload (killed from outside): nobody
		// knows the status. Record that, so the container reads as exited
		// rather than unknown forever.
		ex := &exitRecord{ContainerID: rec.ID, SandboxID: rec.SandboxID, Pod: rec.Pod, ExitCode: 255,
			Reason: runtime.ReasonError, Message: "shim lost: exit status unknown",
			StartedAt: st.StartedAt, FinishedAt: time.Now().UTC()}
		if err := writeJSONAtomic(exitPath(rec.RunRoot, rec.ID), ex); err != nil {
			return fmt.Errorf("stop container %s: %w", rec.ID, err)
		}
	}
	return nil
}

func (r *Runtime) killContainerCgroup(rec *containerRecord) error {
	cg, err := r.cgroupManager(rec.CgroupParent)
	if err != nil {
		return err
	}
	return killCgroup(cg, rec.CgroupRel)
}

// signalAndWait sends sig to p through a pidfd (a reused PID is never
// signalled) and waits up to d for it to exit.
func signalAndWait(ctx context.Context, p procID, sig unix.Signal, d time.Duration) error {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(fd)
	if !p.alive() {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return os.NewSyscallError("pidfd_send_signal", err)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		d = time.Until(dl)
	}
	_, err = waitPidfdCtx(ctx, fd, d)
	return err
}

// waitGone waits up to d for p to exit.
func waitGone(ctx context.Context, p procID, d time.Duration) error {
	if p.PID <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(fd)
	if !p.alive() {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		d = time.Until(dl)
	}
	exited, err := waitPidfdCtx(ctx, fd, d)
	if err != nil {
		return err
	}
	if !exited && p.alive() {
		return fmt.Errorf("pid %d still running after %s", p.PID, d)
	}
	return nil
}

// waitPidfdCtx is waitPidfd that also gives up, with ctx's error, as soon as
// ctx ends: an agent shutting down must not sit out a workload's grace
// period. The workload keeps what it was sent and its shim stays with it;
// the next agent finds the outcome.
func waitPidfdCtx(ctx context.Context, fd int, d time.Duration) (bool, error) {
	if ctx.Done() == nil {
		return waitPidfd(fd, d)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return false, os.NewSyscallError("eventfd", err)
	}
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woken)
		_, _ = unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	})
	defer func() {
		if !stop() {
			<-woken // never close efd under the writer
		}
		unix.Close(efd)
	}()
	deadline := time.Now().Add(d)
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(efd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, max(0, int(time.Until(deadline).Milliseconds())))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return false, os.NewSyscallError("poll", err)
		case fds[0].Revents != 0:
			return true, nil
		case n == 0:
			return false, nil
		}
		// Only the eventfd: ctx ended; the loop's check returns its error.
	}
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

func (r *Runtime) removeContainer(ctx context.Context, rec *containerRecord) error {
	var errs []error
	if err := r.stopContainer(ctx, rec, 0); err != nil {
		errs = append(errs, err)
	}
	// A shim that never reported (a crash during start) is found by its
	// arguments and waited for as well.
	if st, err := rec.state(); err == nil {
		if err := waitGone(ctx, st.Shim, 10*time.Second); err != nil {
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
	if err := os.Remove(exitPath(rec.RunRoot, rec.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	// The record goes last: until then a retry knows what to undo.
	if err := os.RemoveAll(rec.Dir); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	return nil
}

// removeAllInSandbox stops and removes every container of the sandbox, its
// pod cgroup and its logs. The sandbox half calls it during teardown.
func (c *containers) removeAllInSandbox(ctx context.Context, sandboxID string) error {
	r := c.rt
	recs, err := r.containerRecords()
	if err != nil {
		return err
	}
	var errs []error
	for _, rec := range recs {
		if rec.SandboxID != sandboxID {
			continue
		}
		if err := r.RemoveContainer(ctx, rec.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	parent := r.cfg.CgroupParent
	if sb, err := r.sandboxRecord(sandboxID); err == nil && sb.CgroupParent != "" {
		parent = sb.CgroupParent
	}
	cg, err := r.cgroupManager(parent)
	if err != nil {
		return err
	}
	if err := cg.Remove(podCgroup(sandboxID)); err != nil {
		return fmt.Errorf("remove pod cgroup of sandbox %s: %w", sandboxID, err)
	}
	if err := os.RemoveAll(r.sandboxLogDir(sandboxID)); err != nil {
		return fmt.Errorf("remove logs of sandbox %s: %w", sandboxID, err)
	}
	return nil
}

func (r *Runtime) containerRecords() ([]*containerRecord, error) {
	ents, err := os.ReadDir(r.containersDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []*containerRecord
	for _, e := range ents {
		rec, err := readContainerRecord(filepath.Join(r.containersDir(), e.Name()))
		if err != nil {
			// Half-made (no record yet) or half-removed: skipped, GC's job.
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

// GetContainer implements runtime.Runtime.
func (r *Runtime) GetContainer(ctx context.Context, id string) (*runtime.Container, error) {
	rec, err := r.containerRecord(id)
	if err != nil {
		return nil, fmt.Errorf("get container: %w", err)
	}
	return rec.observe(), nil
}

// ListContainers implements runtime.Runtime.
func (r *Runtime) ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]*runtime.Container, error) {
	recs, err := r.containerRecords()
	if err != nil {
		return nil, err
	}
	out := []*runtime.Container{}
	for _, rec := range recs {
		if filter.SandboxID != "" && rec.SandboxID != filter.SandboxID {
			continue
		}
		out = append(out, rec.observe())
	}
	slices.SortFunc(out, func(a, b *runtime.Container) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// WatchExits implements runtime.ExitWatcher: it watches the directory the
// shims write exit records to, so exits that happen while nobody listens
// are still on disk for the next GetContainer.
func (r *Runtime) WatchExits(ctx context.Context) (<-chan runtime.ExitEvent, error) {
	dir := exitsDir(r.cfg.RunRoot)
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
				ex := &exitRecord{}
				if err := readJSON(ev.Name, ex); err != nil {
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
