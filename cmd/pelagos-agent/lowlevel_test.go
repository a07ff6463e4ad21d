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
	// Neither does a TAB, which offers nothing.
	for _, args := range [][]string{{"sandbox", "rm", ""}, {"container", "rm", ""}, {"image", "rm", ""}, {"container", "run", "--sandbox", ""}} {
		var stdout, stderr bytes.Buffer
		args = append(append(append([]string{"__complete"}, args[:2]...), "--config", cfg, "--socket", sock), args[2:]...)
		err := run(t.Context(), args, &stdout, &stderr)
		if err != nil || stdout.String() != ":1\n" {
			t.Errorf("__complete %q: %v %q", args, err, stdout.String())
		}
		for _, d := range []string{root, runRoot} {
			if _, err := os.Stat(d); err == nil {
				t.Fatalf("__complete %v created %s", args, d)
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
	// image ls shows the ID pods report as their containers' imageID.
	imageID := p.Status.ContainerStatuses[0].ImageID
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"sandbox", "ls"}, []string{sandbox[:13] + " ", " web ", " running "}},
		{[]string{"container", "ls"}, []string{" app ", " side ", sandbox[:13]}},
		{[]string{"image", "ls"}, []string{"busybox ", " 1.36 ", strings.TrimPrefix(imageID, "sha256:")[:13]}},
		{[]string{"image", "ls", "--no-trunc"}, []string{" " + imageID + " "}},
	} {
		// Only the socket: the roots and names come from the agent.
		out, errOut, code := runCLI(t, e.bin, append(tc.args, "--socket", e.sock)...)
		for _, w := range tc.want {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("%v: exit %d, want %q in\n%s%s", tc.args, code, w, out, errOut)
			}
		}
	}
	// TAB offers the agent's sandboxes and containers, found the same way.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sandbox", "inspect"}, sandbox + "\tdefault/web\n"},
		{[]string{"container", "logs"}, "\tdefault/web app (running)\n"},
		{[]string{"container", "ls", "--sandbox"}, "\nweb\n"},
	} {
		args := append(append([]string{"__complete"}, tc.args...), "--socket", e.sock, "")
		if tc.args[len(tc.args)-1] == "--sandbox" {
			args = append(append([]string{"__complete"}, tc.args[:2]...), "--socket", e.sock, "--sandbox", "")
		}
		out, errOut, code := runCLI(t, e.bin, args...)
		if code != 0 || !strings.Contains(out, tc.want) || !strings.HasSuffix(out, "\n:4\n") {
			t.Errorf("__complete %q: exit %d, want %q in\n%s%s", tc.args, code, tc.want, out, errOut)
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
