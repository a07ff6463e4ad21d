package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLowLevelReadsCreateNothing: with no agent to ask and no state where
// the settings point, a low-level read says which flags to pass and
// creates neither root (it used to make empty roots and print an empty
// table).
func TestLowLevelReadsCreateNothing(t *testing.T) {
	dir := t.TempDir()
	root, runRoot := filepath.Join(dir, "state"), filepath.Join(dir, "run")
	cfg := writeSettings(t, fmt.Sprintf("root: %s\nrun-root: %s\n", root, runRoot))
	sock := filepath.Join(dir, "none.sock")
	for _, args := range [][]string{
		{"sandbox", "ls"}, {"sandbox", "inspect", "web"},
		{"container", "ls"}, {"container", "inspect", "abc"}, {"container", "logs", "abc"},
		{"image", "ls"}, {"image", "inspect", "busybox:1.36"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append(args, "--config", cfg, "--socket", sock), &stdout, &stderr)
		want := fmt.Sprintf("Error: %s does not exist and no agent answers on %s: pass the --root and --run-root (or the --socket) "+
			"of the agent whose state you want to see\n", root, sock)
		if exitCode(err) != exitFailure || stderr.String() != want || stdout.Len() != 0 {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %q\nwant   %q", args, exitCode(err), stdout.String(), stderr.String(), want)
		}
		for _, d := range []string{root, runRoot} {
			if _, err := os.Stat(d); err == nil {
				t.Fatalf("%v created %s", args, d)
			}
		}
	}
}

// TestLowLevelCommandsFindTheAgent: run beside an agent with its own roots,
// the low-level commands given only the socket list the agent's sandboxes,
// containers and images.
func TestLowLevelCommandsFindTheAgent(t *testing.T) {
	e := newAgentEnv(t, "--stop-pods-on-exit")
	e.write("rev1", "web.yaml", podYAML("web", "web", "one"))
	e.start()
	p := e.running("web")
	sandbox := p.Status.Pelagos.SandboxID
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"sandbox", "ls"}, []string{sandbox + " ", " web ", " running "}},
		{[]string{"container", "ls"}, []string{" app ", " side ", sandbox}},
		{[]string{"image", "ls"}, []string{"busybox ", " 1.36 "}},
	} {
		// Only the socket: the roots and names come from the agent.
		out, errOut, code := runCLI(t, e.bin, append(tc.args, "--socket", e.sock)...)
		for _, w := range tc.want {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("%v: exit %d, want %q in\n%s%s", tc.args, code, w, out, errOut)
			}
		}
	}
	// The socket from the environment, as for the client commands.
	cmd := []string{"sandbox", "inspect", "web"}
	out, errOut, code := runCLIEnv(t, e.bin, []string{envSocket + "=" + e.sock}, cmd...)
	if code != 0 || !strings.Contains(out, sandbox) {
		t.Errorf("%v with $%s: exit %d\n%s%s", cmd, envSocket, code, out, errOut)
	}
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}
