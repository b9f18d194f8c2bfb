package policies

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMarkGapsAsStepByStep: the gaps and marks a stretch's ends leave,
// found backwards, are markGap's after each step in turn, over gaps that
// grow, shrink, tie, and take NaNs and infinities, from marks already
// kept.
func TestMarkGapsAsStepByStep(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := []float64{0, 1, 2, 3, math.Inf(1), math.Inf(-1), math.NaN(), math.Copysign(0, -1)}
	var s Scheduler
	for trial := range 20000 {
		var marks []gapMark
		dec := int64(0)
		for range rng.IntN(6) {
			dec++
			marks = markGap(marks, dec, float64(rng.IntN(5)), 0)
		}
		from := rng.Int64N(dec + 1)
		ends := make([]float64, rng.IntN(12))
		prev := float64(rng.IntN(3))
		for i := range ends {
			at := prev
			if i > 0 {
				at = ends[i-1]
			}
			switch {
			case rng.IntN(20) == 0:
				ends[i] = pick[rng.IntN(len(pick))]
			case trial%2 == 0:
				ends[i] = at + float64(rng.IntN(5)) // ties
			default:
				ends[i] = at + 1 + float64(i)/8 + rng.Float64()/16 // mostly growing
			}
		}
		want := slices.Clone(marks)
		wantGaps := make([]float64, len(ends))
		at := prev
		for i, e := range ends {
			wantGaps[i] = e - at
			want = markGap(want, dec+int64(i)+1, e-at, from)
			at = e
		}
		gaps := make([]float64, len(ends))
		got := s.markGaps(slices.Clone(marks), dec, prev, ends, gaps, from)
		for i := range gaps {
			if math.Float64bits(gaps[i]) != math.Float64bits(wantGaps[i]) {
				t.Fatalf("ends %v from %g: gaps %v, want %v", ends, prev, gaps, wantGaps)
			}
		}
		same := len(got) == len(want)
		for i := 0; same && i < len(got); i++ {
			same = got[i].dec == want[i].dec && math.Float64bits(got[i].gap) == math.Float64bits(want[i].gap)
		}
		if !same {
			t.Fatalf("marks %v, from %d, gaps %v: got %v, step by step %v", marks, from, wantGaps, got, want)
		}
	}
}
