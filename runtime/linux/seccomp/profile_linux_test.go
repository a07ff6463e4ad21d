package seccomp

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/caps"
)

func TestDefaultProfileCompiles(t *testing.T) {
	p, err := Default(caps.Default)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Compile(p)
	if err != nil {
		t.Fatalf("moby's default profile must compile: %v", err)
	}
	eperm := uint32(retErrno | errnoEPERM)
	for _, c := range []struct {
		call string
		args [6]uint64
		want uint32
	}{
		{"read", [6]uint64{}, retAllow},
		{"execve", [6]uint64{}, retAllow},
		{"mount", [6]uint64{}, eperm},
		{"unshare", [6]uint64{}, eperm},
		{"keyctl", [6]uint64{}, eperm},
		{"bpf", [6]uint64{}, eperm},
		{"clone", [6]uint64{0x11}, retAllow},           // fork-like
		{"clone", [6]uint64{0x10000000 | 0x11}, eperm}, // CLONE_NEWUSER
		{"clone3", [6]uint64{}, retErrno | errnoENOSYS},
		{"personality", [6]uint64{0}, retAllow},
		{"personality", [6]uint64{0x0040000}, eperm}, // ADDR_NO_RANDOMIZE
		{"socket", [6]uint64{2}, retAllow},
		{"socket", [6]uint64{40}, eperm}, // AF_VSOCK
	} {
		if got := run(t, prog, x86_64, nr(t, c.call), c.args); got != c.want {
			t.Errorf("default profile: %s%v = %#x, want %#x", c.call, c.args, got, c.want)
		}
	}
}

func TestLoadLocalhost(t *testing.T) {
	dir := t.TempDir()
	body := `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`
	if err := os.WriteFile(filepath.Join(dir, "nomkdir.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadLocalhost(dir, "nomkdir.json", caps.Default)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, prog, x86_64, nr(t, "mkdirat"), [6]uint64{}); got != retErrno|errnoEPERM {
		t.Errorf("mkdirat = %#x, want EPERM", got)
	}
	// A name escaping the profiles directory resolves inside it instead.
	outside := filepath.Join(filepath.Dir(dir), "escape.json")
	if err := os.WriteFile(outside, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(outside)
	if _, err := LoadLocalhost(dir, "../escape.json", caps.Default); err == nil {
		t.Error("a profile outside the profiles directory was read")
	}
}
