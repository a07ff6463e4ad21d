//go:build unix

package manifest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// agentUID is the other owner trusted besides root.
var agentUID = uint32(os.Geteuid())

// checkOwnerMode is the StrictModes rule for one object. ancestor relaxes it
// for world-writable sticky directories above the manifest directory.
func checkOwnerMode(path string, st fs.FileInfo, ancestor bool) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot read owner: %w", path, ErrUntrusted)
	}
	if sys.Uid != 0 && sys.Uid != agentUID {
		return fmt.Errorf("%s is owned by uid %d, not root or the agent (uid %d): %w", path, sys.Uid, agentUID, ErrUntrusted)
	}
	if st.Mode().Type()&fs.ModeSymlink != 0 {
		return nil // a symlink's own mode bits mean nothing
	}
	perm := st.Mode().Perm()
	if perm&0o022 == 0 {
		return nil
	}
	if ancestor && st.IsDir() && st.Mode()&fs.ModeSticky != 0 {
		return nil
	}
	who := "group-writable"
	if perm&0o002 != 0 {
		who = "world-writable"
	}
	return fmt.Errorf("%s is %s (mode %04o): %w", path, who, modeBits(st.Mode()), ErrUntrusted)
}

func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	return b
}

// checkDirChain checks an absolute directory and every parent up to "/".
// With isManifestDir the first one is the manifest directory itself, where
// the sticky exception does not apply.
func checkDirChain(abs string, isManifestDir bool) error {
	p := filepath.Clean(abs)
	first := true
	for {
		st, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("trust check: %w", err)
		}
		if err := checkOwnerMode(p, st, !(first && isManifestDir)); err != nil {
			return err
		}
		first = false
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

// openNonBlocking opens for reading without blocking on a FIFO and without
// following a final symlink (the caller resolved it already).
func openNonBlocking(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
}
