package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestShippedSettingsFile: cmd/pelagos-agent/packaging/config.yaml, installed as
// /etc/pelagos/config.yaml, documents every setting with its true default.
// As shipped (all commented out) it changes nothing; with every setting
// uncommented it is a valid file that sets every flag to its default.
func TestShippedSettingsFile(t *testing.T) {
	const path = "packaging/config.yaml"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := parseFor(t, "run", "--config", path)
	if err != nil {
		t.Fatalf("as shipped: %v", err)
	}
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "config" && f.Value.String() != f.DefValue {
			t.Errorf("as shipped, the file sets %s to %s", f.Name, f.Value.String())
		}
	})

	known := settingNames(c.Root())
	commented := regexp.MustCompile(`^# ([a-z-]+): (.*)$`)
	var uncommented []string
	documented := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := commented.FindStringSubmatch(line); m != nil && known[m[1]] {
			documented[m[1]] = true
			line = m[1] + ": " + m[2]
		}
		uncommented = append(uncommented, line)
	}
	for name := range known {
		if !documented[name] {
			t.Errorf("%s does not document the setting %q", path, name)
		}
	}
	full := writeSettings(t, strings.Join(uncommented, "\n"))
	c, _, err = parseFor(t, "run", "--config", full)
	if err != nil {
		t.Fatalf("uncommented: %v", err)
	}
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "config" && f.Value.String() != f.DefValue {
			t.Errorf("%s documents %s as %s; the default is %s", path, f.Name, f.Value.String(), f.DefValue)
		}
	})
}
