package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// The settings file and the environment variables that stand in for flags.
const (
	defaultConfigPath = "/etc/pelagos/config.yaml"
	envConfig         = "PELAGOS_CONFIG" // the settings file; empty: none
	envSocket         = "PELAGOS_SOCKET" // --socket for every command that has it
)

// setting is one key of the settings file.
type setting struct {
	name, value string
	line        int
	mapping     bool // written as a YAML mapping: only for key=value flags
}

// configPath is the settings file cmd reads: --config (empty: none), else
// $PELAGOS_CONFIG (empty: none), else the default path when it exists.
func configPath(cmd *cobra.Command) string {
	if fl := cmd.Flags().Lookup("config"); fl != nil && fl.Changed {
		return fl.Value.String()
	}
	if v, ok := os.LookupEnv(envConfig); ok {
		return v
	}
	if _, err := os.Stat(defaultConfigPath); err == nil {
		return defaultConfigPath
	}
	return ""
}

// readConfig parses a settings file: a YAML (or JSON) mapping from the long
// flag names of `run` to values; a list stands for a repeated flag.
func readConfig(path string) ([]setting, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("settings file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty, or only comments
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: line %d: want a mapping of setting names to values", path, m.Line)
	}
	var out []setting
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			return nil, fmt.Errorf("%s: line %d: %s: set twice (first on line %d)", path, k.Line, k.Value, first)
		}
		seen[k.Value] = k.Line
		s := setting{name: k.Value, line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			if v.Tag != "!!null" {
				s.value = v.Value
			}
		case yaml.SequenceNode:
			items := make([]string, 0, len(v.Content))
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s: line %d: %s: want a list of plain values", path, it.Line, s.name)
				}
				items = append(items, it.Value)
			}
			s.value = strings.Join(items, ",")
		case yaml.MappingNode: // node-labels: {disktype: ssd}
			s.mapping = true
			items := make([]string, 0, len(v.Content)/2)
			for j := 0; j+1 < len(v.Content); j += 2 {
				mk, mv := v.Content[j], v.Content[j+1]
				if mk.Kind != yaml.ScalarNode || mv.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s: line %d: %s: want a mapping of plain keys to plain values", path, mk.Line, s.name)
				}
				items = append(items, mk.Value+"="+mv.Value)
			}
			s.value = strings.Join(items, ",")
		default:
			return nil, fmt.Errorf("%s: line %d: %s: want a value, a list or a mapping of values", path, v.Line, s.name)
		}
		out = append(out, s)
	}
	return out, nil
}

// settingNames are the keys a settings file may hold: every flag of `run`.
func settingNames(root *cobra.Command) map[string]bool {
	names := map[string]bool{}
	add := func(f *pflag.Flag) { names[f.Name] = true }
	root.PersistentFlags().VisitAll(add)
	for _, c := range root.Commands() {
		if c.Name() == "run" {
			c.LocalFlags().VisitAll(add)
		}
	}
	delete(names, "config")
	delete(names, "help")
	return names
}

// applySettings fills every flag of cmd that the command line left out:
// from the environment, else from the settings file. A key the file may
// hold but cmd has no flag for (a client command reading `resync`) is
// skipped; a key no command knows is an error.
func applySettings(cmd *cobra.Command, g *globalOptions) error {
	path := configPath(cmd)
	g.Config = path
	if path != "" {
		settings, err := readConfig(path)
		if err != nil {
			return err
		}
		known := settingNames(cmd.Root())
		for _, s := range settings {
			if !known[s.name] {
				return fmt.Errorf("%s: line %d: unknown setting %q (settings are the long flag names of `run`)", path, s.line, s.name)
			}
			fl := cmd.Flags().Lookup(s.name)
			if fl == nil || fl.Changed {
				continue
			}
			if s.mapping && fl.Value.Type() != "stringToString" {
				return fmt.Errorf("%s: line %d: %s: want a value or a list of values", path, s.line, s.name)
			}
			if s.mapping && s.value == "" {
				continue // {}: none
			}
			if err := fl.Value.Set(s.value); err != nil {
				return fmt.Errorf("%s: line %d: %s: %w", path, s.line, s.name, err)
			}
		}
	}
	if v := os.Getenv(envSocket); v != "" {
		if fl := cmd.Flags().Lookup("socket"); fl != nil && !fl.Changed {
			if err := fl.Value.Set(v); err != nil {
				return fmt.Errorf("$%s: %w", envSocket, err)
			}
		}
	}
	return nil
}

// reloadSettings works the settings of the running command out again from
// its command line, the settings file and the environment (SIGHUP). The
// log level takes effect at once; it returns the other settings that
// changed, which take effect at the next start.
func (g *globalOptions) reloadSettings(live *cobra.Command) (restart []string, err error) {
	root, ng := newRootCommand(io.Discard, io.Discard)
	cmd, rest, err := root.Find(g.args)
	if err != nil {
		return nil, err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, err
	}
	if err := applySettings(cmd, ng); err != nil {
		return nil, err
	}
	level, err := zerolog.ParseLevel(ng.LogLevel)
	if err != nil || ng.LogLevel == "" {
		return nil, fmt.Errorf("log-level: %q is not one of debug, info, warn, error", ng.LogLevel)
	}
	live.Flags().VisitAll(func(f *pflag.Flag) {
		nf := cmd.Flags().Lookup(f.Name)
		if nf == nil || nf.Value.String() == f.Value.String() || f.Name == "log-level" {
			return
		}
		restart = append(restart, fmt.Sprintf("%s (%s -> %s)", f.Name, f.Value.String(), nf.Value.String()))
	})
	g.LogLevel = ng.LogLevel
	zerolog.SetGlobalLevel(level)
	return restart, nil
}
