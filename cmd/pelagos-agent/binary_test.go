package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// agentBinary is the static pelagos-agent binary the end-to-end tests run as
// a user would. It is built once per test process, into a directory that
// TestMain removes.
var agentBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pelagos-agent-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "pelagos-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", errors.New("build: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

// binDir holds the built binary; TestMain removes it.
var binDir string

func buildAgentBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := agentBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// runCLI runs the binary with args and returns stdout, stderr and the exit
// status; failing to run it at all fails the test.
func runCLI(tb testing.TB, bin string, args ...string) (string, string, int) {
	tb.Helper()
	return runCLIEnv(tb, bin, nil, args...)
}

// runCLIEnv is runCLI with env added to the environment.
func runCLIEnv(tb testing.TB, bin string, env []string, args ...string) (string, string, int) {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), stderr.String(), ee.ExitCode()
	} else if err != nil {
		tb.Fatalf("run %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), 0
}
