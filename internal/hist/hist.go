// Package hist is a log-bucketed histogram for latency samples too many to
// keep (every inter-token gap of a million-request run): constant memory,
// quantiles within half a percent.
package hist

import (
	"math"
	"sync"
)

const (
	minV       = 1e-7 // seconds; smaller samples count in the first bucket
	perDecade  = 200  // buckets per factor of 10: about 1.2% wide
	maxDecades = 12
)

// H is the histogram. The zero value is ready to use.
type H struct {
	counts   []uint64
	n        uint64
	sum, max float64
	// the last sample's bucket: the tokens of one step often share a
	// gap, and the next step's is near it
	lastB, prevB int       // and the bucket before it
	lo, hi       float64   // the last bucket's bounds (zero: none yet)
	lower        []float64 // the buckets' lower bounds, once a sample came
}

const nBuckets = perDecade * maxDecades

// bucket is the bucket of sample v: the definition, a logarithm. A NaN
// counts in the first bucket and an infinity in the last (converting
// either to an int is undefined).
func bucket(v float64) int {
	if !(v > minV) {
		return 0
	}
	if l := math.Log10(v/minV) * perDecade; l < nBuckets-1 {
		return int(l)
	}
	return nBuckets - 1
}

// lower[b] is the smallest sample bucket puts in b (b >= 1), found by
// bisection over the floats: a step's gap differs from the last one's by
// a little, so finding its bucket between these is a comparison or two,
// not a logarithm (a fifth of a simulated step's cost). bucket is
// monotone, and TestLowerBoundsMatchTheLogarithm checks every float near
// every bound, where the logarithm's rounding could make it not.
var lower = sync.OnceValue(lowerBounds)

func lowerBounds() []float64 {
	t := make([]float64, nBuckets+1)
	t[0] = math.Inf(-1)
	t[nBuckets] = math.Inf(1)
	lo := math.Float64bits(minV)
	for b := 1; b < nBuckets; b++ {
		hi := math.Float64bits(math.MaxFloat64)
		for lo < hi { // the first float (bits ordered as the values) in bucket >= b
			mid := lo + (hi-lo)/2
			if bucket(math.Float64frombits(mid)) >= b {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		t[b] = math.Float64frombits(lo)
	}
	return t
}

// bucketNear is bucket(v), searched from b, the last sample's bucket,
// between the lower bounds t (lower()): a few steps either way, else by
// bisection (a step with a prompt chunk and one without differ by dozens
// of buckets, and a run's steps alternate between them).
func bucketNear(t []float64, v float64, b int) int {
	if !(v > minV) || v >= t[nBuckets-1] {
		return bucket(v) // the ends, infinities, NaN
	}
	for range 4 {
		switch {
		case v < t[b]:
			b--
		case v >= t[b+1]:
			b++
		default:
			return b
		}
	}
	lo, hi := 0, nBuckets // t[lo] <= v < t[hi]: t[0] is -Inf, t[nBuckets] +Inf
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; t[mid] <= v {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// Add records one sample.
func (h *H) Add(v float64) { h.AddN(v, 1) }

// AddN records n samples of value v. A sample in the last one's bucket
// (most of a run's) takes the inlined path: a comparison of the bounds.
func (h *H) AddN(v float64, n uint64) {
	if h.lo <= v && v < h.hi && n != 0 {
		h.count(h.lastB, v, n)
		return
	}
	h.addSearch(v, n)
}

func (h *H) count(b int, v float64, n uint64) {
	h.counts[b] += n
	h.n += n
	h.sum += v * float64(n)
	if v > h.max {
		h.max = v
	}
}

// addSearch is AddN finding v's bucket: the bucket before the last one's
// (a loaded run's gaps alternate between two places, steps with a prompt
// chunk and steps without), then a search.
func (h *H) addSearch(v float64, n uint64) {
	if n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, perDecade*maxDecades)
		h.lower = lower()
	}
	b, t := h.lastB, h.lower
	switch {
	case t[b] <= v && v < t[b+1]:
	case t[h.prevB] <= v && v < t[h.prevB+1]:
		b, h.prevB = h.prevB, b
	default:
		if nb := bucketNear(t, v, b); nb != b {
			b, h.prevB = nb, b
		}
	}
	h.lastB, h.lo, h.hi = b, t[b], t[b+1]
	h.count(b, v, n)
}

// N, Mean and Max describe the samples exactly.
func (h *H) N() uint64 { return h.n }
func (h *H) Mean() float64 {
	if h.n == 0 {
		return math.NaN()
	}
	return h.sum / float64(h.n)
}
func (h *H) Max() float64 { return h.max }

// Quantile returns the geometric middle of the bucket holding quantile p.
func (h *H) Quantile(p float64) float64 {
	if h.n == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(p * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := minV * math.Pow(10, (float64(i)+0.5)/perDecade)
			return math.Min(v, h.max)
		}
	}
	return h.max
}
