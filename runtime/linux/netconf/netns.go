package netconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// NetNSDir is where named network namespaces are pinned, as ip-netns(8)
// expects them.
const NetNSDir = "/run/netns"

// prepareNetNSDir makes NetNSDir a shared mount point, as ip-netns does, so
// that pins made here propagate into mount namespaces created later and an
// unmount here reaches them too.
func prepareNetNSDir() error {
	if err := os.MkdirAll(NetNSDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NetNSDir, err)
	}
	err := unix.Mount("", NetNSDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", NetNSDir, os.NewSyscallError("mount", err))
	}
	// Not a mount point yet: bind it onto itself first.
	if err := unix.Mount(NetNSDir, NetNSDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", NetNSDir, os.NewSyscallError("mount", err))
	}
	if err := unix.Mount("", NetNSDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", NetNSDir, os.NewSyscallError("mount", err))
	}
	return nil
}

// PinNetNS bind-mounts the network namespace of process pid at
// NetNSDir/name, so it outlives the process. Pinning what is already pinned
// to the same namespace succeeds.
func PinNetNS(pid int, name string) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	path := filepath.Join(NetNSDir, name)
	src := fmt.Sprintf("/proc/%d/ns/net", pid)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, os.ErrNotExist) {
		if err := prepareNetNSDir(); err != nil {
			return "", err
		}
		f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	}
	if errors.Is(err, os.ErrExist) {
		if same, _ := sameFile(src, path); same {
			return path, nil
		}
		// A stale pin of an earlier namespace with this name.
		if err := UnpinNetNS(name); err != nil {
			return "", err
		}
		f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	}
	if err != nil {
		return "", fmt.Errorf("pin netns %s: %w", name, err)
	}
	f.Close()
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		err = os.NewSyscallError("mount", err)
		if errors.Is(err, unix.EINVAL) {
			// /run/netns exists but is not shared: fix it once and retry.
			if perr := prepareNetNSDir(); perr == nil {
				err = unix.Mount(src, path, "none", unix.MS_BIND, "")
			}
		}
		if err != nil {
			os.Remove(path)
			return "", fmt.Errorf("pin netns %s from %s: %w", name, src, err)
		}
	}
	return path, nil
}

// UnpinNetNS unmounts and removes the pin; the namespace goes away once no
// process uses it. A missing pin is not an error.
func UnpinNetNS(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	path := filepath.Join(NetNSDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin netns %s: %w", name, os.NewSyscallError("umount", err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin netns %s: %w", name, err)
	}
	return nil
}

// ListNetNS returns the pinned namespace names that start with prefix.
func ListNetNS(prefix string) ([]string, error) {
	ents, err := os.ReadDir(NetNSDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NetNSDir, err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("netns name %q is not a plain name", name)
	}
	return nil
}

// sameFile reports whether two paths name the same inode (for nsfs files:
// the same namespace).
func sameFile(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, err
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}
