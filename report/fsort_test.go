package report

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// TestSortFloatsAsSortFloat64s checks the radix sort leaves every sample
// as sort.Float64s does, bit for bit: latencies of many magnitudes, ties,
// negatives, infinities, and the NaN and negative zero it hands back.
func TestSortFloatsAsSortFloat64s(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gens := map[string]func() float64{
		"latency":   func() float64 { return rng.ExpFloat64() * 3 },
		"ties":      func() float64 { return float64(rng.IntN(20)) / 4 },
		"signed":    func() float64 { return rng.NormFloat64() * 1e3 },
		"magnitude": func() float64 { return math.Ldexp(rng.Float64(), rng.IntN(200)-100) },
		"extremes": func() float64 {
			return []float64{math.Inf(1), math.Inf(-1), 0, math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 1}[rng.IntN(7)]
		},
		"nan":     func() float64 { return []float64{math.NaN(), 1, 2, -3}[rng.IntN(4)] },
		"negzero": func() float64 { return []float64{math.Copysign(0, -1), 0, 5}[rng.IntN(3)] },
	}
	for name, gen := range gens {
		for _, n := range []int{0, 1, 255, 256, 1000, 70_000} {
			x := make([]float64, n)
			for i := range x {
				x[i] = gen()
			}
			want := slices.Clone(x)
			sort.Float64s(want)
			scratch := make([]float64, n/2) // too short: sortFloats makes its own
			if n%2 == 0 {
				scratch = make([]float64, n+3)
			}
			sortFloats(x, scratch)
			for i := range x {
				if math.Float64bits(x[i]) != math.Float64bits(want[i]) && !(math.IsNaN(x[i]) && math.IsNaN(want[i])) {
					t.Fatalf("%s, n=%d: at %d got %v, sort.Float64s %v", name, n, i, x[i], want[i])
				}
			}
		}
	}
}

func BenchmarkSortFloats(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float64, 1_000_000)
	for i := range x {
		x[i] = rng.ExpFloat64() * 3
	}
	y := make([]float64, len(x))
	scratch := make([]float64, len(x))
	b.Run("radix", func(b *testing.B) {
		for b.Loop() {
			copy(y, x)
			sortFloats(y, scratch)
		}
	})
	b.Run("sort.Float64s", func(b *testing.B) {
		for b.Loop() {
			copy(y, x)
			sort.Float64s(y)
		}
	})
}
