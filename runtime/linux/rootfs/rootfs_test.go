package rootfs

import (
	"strings"
	"testing"
)

func TestOverlayOptions(t *testing.T) {
	got, err := overlayOptions(&Spec{Lower: []string{"/l/base", "/l/mid", "/l/top"}, Upper: "/c/upper", Work: "/c/work"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "lowerdir=/l/top:/l/mid:/l/base,upperdir=/c/upper,workdir=/c/work"; got != want {
		t.Errorf("options = %q, want %q", got, want)
	}
	for name, s := range map[string]*Spec{
		"no layers":      {Upper: "/u", Work: "/w"},
		"colon in layer": {Lower: []string{"/l/a:b"}, Upper: "/u", Work: "/w"},
		"comma in upper": {Lower: []string{"/l"}, Upper: "/u,x", Work: "/w"},
		"over a page":    {Lower: strings.Split(strings.Repeat("/var/lib/pelagos/images/layers/sha256-0123456789abcdef ", 80), " ")[:80], Upper: "/u", Work: "/w"},
	} {
		if _, err := overlayOptions(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMaskedAndReadonlyLists(t *testing.T) {
	// The paths containerd and CRI-O mask or make read-only must stay.
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"} {
		if !contains(MaskedPaths, p) {
			t.Errorf("%s is not masked", p)
		}
	}
	for _, p := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"} {
		if !contains(ReadonlyPaths, p) {
			t.Errorf("%s is not read-only", p)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
