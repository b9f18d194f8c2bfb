package policies

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// The end ring gives a step's finishes as a heap by (at, key) would: over
// random joins (keys increasing, as joinSteady gives them), steps one at
// a time, stretches up to the first finish, jumps past finishes (the core
// makes none; the ring takes them all), growth, and resets.
func TestEndRingTakesInFinishOrder(t *testing.T) {
	for seed := range uint64(100) {
		rng := rand.New(rand.NewPCG(seed, 3))
		var r endRing
		var model []endEntry
		dec, key := int64(0), int64(0)
		var buf []endEntry
		for step := range 2000 {
			for range rng.IntN(4) {
				rem := 1 + rng.Int64N(50)
				if rng.IntN(20) == 0 {
					rem = 1 + rng.Int64N(5000) // past the ring's first size
				}
				e := endEntry{at: dec + rem, key: key, epoch: uint32(key)}
				key++
				r.push(e, dec)
				model = append(model, e)
			}
			slices.SortStableFunc(model, func(a, b endEntry) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.key, b.key)) })
			at, ok := r.first()
			if ok != (len(model) > 0) || ok && at != model[0].at {
				t.Fatalf("seed %d step %d: first %d %v, want %d of %d", seed, step, at, ok, model[0].at, len(model))
			}
			switch {
			case ok && rng.IntN(3) == 0:
				dec = max(dec+1, model[0].at)
			case rng.IntN(10) == 0:
				dec += 1 + rng.Int64N(100)
			default:
				dec++
			}
			buf = r.takeDue(dec, buf[:0])
			n := 0
			for n < len(model) && model[n].at <= dec {
				n++
			}
			if len(buf) != n {
				t.Fatalf("seed %d step %d (dec %d): took %d, want %d", seed, step, dec, len(buf), n)
			}
			for i := range buf {
				if buf[i].at != model[i].at || buf[i].key != model[i].key || buf[i].epoch != model[i].epoch {
					t.Fatalf("seed %d step %d (dec %d): took %+v at %d, want %+v", seed, step, dec, buf[i], i, model[i])
				}
			}
			model = model[n:]
			if r.n != len(model) {
				t.Fatalf("seed %d step %d: %d entries, want %d", seed, step, r.n, len(model))
			}
			if rng.IntN(500) == 0 {
				r.reset()
				model, dec = nil, 0
			}
		}
	}
}
