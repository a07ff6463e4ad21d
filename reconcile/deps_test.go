package reconcile

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoForbiddenImports keeps the reconciler free of system calls and of the
// real runtime: it must be testable against the fake on any machine.
func TestNoForbiddenImports(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	for _, pkg := range []string{"./..."} { // reconcile and its subpackages (api, metrics)
		// Each dependency with its own imports: x/sys/unix and os/exec are
		// allowed deep inside a library (go-isatty under zerolog; gnostic's
		// plugin runner under the Kubernetes patch and OpenAPI libraries,
		// never called) but no package of this module on the reconciler's
		// side may import them.
		out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		const self = "github.com/pelagos-containers/pelagos-agent/"
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if strings.HasPrefix(f[0], self+"runtime/linux") {
				t.Errorf("%s depends on %s", pkg, f[0])
			}
			if strings.HasPrefix(f[0], self) {
				for _, imp := range f[1:] {
					if imp == "golang.org/x/sys/unix" || imp == "os/exec" {
						t.Errorf("%s: %s imports %s", pkg, f[0], imp)
					}
				}
			}
		}
	}
}
