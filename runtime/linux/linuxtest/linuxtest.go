// Package linuxtest holds helpers for root-tier tests: the root requirement,
// the census of kernel objects a test could have leaked, and the agent-side
// allocation of an attacker test.
package linuxtest

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips the test when not running as root, except under CI
// (CI set), where a missing prerequisite is a failure, never a skip.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("root-tier test needs uid 0 and CI is set: refusing to skip")
	}
	t.Skip("root-tier test: run as root (skipped outside CI)")
}

// Require fails under CI and skips elsewhere when ok is false.
func Require(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("prerequisite missing and CI is set: %s", what)
	}
	t.Skipf("prerequisite missing: %s", what)
}

// HasCapability reports whether this process has capability c (a
// unix.CAP_* number) in its effective set: root on a development machine
// may lack some (CAP_SYS_RESOURCE), and tests check either behaviour.
func HasCapability(t testing.TB, c int) bool {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}
