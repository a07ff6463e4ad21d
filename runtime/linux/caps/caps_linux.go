package caps

import (
	"fmt"

	"github.com/moby/sys/capability"
)

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

// DropBounding limits the calling thread's bounding set to names. It needs
// CAP_SETPCAP, so it runs before the thread changes uid. Capabilities the
// running kernel does not know are skipped: they cannot be granted anyway.
func DropBounding(names []string) error {
	keep, err := toCaps(names)
	if err != nil {
		return err
	}
	c, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: read own: %w", err)
	}
	if err := c.Load(); err != nil {
		return fmt.Errorf("capabilities: load own: %w", err)
	}
	c.Clear(capability.BOUNDING)
	c.Set(capability.BOUNDING, keep...)
	if err := c.Apply(capability.BOUNDING); err != nil {
		return fmt.Errorf("capabilities: drop bounding set: %w", err)
	}
	return nil
}

// ApplyThread sets the calling thread's effective and permitted sets to
// names and empties inheritable and ambient, so nothing is passed on to a
// non-root execve. The caller keeps the thread locked until execve.
func ApplyThread(names []string) error {
	keep, err := toCaps(names)
	if err != nil {
		return err
	}
	c, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: read own: %w", err)
	}
	if err := c.Load(); err != nil {
		return fmt.Errorf("capabilities: load own: %w", err)
	}
	c.Clear(capability.CAPS | capability.AMBIENT)
	c.Set(capability.EFFECTIVE|capability.PERMITTED, keep...)
	if err := c.Apply(capability.CAPS | capability.AMBIENT); err != nil {
		return fmt.Errorf("capabilities: set effective/permitted: %w", err)
	}
	return nil
}
