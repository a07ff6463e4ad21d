package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// complete runs cobra's hidden completion command as the shells do and
// returns the candidates and the directive line.
func complete(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), append([]string{"__complete"}, args...), &stdout, &stderr); err != nil {
		t.Fatalf("__complete %v: %v %s", args, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	return lines[:len(lines)-1], lines[len(lines)-1]
}

// TestCompletionThroughTheAgent: TAB offers what the running agent has:
// pods (of the namespace -n names), their containers for -c, namespaces
// for -n; the socket comes from $PELAGOS_SOCKET as for any client
// command. Without an agent it offers nothing and says nothing.
func TestCompletionThroughTheAgent(t *testing.T) {
	a := newDescribedAgent(t)
	t.Setenv(envSocket, a.sock)
	t.Setenv(envConfig, "")
	const noFileComp = ":4"
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"logs", ""}, []string{"db", "web"}},
		{[]string{"logs", "-n", "infra", ""}, []string{"edge", "report"}},
		{[]string{"logs", "web", "-c", ""}, []string{"app", "crash", "setup"}},
		{[]string{"logs", "web", ""}, nil},
		{[]string{"exec", ""}, []string{"db", "web"}},
		{[]string{"exec", "edge", "-n", "infra", "-c", ""}, []string{"proxy"}},
		{[]string{"describe", ""}, []string{"pod", "pods", "po"}},
		{[]string{"describe", "pod", "web", ""}, []string{"db"}},
		{[]string{"describe", "pod", "-A", ""}, []string{"db", "edge", "report", "web"}},
		{[]string{"get", "pods", ""}, []string{"db", "web"}},
		{[]string{"get", "pods", "-o", ""}, []string{"wide", "json", "yaml"}},
		{[]string{"events", "-n", ""}, []string{"default", "infra", "kube-node-lease"}},
	} {
		got, directive := complete(t, tc.args...)
		if !slices.Equal(sorted(got), sorted(tc.want)) || directive != noFileComp {
			t.Errorf("__complete %q: %q %s, want %q %s", tc.args, got, directive, tc.want, noFileComp)
		}
	}
	t.Setenv(envSocket, a.sock+".none")
	if got, directive := complete(t, "logs", ""); len(got) != 0 || directive != ":1" {
		t.Errorf("without an agent: %q %s, want nothing and the error directive", got, directive)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
