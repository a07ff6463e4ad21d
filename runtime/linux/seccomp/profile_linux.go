package seccomp

import (
	"fmt"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
