package report

import (
	"math"
	"sort"
)

// sortFloats sorts x ascending into the order sort.Float64s leaves, by
// least-significant-digit radix on the values' bits: a million-request
// summary sorts five samples of a million values, which comparison
// sorting made a tenth of the run's time. scratch, when at least as long
// as x, is used for the passes (else one is made); the sorted values end
// in x. A sample holding a NaN or a negative zero (which sort.Float64s
// orders among equals arbitrarily) is sorted by sort.Float64s instead.
func sortFloats(x, scratch []float64) {
	const (
		bits    = 11
		buckets = 1 << bits
		passes  = (64 + bits - 1) / bits
	)
	if len(x) < 256 {
		sort.Float64s(x)
		return
	}
	if len(scratch) < len(x) {
		scratch = make([]float64, len(x))
	}
	scratch = scratch[:len(x)]
	// key orders as the value: a positive value's bits with the sign bit
	// set, a negative value's bits all flipped.
	key := func(v float64) uint64 {
		b := math.Float64bits(v)
		if b>>63 != 0 {
			return ^b
		}
		return b | 1<<63
	}
	var count [passes][buckets]int
	for _, v := range x {
		if v != v || (v == 0 && math.Signbit(v)) {
			sort.Float64s(x)
			return
		}
		k := key(v)
		for p := range passes {
			count[p][k>>(p*bits)&(buckets-1)]++
		}
	}
	src, dst := x, scratch
	for p := range passes {
		c := &count[p]
		if c[key(src[0])>>(p*bits)&(buckets-1)] == len(src) {
			continue // every value has this digit: the pass moves nothing
		}
		at := 0
		for i, n := range c {
			c[i] = at
			at += n
		}
		for _, v := range src {
			d := key(v) >> (p * bits) & (buckets - 1)
			dst[c[d]] = v
			c[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &x[0] {
		copy(x, src)
	}
}
