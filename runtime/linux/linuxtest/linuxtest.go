// Package linuxtest holds helpers for root-tier tests: the root requirement
// and the census of kernel objects a test could have leaked.
package linuxtest

import (
	"os"
	"testing"
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
