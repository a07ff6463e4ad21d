package reconcile

import (
	"os/exec"
	"strings"
	"testing"
)

const self = "github.com/pelagos-containers/pelagos-agent/"

// composition is the one package under reconcile that assembles the agent
// and so may build the real runtime (ADR 0010); nothing else here may
// import it.
const composition = self + "reconcile/agent"

func isUnder(pkg, root string) bool { return pkg == root || strings.HasPrefix(pkg, root+"/") }

// TestNoForbiddenImports keeps the reconciler free of system calls and of the
// real runtime: it must be testable against the fake on any machine. Only
// reconcile/agent, the composition root, may build runtime/linux, and no
// other package under reconcile may depend on it.
func TestNoForbiddenImports(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	out, err := exec.Command(goBin, "list", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, out)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(out)) {
		if !isUnder(p, composition) {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) < 2 || !strings.Contains(string(out), composition+"\n") {
		t.Fatalf("go list ./... listed %q: want reconcile, its subpackages and %s", out, composition)
	}
	for _, pkg := range pkgs {
		for _, err := range forbiddenImports(t, goBin, pkg) {
			t.Error(err)
		}
	}
}

// forbiddenImports lists what pkg must not depend on. Each dependency
// comes with its own imports: x/sys/unix and os/exec are allowed deep
// inside a library (go-isatty under zerolog; gnostic's plugin runner under
// the Kubernetes patch and OpenAPI libraries, never called) but no package
// of this module on the reconciler's side may import them.
func forbiddenImports(t *testing.T, goBin, pkg string) []string {
	t.Helper()
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	var bad []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if isUnder(f[0], self+"runtime/linux") || isUnder(f[0], composition) {
			bad = append(bad, pkg+" depends on "+f[0])
		}
		if strings.HasPrefix(f[0], self) {
			for _, imp := range f[1:] {
				if imp == "golang.org/x/sys/unix" || imp == "os/exec" {
					bad = append(bad, pkg+": "+f[0]+" imports "+imp)
				}
			}
		}
	}
	return bad
}
