// Package hist is a log-bucketed histogram for latency samples too many to
// keep (every inter-token gap of a million-request run): constant memory,
// quantiles within half a percent.
package hist

import "math"

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
	// the last sample and its bucket: the tokens of one step often share a
	// gap, and the logarithm is most of Add's cost
	lastV float64
	lastB int
}

func bucket(v float64) int {
	if v <= minV {
		return 0
	}
	b := int(math.Log10(v/minV) * perDecade)
	return min(b, perDecade*maxDecades-1)
}

// Add records one sample.
func (h *H) Add(v float64) { h.AddN(v, 1) }

// AddN records n samples of value v.
func (h *H) AddN(v float64, n uint64) {
	if n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, perDecade*maxDecades)
	}
	b := h.lastB
	if v != h.lastV || h.n == 0 {
		b = bucket(v)
		h.lastV, h.lastB = v, b
	}
	h.counts[b] += n
	h.n += n
	h.sum += v * float64(n)
	if v > h.max {
		h.max = v
	}
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
