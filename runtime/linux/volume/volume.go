//go:build linux

// Package volume materialises a pod's volumes on the host: emptyDir (a
// directory under the state root, or a tmpfs with a size limit for medium
// Memory), hostPath (with the Kubernetes type checks), and projected files
// from ConfigMaps and Secrets (written atomically with the kubelet's "..data"
// symlink swap, on a tmpfs when sensitive). It also prepares subPath mounts
// that cannot escape their volume through symlinks, and bind-mounts a volume
// into a container root without following symlinks out of it.
//
// It also keeps the pod's own files (hosts, resolv.conf, hostname and the
// containers' termination logs) on a small size-capped tmpfs per sandbox,
// since containers write to them (see PodFilesSize).
//
// Everything a sandbox owns lives below <StateRoot>/volumes/<sandbox>,
// <RunRoot>/volume-subpaths/<sandbox> and <RunRoot>/pod-files/<sandbox>;
// Teardown unmounts whatever is mounted there (deepest first, so that
// removal never crosses into a hostPath) and removes it.
package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Manager owns the volume directories of every sandbox of one runtime.
type Manager struct {
	root      string // <StateRoot>/volumes
	subRoot   string // <RunRoot>/volume-subpaths
	filesRoot string // <RunRoot>/pod-files
	// Warn, when set, hears what works but not as asked: a size that the
	// filesystem does not enforce.
	Warn func(msg string)
}

// New returns a manager rooted in the runtime's state and run roots.
func New(stateRoot, runRoot string) *Manager {
	return &Manager{
		root:      filepath.Join(stateRoot, "volumes"),
		subRoot:   filepath.Join(runRoot, "volume-subpaths"),
		filesRoot: filepath.Join(runRoot, "pod-files"),
	}
}

func checkID(kind, id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("%w: %s %q is not a valid name", runtime.ErrInvalidConfig, kind, id)
	}
	return nil
}

// Dir is where a managed volume (emptyDir, projected) of the sandbox lives.
func (m *Manager) Dir(sandboxID, name string) string {
	return filepath.Join(m.root, sandboxID, name)
}

// HostPath returns the host path a container mounts for the volume: the
// hostPath itself, a persistent volume's directory, or the managed one.
func (m *Manager) HostPath(sandboxID string, v *runtime.VolumeConfig) string {
	switch {
	case v.HostPath != nil:
		return filepath.Clean(v.HostPath.Path)
	case v.Persistent != nil:
		return m.PersistentPath(v.Persistent.Namespace, v.Persistent.Name)
	}
	return m.Dir(sandboxID, v.Name)
}

func (m *Manager) warn(format string, args ...any) {
	if m.Warn != nil {
		m.Warn(fmt.Sprintf(format, args...))
	}
}

// Setup creates (or finds) every volume of the sandbox and returns the host
// path of each by name. It is idempotent: an existing emptyDir keeps its
// contents (that is what lets data survive container restarts), projected
// volumes are rewritten with the given files.
func (m *Manager) Setup(sandboxID string, vols []runtime.VolumeConfig) (map[string]string, error) {
	if err := checkID("sandbox", sandboxID); err != nil {
		return nil, err
	}
	paths := make(map[string]string, len(vols))
	for i := range vols {
		v := &vols[i]
		if err := checkID("volume", v.Name); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", sandboxID, err)
		}
		if _, dup := paths[v.Name]; dup {
			return nil, fmt.Errorf("sandbox %s: volume %q: %w: defined twice", sandboxID, v.Name, runtime.ErrInvalidConfig)
		}
		var err error
		switch {
		case v.EmptyDir != nil:
			err = m.setupEmptyDir(sandboxID, v)
		case v.HostPath != nil:
			err = checkHostPath(v.HostPath)
		case v.Files != nil:
			err = m.setupProjected(sandboxID, v)
		case v.Persistent != nil:
			var q Quota
			if q, err = m.setupPersistent(v.Persistent); err == nil && q.Size > 0 && !q.Enforced {
				m.warn("persistent volume %s/%s: size %d bytes is advisory: %s", v.Persistent.Namespace, v.Persistent.Name, q.Size, q.Reason)
			}
		default:
			err = fmt.Errorf("%w: no source", runtime.ErrInvalidConfig)
		}
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: volume %q: %w", sandboxID, v.Name, err)
		}
		paths[v.Name] = m.HostPath(sandboxID, v)
	}
	return paths, nil
}

func (m *Manager) setupEmptyDir(sandboxID string, v *runtime.VolumeConfig) error {
	dir := m.Dir(sandboxID, v.Name)
	if v.EmptyDir.Medium != "Memory" && v.EmptyDir.SizeLimit > 0 {
		// On disk, a size limit is a quota where the filesystem has one.
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return err
		}
		if err := makeLimitable(dir, 0o777); err != nil {
			return err
		}
		q, err := limitDir(dir, v.EmptyDir.SizeLimit, "emptydir/"+sandboxID+"/"+v.Name)
		if err != nil {
			return err
		}
		if !q.Enforced {
			m.warn("sandbox %s: emptyDir %q: sizeLimit %d bytes is advisory: %s", sandboxID, v.Name, q.Size, q.Reason)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if v.EmptyDir.Medium == "Memory" {
		opts := "mode=0777"
		if v.EmptyDir.SizeLimit > 0 {
			opts += ",size=" + strconv.FormatInt(v.EmptyDir.SizeLimit, 10)
		}
		if err := mountTmpfs(dir, opts); err != nil {
			return err
		}
	}
	// World-writable like the kubelet's emptyDir, so that containers running
	// as any user can share it; the sandbox directory above stays 0700.
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	return nil
}

// mountTmpfs mounts a tmpfs at dir unless one is already there.
func mountTmpfs(dir, opts string) error {
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return &os.PathError{Op: "mount tmpfs", Path: dir, Err: err}
	}
	return nil
}

