//go:build linux

package volume

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// The kubelet's atomic-writer layout, which applications (and tools that
// watch for "..data" changes) rely on:
//
//	<dir>/..data          -> ..<timestamp>       (swapped with one rename)
//	<dir>/..<timestamp>/  the files of one version
//	<dir>/<top>           -> ..data/<top>        (one per top-level entry)
//
// A reader that opens <dir>/key sees either the old or the new version of
// every file, never a mix.
const (
	dataLink    = "..data"
	dataLinkTmp = "..data_tmp"
)

// sensitiveTmpfsOpts keeps secrets off the disk: the tmpfs is sized by the
// caller and readable only by root until the files' own modes say more.
const sensitiveTmpfsMode = "mode=0755"

func (m *Manager) setupProjected(sandboxID string, v *runtime.VolumeConfig) error {
	dir := m.Dir(sandboxID, v.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if v.Files.Sensitive {
		if err := mountTmpfs(dir, sensitiveTmpfsMode+",size="+fmt.Sprint(tmpfsSize(v.Files.Files))); err != nil {
			return err
		}
	}
	return writeAtomic(dir, v.Files.Files, fsGroup(v.Files))
}

// fsGroup is the group that owns a projected volume's files, or -1.
func fsGroup(p *runtime.ProjectedVolume) int {
	if p.FSGroup == nil {
		return -1
	}
	return int(*p.FSGroup)
}

// tmpfsSize leaves room for two versions during a swap plus slack for the
// directories, with a floor so tiny secrets still fit.
func tmpfsSize(files []runtime.ProjectedFile) int64 {
	var n int64
	for _, f := range files {
		n += int64(len(f.Data)) + 4096
	}
	n = 2*n + 1<<20
	return n
}

// UpdateVolume rewrites a projected volume of a running sandbox atomically
// (containers that mounted the volume directory see the new files), or
// applies a persistent volume's size.
func (m *Manager) UpdateVolume(sandboxID string, v *runtime.VolumeConfig) error {
	if err := checkID("sandbox", sandboxID); err != nil {
		return err
	}
	if v.Persistent != nil {
		// A persistent volume's new size.
		if _, err := m.setupPersistent(v.Persistent); err != nil {
			return fmt.Errorf("sandbox %s: volume %q: %w", sandboxID, v.Name, err)
		}
		return nil
	}
	if v.Files == nil {
		return fmt.Errorf("sandbox %s: volume %q: %w: only projected and persistent volumes are updated", sandboxID, v.Name, runtime.ErrInvalidConfig)
	}
	dir := m.Dir(sandboxID, v.Name)
	if _, err := os.Stat(filepath.Join(dir, dataLink)); err != nil {
		return fmt.Errorf("sandbox %s: volume %q: %w", sandboxID, v.Name, runtime.ErrNotFound)
	}
	if v.Files.Sensitive {
		// The tmpfs was sized for the first version; grow it when the
		// secret grew (remount keeps the contents).
		if err := remountSize(dir, tmpfsSize(v.Files.Files)); err != nil {
			return fmt.Errorf("sandbox %s: volume %q: %w", sandboxID, v.Name, err)
		}
	}
	if err := writeAtomic(dir, v.Files.Files, fsGroup(v.Files)); err != nil {
		return fmt.Errorf("sandbox %s: volume %q: %w", sandboxID, v.Name, err)
	}
	return nil
}

// checkRelPath refuses paths that could leave the volume.
func checkRelPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "..") {
		return fmt.Errorf("%w: projected path %q must be relative, clean and not start with ..", runtime.ErrInvalidConfig, p)
	}
	return nil
}

// writeAtomic writes one version of the files and swaps ..data to it. Errors
// name paths, never contents: a projected file may be a secret.
// gid, unless -1, becomes the files' group, with group read added to their
// modes (the kubelet's fsGroup rule for read-only volumes).
func writeAtomic(dir string, files []runtime.ProjectedFile, gid int) error {
	seen := map[string]bool{}
	tops := map[string]bool{}
	for _, f := range files {
		if err := checkRelPath(f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("%w: projected path %q given twice", runtime.ErrInvalidConfig, f.Path)
		}
		seen[f.Path] = true
		tops[strings.SplitN(f.Path, "/", 2)[0]] = true
	}
	for top := range tops {
		if strings.HasPrefix(top, "..") {
			return fmt.Errorf("%w: projected path %q is reserved", runtime.ErrInvalidConfig, top)
		}
	}

	old, _ := os.Readlink(filepath.Join(dir, dataLink))
	// Skip the swap when nothing changed, so a resync does not churn
	// inotify watchers in the container.
	if old != "" && sameContent(filepath.Join(dir, old), files, gid) {
		return nil
	}
	tsDir, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05.")) // ..<timestamp><random>
	if err != nil {
		return err
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(tsDir, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			_ = os.RemoveAll(tsDir)
			return err
		}
		mode := fs.FileMode(f.Mode & 0o777)
		if gid >= 0 {
			mode |= 0o440
		}
		if err := writeFile(p, f.Data, mode, gid); err != nil {
			_ = os.RemoveAll(tsDir)
			return err
		}
	}
	if err := syncDir(tsDir); err != nil {
		_ = os.RemoveAll(tsDir)
		return err
	}
	tmp := filepath.Join(dir, dataLinkTmp)
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(tsDir), tmp); err != nil {
		_ = os.RemoveAll(tsDir)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		_ = os.RemoveAll(tsDir)
		return err
	}
	// Top-level links: add the new ones, drop the ones that went away.
	for top := range tops {
		link := filepath.Join(dir, top)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join(dataLink, top) {
			continue
		}
		if err := os.Symlink(filepath.Join(dataLink, top), link); err != nil {
			return err
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == dataLink:
		case strings.HasPrefix(name, ".."):
			// The version just replaced stays until the next swap: a reader
			// that resolved ..data a moment before this one still finds its
			// files (kubelet removes it at once, and such a reader sees a
			// file vanish).
			if name != filepath.Base(tsDir) && name != old {
				if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
					return err
				}
			}
		case !tops[name]:
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	return syncDir(dir)
}

func writeFile(p string, data []byte, mode fs.FileMode, gid int) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if gid >= 0 {
		if err := f.Chown(-1, gid); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil { // umask-proof
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sameContent reports whether version dir holds exactly files.
func sameContent(dir string, files []runtime.ProjectedFile, gid int) bool {
	var have []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			have = append(have, rel)
		}
		return nil
	})
	if err != nil || len(have) != len(files) {
		return false
	}
	sort.Strings(have)
	for _, f := range files {
		p := filepath.Join(dir, f.Path)
		fi, err := os.Lstat(p)
		want := f.Mode & 0o777
		if gid >= 0 {
			want |= 0o440
		}
		if err != nil || !fi.Mode().IsRegular() || uint32(fi.Mode().Perm()) != want {
			return false
		}
		// Without an fsGroup the agent's own group (root) owns the files.
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Gid) != max(gid, 0) {
			return false
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != string(f.Data) {
			return false
		}
	}
	return true
}
