//go:build !unix

package manifest

import (
	"fmt"
	"io/fs"
	"os"
)

// On systems without Unix owners there is nothing to check against; refuse
// rather than pretend, unless the caller skips the check.

func checkOwnerMode(path string, _ fs.FileInfo, _ bool) error {
	return fmt.Errorf("%s: trust check is unsupported on this OS (use SkipTrustCheck): %w", path, ErrUntrusted)
}

func checkDirChain(abs string, _ bool) error {
	return fmt.Errorf("%s: trust check is unsupported on this OS (use SkipTrustCheck): %w", abs, ErrUntrusted)
}

func openNonBlocking(path string) (*os.File, error) { return os.Open(path) }
