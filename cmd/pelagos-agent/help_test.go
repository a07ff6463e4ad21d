package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelpGolden: each command's --help is a contract (what users read,
// what the man pages are made of). Client commands list only the flags
// they use: the runtime's roots and host-global names belong to run,
// apply and the low-level commands.
func TestHelpGolden(t *testing.T) {
	runtimeFlags := []string{"--root", "--run-root", "--bridge", "--subnet", "--netns-prefix", "--cgroup-parent", "--nft-table"}
	for _, tc := range []struct {
		args    []string
		runtime bool // whether the runtime's flags belong in the help
	}{
		{args: nil},
		{args: []string{"get"}},
		{args: []string{"describe"}},
		{args: []string{"logs"}},
		{args: []string{"events"}},
		{args: []string{"exec"}},
		{args: []string{"validate"}},
		{args: []string{"version"}},
		{args: []string{"run"}, runtime: true},
		{args: []string{"apply"}, runtime: true},
		{args: []string{"sandbox", "ls"}, runtime: true},
		{args: []string{"container", "ls"}, runtime: true},
		{args: []string{"image", "ls"}, runtime: true},
	} {
		name := strings.Join(append([]string{"pelagos-agent"}, tc.args...), "-")
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := run(t.Context(), append(tc.args, "--help"), &stdout, &stderr); err != nil || stderr.Len() > 0 {
				t.Fatalf("--help: %v %s", err, stderr.String())
			}
			golden(t, "help/"+name+".golden", stdout.String())
			for _, f := range runtimeFlags {
				has := strings.Contains(stdout.String(), f+" ")
				if has != tc.runtime {
					t.Errorf("%s in the help: %v, want %v", f, has, tc.runtime)
				}
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	var flag, cmd bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, &flag, &flag); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), []string{"version"}, &cmd, &cmd); err != nil {
		t.Fatal(err)
	}
	if flag.String() != cmd.String() || !strings.HasPrefix(flag.String(), "pelagos-agent dev\ncommit: ") {
		t.Errorf("--version printed %q, version printed %q", flag.String(), cmd.String())
	}
}
