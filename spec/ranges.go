package spec

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/go-playground/validator/v10"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Numeric ranges. Kubernetes leaves most of these open-ended; a node
// cannot: every number of a manifest ends up in a kernel interface or in
// time arithmetic, where an out-of-range value would wrap (a huge CPU limit
// becoming 1 % of a CPU, a grace period becoming -1 s) or be dropped in
// silence. So validation refuses what the node could not honour exactly,
// and says the range; the reconciler still converts with saturation
// (reconcile/saturate.go) as a second line.
const (
	// MaxGracePeriodSeconds bounds terminationGracePeriodSeconds (pod and
	// probe) and lifecycle sleep seconds: one year, longer than anyone
	// waits for a stop and far inside time.Duration, so every deadline
	// computed from it is exact. The `range` tags in types.go repeat it
	// (TestRangeTagsMatchConstants).
	MaxGracePeriodSeconds = 365 * 24 * 3600
	// MaxCPUCores bounds CPU limits and requests: the kernel refuses a CFS
	// quota above 2^44-1 µs (max_cfs_runtime), and the runtime spreads a
	// limit over a 100 ms period, so this is the largest limit the kernel
	// accepts. Requests above 256 cores give the largest cpu.shares
	// (262144) or cpu.weight (10000), as in the kubelet.
	MaxCPUCores = ((1<<44 - 1) / 100_000)
	// MaxBytes bounds memory, ephemeral-storage and emptyDir sizeLimit:
	// the largest byte count an int64 holds (8 EiB - 1). Any value above
	// the node's memory is honoured as "no tighter than the node".
	MaxBytes = math.MaxInt64
)

var (
	maxCPUQuantity   = resource.NewQuantity(MaxCPUCores, resource.DecimalSI)
	maxBytesQuantity = resource.NewQuantity(MaxBytes, resource.BinarySI)
)

// quantityRange checks a resource quantity against what the node honours
// and returns the problem, or "".
func quantityRange(name ResourceName, q resource.Quantity) string {
	switch name {
	case ResourceCPU:
		if q.Cmp(*maxCPUQuantity) > 0 {
			return fmt.Sprintf("%s is out of range: must be at most %d cores (the kernel's CFS bandwidth limit)", q.String(), MaxCPUCores)
		}
	case ResourceMemory, ResourceEphemeralStorage:
		return bytesRange(q)
	}
	return ""
}

func bytesRange(q resource.Quantity) string {
	if q.Cmp(*maxBytesQuantity) > 0 {
		return fmt.Sprintf("%s is out of range: must be at most %d bytes (8Ei - 1)", q.String(), int64(MaxBytes))
	}
	return ""
}

// rangeParam reads a `range=lo:hi` tag parameter.
func rangeParam(param string) (lo, hi int64, err error) {
	l, h, ok := strings.Cut(param, ":")
	if !ok {
		return 0, 0, fmt.Errorf("range %q: want lo:hi", param)
	}
	if lo, err = strconv.ParseInt(l, 10, 64); err == nil {
		hi, err = strconv.ParseInt(h, 10, 64)
	}
	return lo, hi, err
}

// inRange is the `range` validation: an integer within lo..hi inclusive.
func inRange(fl validator.FieldLevel) bool {
	lo, hi, err := rangeParam(fl.Param())
	if err != nil {
		panic(fmt.Sprintf("spec: bad validate tag on %s: %v", fl.FieldName(), err))
	}
	n := fl.Field().Int()
	return n >= lo && n <= hi
}

// rangeText prints lo..hi, naming well-known bounds.
func rangeText(param string) string {
	lo, hi, err := rangeParam(param)
	if err != nil {
		return param
	}
	s := fmt.Sprintf("%d..%d", lo, hi)
	if hi == MaxGracePeriodSeconds {
		s += " (one year)"
	}
	return s
}
