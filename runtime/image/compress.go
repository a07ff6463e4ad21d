package image

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// UnpackOptions tunes Unpack.
type UnpackOptions struct {
	// DiffID, when set, is the sha256 the uncompressed tar must hash to.
	DiffID string
	// MaxEntries bounds the tar entries; 0 means DefaultMaxLayerEntries.
	MaxEntries int
	// MaxSize caps the uncompressed tar in bytes, checked while it is
	// read: 0 means DefaultMaxLayerSize, -1 no cap.
	MaxSize int64
	// budget, when set, is the image's cap shared by its layers.
	budget *sizeBudget
}

// UnpackStats describes an unpacked layer.
type UnpackStats struct {
	Entries int
	TarSize int64 // uncompressed bytes
	DiffID  string
}

// compression names the compression a stream starts with, "" for none.
func compression(magic []byte) string {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	}
	return ""
}

// Decompress returns the uncompressed stream of a layer blob, detecting
// gzip and zstd by their magic numbers; anything else is taken as a tar.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch compression(magic) {
	case "gzip":
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case "zstd":
		// 128 MiB is the largest window the zstd CLI decodes without
		// --long; a hostile frame must not make the agent allocate more.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}
