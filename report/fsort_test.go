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

// A sample sorted a chunk at a time as it fills, then merged, is what
// sorting its values whole in place (the summary's way before) gives, to
// the bit: over sizes around the chunk, with and without a NaN or a -0
// among the values, and sorted again after more values come.
func TestSampleSortsAsSortFloats(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{0, 1, 300, sortChunk - 1, sortChunk, sortChunk + 1, 3*sortChunk + 777} {
		for _, odd := range []float64{1, math.NaN(), math.Copysign(0, -1)} {
			var s sample
			var scratch []float64
			var whole []float64 // sorted whole, in place, at each check
			add := func(k int) {
				for i := range k {
					v := math.Round(rng.ExpFloat64()*1e4) / 1e3 // ties too
					if i == k/2 && odd != 1 && rng.IntN(2) == 0 {
						v = odd
					}
					s.add(v, &scratch)
					whole = append(whole, v)
				}
			}
			check := func() {
				sortFloats(whole, nil)
				s.sort(make([]float64, len(s.x)))
				if len(s.x) != len(whole) {
					t.Fatalf("%d values after sorting, want %d", len(s.x), len(whole))
				}
				for i := range whole {
					if math.Float64bits(s.x[i]) != math.Float64bits(whole[i]) && !(whole[i] != whole[i] && s.x[i] != s.x[i]) {
						t.Fatalf("n %d (odd %v): value %d is %v, sorted whole %v", len(whole), odd, i, s.x[i], whole[i])
					}
				}
			}
			add(n)
			check()
			add(sortChunk + 5)
			check()
		}
	}
}
