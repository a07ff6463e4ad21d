package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

const (
	pkg  = "pelagos-agent"
	unit = "/lib/systemd/system/pelagos-agent.service"
)

// run runs a command and returns its combined output, failing the test if
// it does not exit 0.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func installed() bool {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", pkg).Output()
	return err == nil && strings.TrimSpace(string(out)) != "not-installed"
}

// TestDebInstallsAndPurges builds the .deb with `make package`, installs it
// with dpkg, checks the unit with systemd-analyze (which works without
// systemd as PID 1), runs the installed binary, and removes and purges the
// package, after which nothing it installed is left.
func TestDebInstallsAndPurges(t *testing.T) {
	linuxtest.RequireRoot(t)
	for _, tool := range []string{"make", "go", "dpkg", "dpkg-deb", "systemd-analyze", "bash"} {
		_, err := exec.LookPath(tool)
		linuxtest.Require(t, err == nil, tool+" (make deps installs it)")
	}
	if installed() {
		t.Fatalf("%s is already installed on this machine; the test installs and purges its own, so remove it first", pkg)
	}

	dir := t.TempDir()
	run(t, "make", "-C", "../../..", "package", "PKG_DIR="+dir, "BIN="+filepath.Join(dir, pkg))
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make package wrote %v, want one .deb", debs)
	}
	deb := debs[0]
	if cf := run(t, "dpkg-deb", "-I", deb, "conffiles"); strings.TrimSpace(cf) != "/etc/pelagos/config.yaml" {
		t.Errorf("conffiles: %q", cf)
	}

	// What the package will install, and which of it exists already.
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line)
		paths = append(paths, strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/"))
	}
	existed := map[string]bool{}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			existed[p] = true
		}
	}
	for _, want := range []string{"/usr/bin/pelagos-agent", unit, "/etc/pelagos/config.yaml", "/etc/pelagos/pods",
		"/usr/share/man/man1/pelagos-agent.1.gz", "/usr/share/man/man1/pelagos-agent-run.1.gz",
		"/usr/share/bash-completion/completions/pelagos-agent", "/usr/share/zsh/vendor-completions/_pelagos-agent",
		"/usr/share/fish/vendor_completions.d/pelagos-agent.fish", "/usr/share/doc/pelagos-agent/operations.md"} {
		if !strings.Contains("\n"+strings.Join(paths, "\n")+"\n", "\n"+want+"\n") {
			t.Errorf("the package lacks %s", want)
		}
	}

	t.Cleanup(func() {
		if installed() {
			if out, err := exec.Command("dpkg", "--purge", pkg).CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg --purge: %v\n%s", err, out)
			}
		}
	})
	run(t, "dpkg", "-i", deb)

	// The unit: what the agent needs of systemd, and valid as systemd reads it.
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"Type=notify", "NotifyAccess=main", "Delegate=yes", "KillMode=process", "Restart=on-failure",
		"WatchdogSec=60s", "OOMPolicy=continue", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains("\n"+string(b), "\n"+line+"\n") {
			t.Errorf("%s lacks %q", unit, line)
		}
	}
	cmd := exec.Command("systemd-analyze", "verify", unit)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out.String())
	}

	// The installed binary, its settings file and its completion.
	if v := run(t, "/usr/bin/pelagos-agent", "--version"); !strings.HasPrefix(v, "pelagos-agent ") || !strings.Contains(v, "\ncommit: ") {
		t.Errorf("--version: %q", v)
	}
	c := exec.Command("/usr/bin/pelagos-agent", "get", "pods", "--config", "/etc/pelagos/config.yaml", "--socket", filepath.Join(dir, "none.sock"))
	if o, err := c.CombinedOutput(); c.ProcessState.ExitCode() != 1 || !strings.Contains(string(o), "the agent is not running") {
		t.Errorf("a client command with the installed settings file: %v\n%s", err, o)
	}
	if o := run(t, "bash", "-c", "source /usr/share/bash-completion/completions/pelagos-agent && complete -p pelagos-agent"); !strings.Contains(o, "pelagos-agent") {
		t.Errorf("bash completion: %q", o)
	}

	// Remove: everything but the settings file goes; purge: that too.
	run(t, "dpkg", "-r", pkg)
	for _, p := range paths {
		_, err := os.Lstat(p)
		switch {
		case p == "/etc/pelagos/config.yaml" && err != nil:
			t.Errorf("dpkg -r removed the settings file %s; only a purge may", p)
		case p != "/etc/pelagos/config.yaml" && p != "/etc/pelagos" && !existed[p] && err == nil:
			t.Errorf("dpkg -r left %s", p)
		}
	}
	run(t, "dpkg", "--purge", pkg)
	if installed() {
		t.Errorf("%s still known to dpkg after the purge", pkg)
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil && !existed[p] {
			t.Errorf("dpkg --purge left %s", p)
		}
	}
}
