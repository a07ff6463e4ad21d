package seccomp

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	securejoin "github.com/cyphar/filepath-securejoin"
	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Profile types, as Kubernetes spells them.
const (
	RuntimeDefault = "RuntimeDefault"
	Unconfined     = "Unconfined"
	Localhost      = "Localhost"
)

func specFor(bounding []string) *specs.Spec {
	return &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: bounding}}}
}

// Default returns moby's default profile resolved for a container whose
// bounding set is bounding (rules such as clone with namespace flags depend on
// CAP_SYS_ADMIN) and for the running kernel.
func Default(bounding []string) (*specs.LinuxSeccomp, error) {
	p, err := mobyseccomp.GetDefaultProfile(specFor(bounding))
	if err != nil {
		return nil, fmt.Errorf("seccomp: default profile: %w", err)
	}
	return p, nil
}

// LoadLocalhost reads a Localhost profile (Docker/OCI JSON) named relative to
// dir, which is the state root's seccomp directory. The name is resolved
// inside dir, so "../x" or a symlink cannot read a file outside it.
func LoadLocalhost(dir, name string, bounding []string) (*specs.LinuxSeccomp, error) {
	path, err := securejoin.SecureJoin(dir, name)
	if err != nil {
		return nil, fmt.Errorf("seccomp: localhost profile %q: %w", name, err)
	}
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seccomp: localhost profile %q: %w", name, err)
	}
	p, err := mobyseccomp.LoadProfile(string(body), specFor(bounding))
	if err != nil {
		return nil, fmt.Errorf("seccomp: localhost profile %s: %w", filepath.Join(dir, name), err)
	}
	if p == nil {
		return nil, fmt.Errorf("seccomp: localhost profile %s: empty profile: %w", filepath.Join(dir, name), ErrUnsupported)
	}
	return p, nil
}

// Load installs prog on the calling thread. The caller has set no_new_privs
// or still holds CAP_SYS_ADMIN, keeps the thread locked and calls execve on
// it next: the filter is inherited across execve.
func Load(prog *Program) error {
	if len(prog.Instructions) == 0 {
		return fmt.Errorf("seccomp: load: empty program")
	}
	filters := make([]unix.SockFilter, len(prog.Instructions))
	for i, in := range prog.Instructions {
		filters[i] = unix.SockFilter{Code: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(prog.Flags), uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return os.NewSyscallError("seccomp(SET_MODE_FILTER)", errno)
	}
	return nil
}
