package reconcile

import (
	"math"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Conversions of manifest numbers into the runtime's. Validation refuses
// values a node cannot honour (spec/ranges.go), so these only matter for
// a pod that reached translation some other way; they saturate instead of
// wrapping, because a wrapped number is the worst answer: a huge CPU limit
// becoming a tiny one, a long grace period a negative one.
// (resource.Quantity's own Value and MilliValue wrap past int64.)

// wholeValue is q in whole units, rounded up as Kubernetes rounds
// (Quantity.Value), saturating at the int64 bounds.
func wholeValue(q resource.Quantity) int64 { return scaledValue(q, 0) }

// milliValue is q in thousandths (millicores), rounded up, saturating.
func milliValue(q resource.Quantity) int64 { return scaledValue(q, resource.Milli) }

func scaledValue(q resource.Quantity, scale resource.Scale) int64 {
	switch {
	case q.Cmp(*resource.NewScaledQuantity(math.MaxInt64, scale)) >= 0:
		return math.MaxInt64
	case q.Cmp(*resource.NewScaledQuantity(math.MinInt64, scale)) <= 0:
		return math.MinInt64
	}
	return q.ScaledValue(scale)
}

// seconds is n seconds as a Duration, saturating at the Duration bounds.
func seconds(n int64) time.Duration {
	const limit = math.MaxInt64 / int64(time.Second)
	switch {
	case n > limit:
		return math.MaxInt64
	case n < -limit:
		return math.MinInt64
	}
	return time.Duration(n) * time.Second
}

// fileMode is a volume file's permission bits: 0 ... 0777.
func fileMode(m int32) uint32 {
	return uint32(min(max(m, 0), 0o777))
}
