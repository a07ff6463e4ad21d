package caps

import (
	"strings"
	"testing"

	"github.com/moby/sys/capability"
)

// TestPrivilegedWithinOwnCaps: a privileged container (or add: [ALL]) is
// given what this process can pass on, never a capability it lacks, which
// capset refuses (here root lacks CAP_SYS_RESOURCE, and every privileged
// start failed with "operation not permitted").
func TestPrivilegedWithinOwnCaps(t *testing.T) {
	own, err := capability.NewPid2(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := own.Load(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		add        []string
		privileged bool
	}{{"privileged", nil, true}, {"add ALL", []string{"ALL"}, false}} {
		got, err := Resolve(tc.add, nil, tc.privileged)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range got {
			c, _ := lookup(name)
			if !own.Get(capability.PERMITTED, c) {
				t.Errorf("%s: %s is not in this process's permitted set: the container could not start", tc.name, name)
			}
		}
		held := 0
		for _, c := range capability.ListKnown() {
			if own.Get(capability.PERMITTED, c) {
				held++
			}
		}
		if len(got) != held {
			t.Errorf("%s: %d capabilities, this process holds %d: %s", tc.name, len(got), held, strings.Join(got, " "))
		}
	}
}
