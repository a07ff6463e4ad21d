//go:build !linux

package image

import (
	"context"
	"fmt"
	"io"
	goruntime "runtime"
)

// Unpack needs openat2 and overlayfs: Linux only.
func Unpack(context.Context, io.Reader, string, UnpackOptions) (UnpackStats, error) {
	return UnpackStats{}, fmt.Errorf("unpack layer: unsupported on %s", goruntime.GOOS)
}

func (s *Store) unpackLayer(context.Context, io.Reader, string, *sizeBudget) (int64, bool, error) {
	return 0, false, fmt.Errorf("unpack layer: unsupported on %s", goruntime.GOOS)
}
