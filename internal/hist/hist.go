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
	lastB  int
	lo, hi float64 // the last bucket's bounds (zero: none yet)
	bd     *bounds // once a sample came
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
// bisection over the floats, and a sample's bucket is found between these
// (a logarithm was a fifth of a simulated step's cost). bucket is
// monotone, and TestLowerBoundsMatchTheLogarithm checks every float near
// every bound, where the logarithm's rounding could make it not.
//
// The search starts from a table by the sample's leading bits (its
// exponent and the mantissa's first cellBits): a cell of floats that
// share them is 0.54% wide, under a bucket's 1.2%, so the table's bucket
// is the sample's or the one before, told apart by one comparison.
type bounds struct {
	lower []float64
	first []uint16 // first[c]: the bucket of cell c's smallest float
	base  uint64   // the cell of minV
}

const (
	cellBits  = 7
	cellShift = 52 - cellBits
)

var table = sync.OnceValue(newBounds)

func newBounds() *bounds {
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
	bd := &bounds{lower: t, base: math.Float64bits(minV) >> cellShift}
	last := math.Float64bits(t[nBuckets-1]) >> cellShift
	bd.first = make([]uint16, last-bd.base+1)
	b := 0
	for c := range bd.first {
		v := math.Float64frombits((bd.base + uint64(c)) << cellShift)
		for b+1 < nBuckets && v >= t[b+1] {
			b++
		}
		bd.first[c] = uint16(b)
	}
	return bd
}

// find is bucket(v), from the table and the bounds.
func (bd *bounds) find(v float64) int {
	t := bd.lower
	if !(v > minV) || v >= t[nBuckets-1] {
		return bucket(v) // the ends, infinities, NaN
	}
	b := int(bd.first[math.Float64bits(v)>>cellShift-bd.base])
	for v >= t[b+1] {
		b++
	}
	return b
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

// AddEach records n samples of each value in vs, in order (a run of
// steps whose tokens shared their steps' gaps): AddN's, a call a run.
func (h *H) AddEach(vs []float64, n uint64) {
	if n == 0 {
		return
	}
	// The run's samples mostly fall in one bucket (a stretch's gaps grow
	// slowly): its count, the sum and the max are kept in registers
	// while they do, the sum taking each sample in turn as AddN would.
	fn := float64(n)
	for i := 0; i < len(vs); {
		if !(h.lo <= vs[i] && vs[i] < h.hi) {
			h.addSearch(vs[i], n)
			i++
			continue
		}
		lo, hi := h.lo, h.hi
		sum, mx := h.sum, h.max
		j := i
		for ; j < len(vs) && lo <= vs[j] && vs[j] < hi; j++ {
			v := vs[j]
			sum += v * fn
			if v > mx {
				mx = v
			}
		}
		k := uint64(j - i)
		h.counts[h.lastB] += k * n
		h.n += k * n
		h.sum, h.max = sum, mx
		i = j
	}
}

func (h *H) count(b int, v float64, n uint64) {
	h.counts[b] += n
	h.n += n
	h.sum += v * float64(n)
	if v > h.max {
		h.max = v
	}
}

// addSearch is AddN finding v's bucket.
func (h *H) addSearch(v float64, n uint64) {
	if n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, perDecade*maxDecades)
		h.bd = table()
	}
	b := h.bd.find(v)
	h.lastB, h.lo, h.hi = b, h.bd.lower[b], h.bd.lower[b+1]
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
