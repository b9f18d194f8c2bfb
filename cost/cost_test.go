package cost

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/elis-sim/elis-sim/policies"
)

// Decode attention divides once where one of its two times is the longer
// at every context, and gives the max of both to the bit: every preset
// model on every GPU at tensor parallelism 1 to 8, contexts from none to
// a billion tokens, and constants made to tie.
func TestAttentionDividesOnceAsTheMax(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	check := func(name string, a attnTerms) {
		for range 5000 {
			ctx := float64(rng.Int64N(1 << rng.IntN(31)))
			want := max(a.kvPerTok*ctx/a.kvRate, a.flopsPerTok*ctx/a.flopRate)
			if got := a.decode(ctx); math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("%s, bound %d, context %v: %v, the max %v", name, a.bound, ctx, got, want)
			}
		}
	}
	bounds := map[int]int{}
	for _, m := range ArchNames() {
		for _, g := range GPUNames() {
			for _, tp := range []int{1, 2, 4, 8} {
				r, err := NewRoofline(m, g, tp)
				if err != nil {
					continue
				}
				a := r.attnTerms()
				bounds[a.bound]++
				check(fmt.Sprintf("%s/%s tp %d", m, g, tp), a)
			}
		}
	}
	if bounds[1] == 0 {
		t.Fatalf("no preset is bound by its reads: %v", bounds)
	}
	// Near a tie, and where a constant is zero, the max is taken; far
	// from one, either side may be the longer.
	for _, c := range []struct {
		a     attnTerms
		bound int
	}{
		{attnTerms{kvPerTok: 3, kvRate: 7, flopsPerTok: 3 * (1 + 1e-12), flopRate: 7}, 0},
		{attnTerms{kvPerTok: 3, kvRate: 7, flopsPerTok: 3, flopRate: 7}, 0},
		{attnTerms{kvPerTok: 3, kvRate: 0, flopsPerTok: 3, flopRate: 7}, 0},
		{attnTerms{kvPerTok: 3, kvRate: 7, flopsPerTok: 3 * (1 + 1e-6), flopRate: 7}, -1},
		{attnTerms{kvPerTok: 3 * (1 + 1e-6), kvRate: 7, flopsPerTok: 3, flopRate: 7}, 1},
	} {
		c.a.setBound()
		if c.a.bound != c.bound {
			t.Fatalf("%+v: bound %d, want %d", c.a, c.a.bound, c.bound)
		}
		check(fmt.Sprintf("%+v", c.a), c.a)
	}
}

// A stretch priced in one call ends each step where the roofline's own
// StepTime, step after step, would: same bits, same stop at the step that
// reaches the limit, for ForRun's pricer and for a model priced step by
// step.
func TestStretchEndsAsStepByStep(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	r, err := NewRoofline("llama-3.1-8b", "h100", 1)
	if err != nil {
		t.Fatal(err)
	}
	r4, err := NewRoofline("llama-2-70b", "a100-80g", 4) // tensor parallel: an all-reduce a layer
	if err != nil {
		t.Fatal(err)
	}
	// Decode attention bound by its work, and by neither side.
	work, even := *r, *r
	work.GPU.MemBW *= 1e4
	terms := r.attnTerms()
	even.GPU.MemBW = terms.kvPerTok * terms.flopRate / (terms.flopsPerTok * r.GPU.Eff.AttnBW)
	for _, c := range []struct {
		r     *Roofline
		bound int
	}{{r, 1}, {&work, -1}, {&even, 0}} {
		if got := c.r.attnTerms().bound; got != c.bound {
			t.Fatalf("attention bound %d, want %d", got, c.bound)
		}
	}
	lin := &Linear{Base: 0.004, PerDecodeSeq: 3e-5, PerDecodeContext: 2e-8, PerPrefillToken: 2e-5}
	// Each pricer against the model that prices its steps one by one.
	for _, m := range []struct{ c, ref StepCoster }{{ForRun(r), r}, {ForRun(r4), r4}, {ForRun(&work), &work}, {ForRun(&even), &even}, {r, r}, {lin, lin}} {
		c := m.c
		for range 2000 {
			n := rng.IntN(300)
			b := &policies.Batch{DecodeSeqs: n, DecodeContext: int64(n) * int64(rng.IntN(8000)), Lazy: n}
			if rng.IntN(4) == 0 {
				b.PrefillTokens = 1 + rng.IntN(500)
				b.PrefillAttn = float64(b.PrefillTokens) * float64(b.PrefillTokens+1) / 2
			}
			t0 := 100 * rng.Float64()
			k := rng.IntN(40)
			until := t0 + rng.Float64()*float64(k)*c.StepTime(b)*1.2
			got := StretchEnds(c, []float64{t0}, b, t0, k, until)
			want := []float64{t0}
			step, at := *b, t0
			for range k {
				step.DecodeContext += int64(step.DecodeSeqs)
				e := at + m.ref.StepTime(&step)
				want = append(want, e)
				if !(until > e) {
					break
				}
				at = e
			}
			if len(got) != len(want) {
				t.Fatalf("%T %+v k %d: %d ends, step by step %d", c, *b, k, len(got), len(want))
			}
			for i := range got {
				if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
					t.Fatalf("%T %+v: end %d %v, step by step %v", c, *b, i, got[i], want[i])
				}
			}
		}
	}
}

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
