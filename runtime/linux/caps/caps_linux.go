package caps

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/moby/sys/capability"
)

func init() { Available = func() []string { return slices.Clone(permitted()) } }

// permitted lists the known capabilities in this process's permitted set,
// read once: it does not grow. If it cannot be read, every known one is
// listed, and a start that asks for what is not held fails closed.
var permitted = sync.OnceValue(func() []string {
	c, err := capability.NewPid2(0)
	if err == nil {
		err = c.Load()
	}
	if err != nil {
		return All()
	}
	var out []string
	for _, k := range capability.ListKnown() {
		if c.Get(capability.PERMITTED, k) {
			out = append(out, "CAP_"+strings.ToUpper(k.String()))
		}
	}
	return out
})

func toCaps(names []string) ([]capability.Cap, error) {
	out := make([]capability.Cap, 0, len(names))
	for _, n := range names {
		c, ok := lookup(Normalize(n))
		if !ok {
			return nil, fmt.Errorf("capability %q: %w", n, ErrUnknown)
		}
		out = append(out, c)
	}
	return out, nil
}

// Set is a capability set prepared for the calling thread. It is loaded
// while the thread can still read its own /proc entry: after a change of
// uid the process is not dumpable and /proc/self/status is root's.
type Set struct {
	c capability.Capabilities
}

// Prepare builds the set: bounding, effective and permitted are names;
// inheritable and ambient are empty, so nothing passes to a non-root execve.
func Prepare(names []string) (*Set, error) {
	keep, err := toCaps(names)
	if err != nil {
		return nil, err
	}
	c, err := capability.NewPid2(0)
	if err != nil {
		return nil, fmt.Errorf("capabilities: read own: %w", err)
	}
	if err := c.Load(); err != nil {
		return nil, fmt.Errorf("capabilities: load own: %w", err)
	}
	c.Clear(capability.CAPS | capability.BOUNDING | capability.AMBIENT)
	c.Set(capability.BOUNDING|capability.EFFECTIVE|capability.PERMITTED, keep...)
	return &Set{c: c}, nil
}

// DropBounding limits the thread's bounding set. It needs CAP_SETPCAP, so it
// runs before the thread changes uid.
func (s *Set) DropBounding() error {
	if err := s.c.Apply(capability.BOUNDING); err != nil {
		return fmt.Errorf("capabilities: drop bounding set: %w", err)
	}
	return nil
}

// ApplyThread sets effective, permitted, inheritable and ambient. The caller
// keeps the thread locked until execve.
func (s *Set) ApplyThread() error {
	if err := s.c.Apply(capability.CAPS | capability.AMBIENT); err != nil {
		return fmt.Errorf("capabilities: set effective/permitted: %w", err)
	}
	return nil
}
