package replay

import (
	"fmt"
	"sort"
	"time"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/gpu"
)

// Shapes are the step shapes a profile times.
type Shapes struct {
	Prefill  []int // prompt chunk sizes, one sequence, empty cache
	Batches  []int // decode batch sizes
	Contexts []int // cached tokens per decode sequence
	Reps     int   // timed repetitions per shape (the median is kept)
	// Budget is the most tokens one step may carry (the engine's
	// max-num-batched-tokens; 0: no limit). Caches are filled in chunks
	// within it, and shapes over it are skipped, as the engine never
	// runs them.
	Budget int
}

// DefaultShapes suit a small model on the CPU; a GPU profile wants larger
// prefills and batches.
var DefaultShapes = Shapes{Prefill: []int{16, 32, 64, 128, 256}, Batches: []int{1, 2, 4, 8, 16}, Contexts: []int{32, 128, 384}, Reps: 5}

// Profile times exec over shapes: prefills alone, decodes alone and
// prefills mixed with decodes. Shapes that do not fit the cache or the
// step budget are skipped.
func Profile(exec gpu.Executor, vocab int, sh Shapes) ([]cost.StepSample, error) {
	bs := exec.BlockSize()
	fits := func(tokens int) bool { return sh.Budget <= 0 || tokens <= sh.Budget }
	chunk := 1 << 30
	if sh.Budget > 0 {
		chunk = sh.Budget
	}
	blocksFor := func(n int) int { return (n + bs - 1) / bs }
	tokens := func(n, seed int) []int32 {
		t := make([]int32, n)
		for i := range t {
			t[i] = int32((seed*7919 + i*104729) % vocab)
		}
		return t
	}
	time1 := func(steps []gpu.SeqStep) (float64, error) {
		next := make([]int32, len(steps))
		t0 := time.Now()
		err := exec.Step(steps, next)
		return time.Since(t0).Seconds(), err
	}
	median := func(x []float64) float64 { sort.Float64s(x); return x[len(x)/2] }
	var out []cost.StepSample
	for _, p := range sh.Prefill {
		if blocksFor(p) > exec.NumBlocks() || !fits(p) {
			continue
		}
		table := seqBlocks(0, blocksFor(p))
		var ts []float64
		for r := 0; r < sh.Reps+1; r++ { // the first run warms up
			t, err := time1([]gpu.SeqStep{{Tokens: tokens(p, r), BlockTable: table, Sample: true}})
			if err != nil {
				return nil, err
			}
			if r > 0 {
				ts = append(ts, t)
			}
		}
		out = append(out, cost.StepSample{PrefillTokens: p, PrefillAttn: float64(p) * float64(p+1) / 2, Seconds: median(ts)})
	}
	for _, b := range sh.Batches {
		for _, c := range sh.Contexts {
			mixed := sh.Prefill[len(sh.Prefill)/2]
			per := blocksFor(c + sh.Reps + 2)
			if b*per+blocksFor(mixed) > exec.NumBlocks() || !fits(b) {
				continue
			}
			// Fill b sequences with c cached tokens (untimed), one sequence
			// and at most a budget's worth of tokens a step.
			seqs := make([]gpu.SeqStep, b)
			for i := range seqs {
				seqs[i] = gpu.SeqStep{BlockTable: seqBlocks(i*per, per), Sample: true}
				all := tokens(c, i)
				for lo := 0; lo < c; lo += chunk {
					hi := min(lo+chunk, c)
					if _, err := time1([]gpu.SeqStep{{Tokens: all[lo:hi], Pos: lo, BlockTable: seqs[i].BlockTable, Sample: hi == c}}); err != nil {
						return nil, err
					}
				}
			}
			var dec, mix []float64
			for r := 0; r < sh.Reps; r++ {
				for i := range seqs {
					seqs[i].Tokens, seqs[i].Pos = tokens(1, r+i), c+r
				}
				t, err := time1(seqs)
				if err != nil {
					return nil, err
				}
				dec = append(dec, t)
			}
			ctx := int64(b) * int64(c+sh.Reps)
			out = append(out, cost.StepSample{DecodeSeqs: b, DecodeContext: ctx, Seconds: median(dec)})
			if !fits(b + mixed) {
				continue
			}
			// The same decodes (recomputing their last position) beside a
			// prefill chunk.
			pre := gpu.SeqStep{Tokens: tokens(mixed, 99), BlockTable: seqBlocks(b*per, blocksFor(mixed)), Sample: true}
			for r := 0; r < sh.Reps; r++ {
				t, err := time1(append(append([]gpu.SeqStep(nil), seqs...), pre))
				if err != nil {
					return nil, err
				}
				mix = append(mix, t)
			}
			out = append(out, cost.StepSample{DecodeSeqs: b, DecodeContext: ctx, PrefillTokens: mixed, PrefillAttn: float64(mixed) * float64(mixed+1) / 2, Seconds: median(mix)})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no profile shape fits a cache of %d blocks of %d tokens and a step budget of %d tokens", exec.NumBlocks(), bs, sh.Budget)
	}
	return out, nil
}

func seqBlocks(first, n int) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(first + i)
	}
	return t
}

// ProfilePredictor times the predictor network over batch sizes and
// sequence lengths (median of reps).
func ProfilePredictor(net gpu.PredictorNet, batches, lengths []int, reps int) ([]cost.PredictorCall, error) {
	var out []cost.PredictorCall
	for _, b := range batches {
		for _, n := range lengths {
			cfg := net.Config()
			n = min(n, cfg.MaxPositions)
			ids := make([][]int32, b)
			for i := range ids {
				ids[i] = make([]int32, n)
				for j := range ids[i] {
					ids[i][j] = int32((i*31 + j*17) % cfg.Vocab)
				}
			}
			var ts []float64
			for r := 0; r <= reps; r++ {
				t0 := time.Now()
				if _, err := net.Predict(ids, nil); err != nil {
					return nil, err
				}
				if r > 0 {
					ts = append(ts, time.Since(t0).Seconds())
				}
			}
			sort.Float64s(ts)
			out = append(out, cost.PredictorCall{Calls: b, Tokens: b * n, Seconds: ts[len(ts)/2]})
		}
	}
	return out, nil
}
