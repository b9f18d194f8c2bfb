package cost

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/elis-sim/elis-sim/policies"
)

// ForRun's roofline keeps a step's shape terms and prices every step to
// the bit as the roofline does: random batches, decode runs whose
// contexts grow (the shape kept), shapes that change and come back, with
// and without tensor parallelism.
func TestForRunPricesAsTheRoofline(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, m := range []struct {
		model, gpu string
		tp         int
	}{{"llama-3.1-8b", "h100", 1}, {"llama-2-70b", "a100-80g", 4}, {"llama-2-13b", "a100-80g", 2}} {
		r, err := NewRoofline(m.model, m.gpu, m.tp)
		if err != nil {
			t.Fatal(err)
		}
		run := ForRun(r)
		b := &policies.Batch{}
		for i := range 20000 {
			if i%7 != 0 { // most steps: the same shape, contexts grown
				b.DecodeContext += int64(b.DecodeSeqs)
			} else {
				n := rng.IntN(300)
				*b = policies.Batch{DecodeSeqs: n, DecodeContext: int64(n) * int64(rng.IntN(8000)), Lazy: rng.IntN(n + 1)}
				if rng.IntN(3) == 0 {
					p := 1 + rng.IntN(4000)
					b.PrefillTokens, b.PrefillContext = p, int64(rng.IntN(4000))
					b.PrefillAttn = float64(p) * (float64(b.PrefillContext) + float64(p+1)/2)
				}
			}
			if got, want := run.StepTime(b), r.StepTime(b); math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("%s/%s tp %d, %+v: %v, the roofline %v", m.model, m.gpu, m.tp, *b, got, want)
			}
		}
	}
}
