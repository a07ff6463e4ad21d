package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// The tests run run() and the binary as a user would, but must not pick up
// this machine's settings: an installed /etc/pelagos/config.yaml or a
// PELAGOS_SOCKET in the developer's shell. The binaries the tests start
// inherit this.
func init() {
	os.Setenv(envConfig, "")
	os.Unsetenv(envSocket)
}

// parseFor parses args as run() would, up to the settings, and returns the
// command found and the options.
func parseFor(t *testing.T, args ...string) (*cobra.Command, *globalOptions, error) {
	t.Helper()
	root, g := newRootCommand(io.Discard, io.Discard)
	g.args = args
	cmd, rest, err := root.Find(args)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	return cmd, g, applySettings(cmd, g)
}

func writeSettings(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSettingsPrecedence(t *testing.T) {
	cfg := writeSettings(t, `# the agent's settings
manifests: /from/config
resync: 30s
log-level: debug
metrics-addr: 127.0.0.1:9464
socket: /from/config.sock
insecure-registry: [reg.local:5000, other.local]
`)
	get := func(c *cobra.Command, name string) string { return c.Flags().Lookup(name).Value.String() }

	// The command line wins over the file; the file fills the rest.
	c, g, err := parseFor(t, "run", "--config", cfg, "--resync", "5s")
	if err != nil {
		t.Fatal(err)
	}
	if get(c, "manifests") != "/from/config" || get(c, "resync") != "5s" || get(c, "metrics-addr") != "127.0.0.1:9464" ||
		g.LogLevel != "debug" || g.Socket != "/from/config.sock" || get(c, "insecure-registry") != "[reg.local:5000,other.local]" {
		t.Errorf("manifests=%s resync=%s metrics=%s log=%s socket=%s registries=%s", get(c, "manifests"), get(c, "resync"),
			get(c, "metrics-addr"), g.LogLevel, g.Socket, get(c, "insecure-registry"))
	}

	// A client command takes what it has a flag for and skips the rest;
	// $PELAGOS_SOCKET beats the file, --socket beats both.
	t.Setenv(envConfig, cfg)
	_, g, err = parseFor(t, "get", "pods")
	if err != nil || g.Socket != "/from/config.sock" || g.LogLevel != "debug" {
		t.Errorf("get with the file: socket %s, level %s, %v", g.Socket, g.LogLevel, err)
	}
	t.Setenv(envSocket, "/from/env.sock")
	if _, g, _ = parseFor(t, "logs", "web"); g.Socket != "/from/env.sock" {
		t.Errorf("$%s: socket %s", envSocket, g.Socket)
	}
	if _, g, _ = parseFor(t, "events", "--socket", "/from/flag.sock"); g.Socket != "/from/flag.sock" {
		t.Errorf("--socket: socket %s", g.Socket)
	}
	// An empty --config or $PELAGOS_CONFIG means no file at all.
	t.Setenv(envSocket, "")
	if _, g, _ = parseFor(t, "get", "pods", "--config", ""); g.Socket != defaultSocket || g.Config != "" {
		t.Errorf("--config '': socket %s, config %q", g.Socket, g.Config)
	}
}

func TestSettingsFileErrors(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{"manifests: /x\nmanifestz: /y\n", "line 2: unknown setting \"manifestz\" (settings are the long flag names of `run`)"},
		{"resync: 30\n", `line 1: resync: time: missing unit in duration "30"`},
		{"workers: many\n", `line 1: workers: strconv.ParseInt: parsing "many": invalid syntax`},
		{"resync: 1s\nresync: 2s\n", "line 2: resync: set twice (first on line 1)"},
		{"- manifests\n", "line 1: want a mapping of setting names to values"},
		{"bridge: {name: x}\n", "line 1: bridge: want a value or a list of values"},
		{"manifests: [/a\n", "yaml: line 1"},
	} {
		cfg := writeSettings(t, tc.content)
		_, _, err := parseFor(t, "run", "--config", cfg)
		if err == nil || !strings.HasPrefix(err.Error(), cfg+": ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %s: ...%s", tc.content, err, cfg, tc.want)
		}
	}
	// A file that is not there names itself and exits 2.
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"get", "pods", "--config", "/nonexistent/pelagos.yaml"}, io.Discard, &stderr)
	if exitCode(err) != exitUsage || !strings.Contains(stderr.String(), "settings file: open /nonexistent/pelagos.yaml: no such file or directory") {
		t.Errorf("missing file: exit %d, %q", exitCode(err), stderr.String())
	}
}

// TestReloadSettings: SIGHUP applies a new log level at once and names the
// settings that need a restart; a broken file changes nothing.
func TestReloadSettings(t *testing.T) {
	cfg := writeSettings(t, "log-level: info\nresync: 10s\n")
	c, g, err := parseFor(t, "run", "--config", cfg, "--workers", "4")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.setupLogging(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zerolog.SetGlobalLevel(zerolog.TraceLevel) })
	if err := os.WriteFile(cfg, []byte("log-level: debug\nresync: 1m\nworkers: 8\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	restart, err := g.reloadSettings(c)
	if err != nil {
		t.Fatal(err)
	}
	if zerolog.GlobalLevel() != zerolog.DebugLevel || g.LogLevel != "debug" {
		t.Errorf("level after reload: %v (%s)", zerolog.GlobalLevel(), g.LogLevel)
	}
	// --workers was given on the command line: the file cannot change it.
	if strings.Join(restart, "; ") != "resync (10s -> 1m0s)" {
		t.Errorf("settings needing a restart: %q", restart)
	}
	if err := os.WriteFile(cfg, []byte("log-level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.reloadSettings(c); err == nil || zerolog.GlobalLevel() != zerolog.DebugLevel {
		t.Errorf("broken reload: %v, level %v", err, zerolog.GlobalLevel())
	}
}

// The node's labels and taints may be written in the settings file as a
// mapping and a list (reconcile/agent checks their values).
func TestNodeSettings(t *testing.T) {
	cfg := writeSettings(t, "node-labels:\n  site: lab\n  disktype: ssd\nnode-taints: [dedicated=db:NoSchedule, maintenance:NoExecute]\n")
	run, _, err := parseFor(t, "run", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	labels, _ := run.Flags().GetStringToString("node-labels")
	taints, _ := run.Flags().GetStringSlice("node-taints")
	if len(labels) != 2 || labels["site"] != "lab" || labels["disktype"] != "ssd" ||
		!slices.Equal(taints, []string{"dedicated=db:NoSchedule", "maintenance:NoExecute"}) {
		t.Errorf("labels %v, taints %v", labels, taints)
	}
}

// A node taint or label the agent refuses is the command line's fault:
// exit status 2 with the flag named, before any lock or runtime is taken.
func TestBadNodeSettingsExitUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--node-taints", "dedicated=db"},
		{"--node-labels", "kubernetes.io/os=plan9"},
	} {
		root := t.TempDir()
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"apply", "--once", t.TempDir(), "--root", root, "--run-root", t.TempDir()}, args...), &stdout, &stderr)
		if exitCode(err) != exitUsage || !strings.Contains(stderr.String(), "Error: --node-") {
			t.Errorf("%v: exit %d, stderr %q", args, exitCode(err), stderr.String())
		}
		if _, err := os.Stat(filepath.Join(root, "agent.lock")); !os.IsNotExist(err) {
			t.Errorf("%v: the state root was locked: %v", args, err)
		}
	}
}
