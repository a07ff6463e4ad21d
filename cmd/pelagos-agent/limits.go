package main

import (
	"fmt"
	"math"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pelagos-containers/pelagos-agent/runtime/image"
)

// limitOptions are the limits that keep the node whole whatever pods and
// images do: process counts per pod and for all pods together, and what a
// pulled or imported image may expand to.
type limitOptions struct {
	PodPidsLimit int64
	ReservedPids int64
	MaxLayerSize byteSize
	MaxImageSize byteSize
}

func addLimitFlags(f *pflag.FlagSet, o *limitOptions) {
	f.Int64Var(&o.PodPidsLimit, "pod-pids-limit", 0, "pids.max of each pod (all its containers together); 0: the sum of its running containers' limits, -1: none")
	f.Int64Var(&o.ReservedPids, "reserved-pids", 0, "PIDs kept for the host outside all pods; 0: a tenth of the host's capacity (at least 1024), -1: no limit on all pods")
	o.MaxLayerSize = image.DefaultMaxLayerSize
	o.MaxImageSize = image.DefaultMaxImageSize
	f.Var(&o.MaxLayerSize, image.FlagMaxLayerSize, "cap on the uncompressed size of one image layer (e.g. 10Gi); -1: none")
	f.Var(&o.MaxImageSize, image.FlagMaxImageSize, "cap on the uncompressed size of all layers of one image, and of an archive on import; -1: none")
}

// byteSize is a flag taking a byte count as a Kubernetes quantity (10Gi,
// 512M, 1073741824) or -1 for no cap.
type byteSize int64

func (b *byteSize) String() string {
	if *b < 0 {
		return "-1"
	}
	return resource.NewQuantity(int64(*b), resource.BinarySI).String()
}

func (b *byteSize) Set(s string) error {
	if s == "-1" {
		*b = -1
		return nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a size (10Gi, 512M, a byte count, or -1 for none)", s)
	}
	// Value rounds up and wraps past int64: compare before trusting it.
	v := q.Value()
	if q.Sign() <= 0 || q.Cmp(*resource.NewQuantity(math.MaxInt64, resource.BinarySI)) >= 0 ||
		q.Cmp(*resource.NewQuantity(v, resource.BinarySI)) != 0 {
		return fmt.Errorf("%q: must be a positive whole number of bytes below 8 EiB, or -1 for none", s)
	}
	*b = byteSize(v)
	return nil
}

func (b *byteSize) Type() string { return "size" }

// withImageCaps adds the size caps to the options of an image store.
func (g *globalOptions) withImageCaps(o image.Options) image.Options {
	o.MaxLayerSize, o.MaxImageSize = int64(g.Limits.MaxLayerSize), int64(g.Limits.MaxImageSize)
	return o
}
