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

// sample is one metric's values as a summary takes them. Each full chunk
// of sortChunk values is copied out and sorted as it fills, so that the
// summary merges a few sorted runs at the end rather than sorting a
// million values: a summarizer fed by a streaming run takes its records
// on a goroutine of its own, so the chunks sort beside the simulation (the
// five samples' sorts were most of the last 80-90 ms of a million-request
// run; now 40). The values stay in arrival order too: with a NaN or a -0
// among them the end sorts them whole, as it always did (sort.Float64s,
// which sortFloats then uses, places equal -0 and +0 by where they
// started).
type sample struct {
	x    []float64 // in arrival order
	runs []float64 // x[:len(runs)], a sorted run a chunk
	odd  bool      // x holds a NaN or a -0
}

const sortChunk = 1 << 17

// add appends v, sorting the chunk it completes (scratch: sortFloats').
func (s *sample) add(v float64, scratch *[]float64) {
	s.x = append(s.x, v)
	if v != v || v == 0 && math.Signbit(v) {
		s.odd = true
	}
	if n := len(s.runs); len(s.x)-n == sortChunk && !s.odd {
		if len(*scratch) < sortChunk {
			*scratch = make([]float64, sortChunk)
		}
		s.runs = append(s.runs, s.x[n:]...)
		sortFloats(s.runs[n:], *scratch)
	}
}

// sort sorts x into sortFloats' order (scratch: room for all of x): the
// chunks' runs merged pairwise, which without a NaN or a -0 is the one
// sequence of bits a sorted sample is, however it was reached; with one,
// x sorted whole. The runs' room is then spare.
func (s *sample) sort(scratch []float64) {
	k, n := len(s.runs), len(s.x)
	if s.odd || k == 0 {
		sortFloats(s.x, scratch)
		s.runs = s.runs[:0]
		return
	}
	src := append(s.runs, s.x[k:]...) // the runs, then the tail sorted
	sortFloats(src[k:], scratch)
	dst := s.x
	for w := sortChunk; w < n; w *= 2 {
		for lo := 0; lo < n; lo += 2 * w {
			mid, hi := min(lo+w, n), min(lo+2*w, n)
			mergeFloats(dst[lo:hi], src[lo:mid], src[mid:hi])
		}
		src, dst = dst, src
	}
	s.x, s.runs = src, dst[:0]
}

// mergeFloats merges sorted a and b into dst, a's first among equals.
func mergeFloats(dst, a, b []float64) {
	i, j, k := 0, 0, 0
	for i < len(a) && j < len(b) {
		if b[j] < a[i] {
			dst[k] = b[j]
			j++
		} else {
			dst[k] = a[i]
			i++
		}
		k++
	}
	k += copy(dst[k:], a[i:])
	copy(dst[k:], b[j:])
}
