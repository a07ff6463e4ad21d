package main

import (
	"os/exec"
	"strings"
	"testing"
)

// heavy are packages a helper must not import: each costs package
// initialisers run at every helper start and memory kept in every shim,
// and none is needed to supervise a container or to exec it.
var heavy = []string{
	"github.com/go-playground/validator",
	"github.com/prometheus/",
	"github.com/google/go-containerregistry",
	"google.golang.org/protobuf",
	"github.com/spf13/",
	"github.com/rs/zerolog",
	"go.yaml.in/",
	"gopkg.in/yaml",
	"sigs.k8s.io/",
	"k8s.io/",
	"github.com/fsnotify/",
	"github.com/moby/profiles",
	"github.com/elastic/go-seccomp-bpf",
	"github.com/opencontainers/runtime-spec",
	"github.com/google/nftables",
	"github.com/vishvananda/",
	"github.com/klauspost/",
	"net/http",
	"os/exec",
	"github.com/pelagos-containers/pelagos-agent/spec",
	"github.com/pelagos-containers/pelagos-agent/reconcile",
	"github.com/pelagos-containers/pelagos-agent/runtime/image",
	"github.com/pelagos-containers/pelagos-agent/runtime/linux\x00",         // the agent's runtime
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/seccomp\x00", // the compiler; its filter subpackage is fine
}

// TestHelperDependencies keeps the helper binary small (issue 13).
func TestHelperDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool: %v", err)
	}
	for _, pkg := range []string{".", "../pelagos-pause"} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, h := range heavy {
				if strings.HasPrefix(dep+"\x00", h) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
