package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Bomb returns a layer blob that expands to at least expanded bytes: a tar
// header declaring one 1 TiB file, then zeros. It is cut off there (no
// end of archive), which nothing notices before a cap stops it. Compressed,
// every MiB of zeros costs about a kilobyte (gzip) or a hundred bytes
// (zstd): the compressor's output for one MiB of zeros after a flush is
// the same each time, so the blob is that chunk repeated, and building a
// 16 GiB bomb takes milliseconds.
func Bomb(c Compression, expanded int64) ([]byte, error) {
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bomb", Mode: 0o644, Size: 1 << 40, ModTime: Epoch}); err != nil {
		return nil, err
	}
	const chunk = 1 << 20
	chunks := max(expanded-int64(hdr.Len()), 0)/chunk + 1
	if c == Uncompressed {
		return append(hdr.Bytes(), make([]byte, chunks*chunk)...), nil
	}
	var out bytes.Buffer
	var w interface {
		io.Writer
		Flush() error
	}
	switch c {
	case Gzip:
		gw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
		if err != nil {
			return nil, err
		}
		w = gw
	case Zstd:
		zw, err := zstd.NewWriter(&out, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		w = zw
	default:
		return nil, fmt.Errorf("bomb: unknown compression %d", c)
	}
	zeros := make([]byte, chunk)
	flushed := func() ([]byte, error) {
		if _, err := w.Write(zeros); err != nil {
			return nil, err
		}
		if err := w.Flush(); err != nil {
			return nil, err
		}
		b := bytes.Clone(out.Bytes())
		out.Reset()
		return b, nil
	}
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return nil, err
	}
	prefix, err := flushed()
	if err != nil {
		return nil, err
	}
	// The first chunk after the prefix may still differ (the window was
	// not all zeros yet); from the second on they repeat.
	first, err := flushed()
	if err != nil {
		return nil, err
	}
	steady, err := flushed()
	if err != nil {
		return nil, err
	}
	if again, err := flushed(); err != nil || !bytes.Equal(again, steady) {
		return nil, fmt.Errorf("bomb: the compressor's output for zeros does not repeat (%v)", err)
	}
	blob := append(prefix, first...)
	for range chunks {
		blob = append(blob, steady...)
	}
	return blob, nil
}
