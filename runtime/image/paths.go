package image

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrHostileLayer: a layer tried to write outside its directory or through
// a link, or exceeded a limit. The layer is refused as a whole.
var ErrHostileLayer = errors.New("layer refused")

// cleanName validates a tar path: relative, no ".." component. "" is the
// layer root.
func cleanName(n string) (string, error) {
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("absolute path: %w", ErrHostileLayer)
	}
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("parent directory component: %w", ErrHostileLayer)
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", nil
	}
	return c, nil
}
