// Package caps resolves a container's capability set (the documented default,
// Kubernetes add/drop including ALL, privileged) and applies it to the
// calling thread before execve. Resolution is pure and builds anywhere;
// applying is Linux-only.
package caps

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
)

// ErrUnknown is returned for a capability name the kernel headers we know do
// not define; a typo must not silently grant or keep a capability.
var ErrUnknown = errors.New("unknown capability")

// Default is the set every container starts from. It is Docker's and
// containerd's default set, so it is never wider than what users expect from
// `docker run`.
var Default = []string{
	"CAP_AUDIT_WRITE",
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FOWNER",
	"CAP_FSETID",
	"CAP_KILL",
	"CAP_MKNOD",
	"CAP_NET_BIND_SERVICE",
	"CAP_NET_RAW",
	"CAP_SETFCAP",
	"CAP_SETGID",
	"CAP_SETPCAP",
	"CAP_SETUID",
	"CAP_SYS_CHROOT",
}

// Normalize turns a Kubernetes-style name ("net_admin", "NET_ADMIN") into
// the kernel's "CAP_NET_ADMIN" form; "ALL" stays "ALL".
func Normalize(name string) string {
	n := strings.ToUpper(strings.TrimSpace(name))
	if n == "ALL" || strings.HasPrefix(n, "CAP_") {
		return n
	}
	return "CAP_" + n
}

// Available lists what "every capability" means for a container:
// privileged, or add: [ALL]. On Linux it is the capabilities this process
// holds (root without CAP_SYS_RESOURCE cannot pass that one on, and
// asking capset for it fails the start); elsewhere, All.
var Available = All

// All lists every capability known to the library, in kernel order.
func All() []string {
	var out []string
	for _, c := range capability.ListKnown() {
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}

func lookup(name string) (capability.Cap, bool) {
	for _, c := range capability.ListKnown() {
		if "CAP_"+strings.ToUpper(c.String()) == name {
			return c, true
		}
	}
	return 0, false
}

// Resolve computes the capability set: privileged gives every capability;
// otherwise Default, minus drop, plus add. "ALL" in drop empties the base set
// before add is applied (Kubernetes' drop: [ALL], add: [NET_BIND_SERVICE]);
// "ALL" in add gives everything not dropped by name. The result is sorted.
func Resolve(add, drop []string, privileged bool) ([]string, error) {
	for _, n := range append(slices.Clone(add), drop...) {
		if nn := Normalize(n); nn != "ALL" {
			if _, ok := lookup(nn); !ok {
				return nil, fmt.Errorf("capability %q: %w", n, ErrUnknown)
			}
		}
	}
	if privileged {
		all := Available()
		slices.Sort(all)
		return all, nil
	}
	set := map[string]bool{}
	for _, c := range Default {
		set[c] = true
	}
	dropAll := false
	for _, n := range drop {
		nn := Normalize(n)
		if nn == "ALL" {
			dropAll = true
			continue
		}
		delete(set, nn)
	}
	if dropAll {
		set = map[string]bool{}
	}
	for _, n := range add {
		nn := Normalize(n)
		if nn == "ALL" {
			for _, c := range Available() {
				set[c] = true
			}
			continue
		}
		set[nn] = true
	}
	if !dropAll {
		// A named drop wins over ALL in add, as in Kubernetes.
		for _, n := range drop {
			delete(set, Normalize(n))
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	slices.Sort(out)
	return out, nil
}

// Mask returns the kernel bit mask of the named capabilities, the form
// /proc/<pid>/status prints (CapEff: %016x). Unknown names are an error.
func Mask(names []string) (uint64, error) {
	var m uint64
	for _, n := range names {
		c, ok := lookup(Normalize(n))
		if !ok {
			return 0, fmt.Errorf("capability %q: %w", n, ErrUnknown)
		}
		m |= 1 << uint(c)
	}
	return m, nil
}