// isMountPoint reports whether path is the root of a mount, by comparing the
// mount ID of path and its parent (statx), which also sees bind mounts of
// the same filesystem.
func isMountPoint(path string) (bool, error) {
	var st, pst unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		return false, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	if err := unix.Statx(unix.AT_FDCWD, filepath.Dir(path), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &pst); err != nil {
		return false, &os.PathError{Op: "statx", Path: filepath.Dir(path), Err: err}
	}
	return st.Mnt_id != pst.Mnt_id, nil
}

// checkHostPath applies the Kubernetes hostPath type check, creating the
// path for the *OrCreate types. Stat follows symlinks, as the kubelet's does:
// the path is the node administrator's, not the container's.
func checkHostPath(h *runtime.HostPathVolume) error {
	p := h.Path
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%w: hostPath %q is not absolute", runtime.ErrInvalidConfig, p)
	}
	fi, err := os.Stat(p)
	missing := errors.Is(err, os.ErrNotExist)
	if err != nil && !missing {
		return err
	}
	want := func(ok bool, what string) error {
		if missing {
			return fmt.Errorf("hostPath type check failed: %s does not exist (type %s)", p, h.Type)
		}
		if !ok {
			return fmt.Errorf("hostPath type check failed: %s is not a %s", p, what)
		}
		return nil
	}
	switch h.Type {
	case "":
		return nil
	case "DirectoryOrCreate":
		if missing {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("hostPath DirectoryOrCreate: %w", err)
			}
			return nil
		}
		return want(fi.IsDir(), "directory")
	case "Directory":
		return want(!missing && fi.IsDir(), "directory")
	case "FileOrCreate":
		if missing {
			// As in Kubernetes, the parent must exist: only the file is made.
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if errors.Is(err, os.ErrExist) {
				return checkHostPath(h)
			}
			if err != nil {
				return fmt.Errorf("hostPath FileOrCreate: %w", err)
			}
			return f.Close()
		}
		return want(fi.Mode().IsRegular(), "file")
	case "File":
		return want(!missing && fi.Mode().IsRegular(), "file")
	case "Socket":
		return want(!missing && fi.Mode()&os.ModeSocket != 0, "socket")
	case "CharDevice":
		return want(!missing && fi.Mode()&os.ModeCharDevice != 0, "character device")
	case "BlockDevice":
		return want(!missing && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0, "block device")
	}
	return fmt.Errorf("%w: unknown hostPath type %q", runtime.ErrInvalidConfig, h.Type)
}

// Teardown unmounts and removes every volume and subPath mount of the
// sandbox, and its pod files. Removing a sandbox without volumes succeeds.
func (m *Manager) Teardown(sandboxID string) error {
	if err := checkID("sandbox", sandboxID); err != nil {
		return err
	}
	var errs []error
	for _, dir := range []string{filepath.Join(m.subRoot, sandboxID), filepath.Join(m.root, sandboxID)} {
		if err := unmountAndRemove(dir); err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: remove volumes: %w", sandboxID, err))
		}
	}
	if err := removePodFiles(m.PodFilesDir(sandboxID)); err != nil {
		errs = append(errs, fmt.Errorf("sandbox %s: remove pod files: %w", sandboxID, err))
	}
	return errors.Join(errs...)
}

// Sandboxes lists the sandbox IDs that have volume state or pod files,
// for GC.
func (m *Manager) Sandboxes() ([]string, error) {
	seen := map[string]bool{}
	for _, dir := range []string{m.root, m.subRoot, m.filesRoot} {
		ents, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			seen[e.Name()] = true
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// unmountAndRemove unmounts every mount at or below dir, deepest first, and
// only then removes the tree: os.RemoveAll crosses mount points, and a
// forgotten bind of a hostPath must never be emptied.
func unmountAndRemove(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		// Nothing to do, and no need to read the mount table (a tenth of a
		// millisecond) to learn it: most sandboxes have no volumes.
		return nil
	}
	mps, err := MountsUnder(dir)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "unmount", Path: mp, Err: err}
		}
	}
	if left, err := MountsUnder(dir); err != nil {
		return err
	} else if len(left) > 0 {
		return fmt.Errorf("%s: still mounted after unmount: %v", dir, left)
	}
	return os.RemoveAll(dir)
}

// MountsUnder lists mount points at or below dir from the agent's
// mountinfo, deepest first.
func MountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var mps []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space and so on)
// mountinfo uses in paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
