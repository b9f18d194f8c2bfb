package sim

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/traces"
)

// Quiet stretches and steady decodes change no byte where they run most:
// one engine, policies that read no prediction, no guard, light loads
// (most steps in stretches), over prefix caching on and off with shared
// prefixes and sessions, block sizes from 1 to 32, KV pressure down to a
// request's room, rejections and output overheads. Each run is compared
// with the one that visits every request of every step. (It found that
// steady sessions took the blocks a step starts before naming the ones
// it fills, where a take can evict a free block of the same name.)
func TestQuietStretchesChangeNothing(t *testing.T) {
	n := 150
	if testing.Short() {
		n = 20
	}
	for seed := range n {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		gen := traces.GenConfig{N: 100 + rng.IntN(300), Seed: uint64(seed), Arrivals: traces.Poisson{Rate: 0.2 + 8*rng.Float64()},
			Prompt: traces.Uniform{Min: 1, Max: 2 + rng.IntN(1500)}, Output: traces.Uniform{Min: 1, Max: 2 + rng.IntN(900)}}
		if rng.IntN(3) == 0 {
			gen.Shared = traces.SharedPrefix{Tokens: 16 + rng.IntN(400), Fraction: rng.Float64(), Count: 1 + rng.IntN(3)}
		}
		tr, err := traces.Generate(gen)
		if err != nil {
			t.Fatal(err)
		}
		for i := range tr.Requests {
			tr.Requests[i].Priority = rng.IntN(3)
		}
		sessions := rng.IntN(3) == 0
		if sessions {
			addSessions(tr, rng)
		}
		r, _ := cost.NewRoofline("llama-3.1-8b", "h100", 1)
		eng := policies.Config{MaxBatchedTokens: 64 << rng.IntN(7), MaxSeqs: 1 + rng.IntN(64), BlockSize: []int{1, 4, 16, 32}[rng.IntN(4)],
			MaxModelLen: 4096, PredictionInterval: 50, PrefixCaching: rng.IntN(3) > 0}
		if seed%5 == 4 {
			eng.MaxModelLen = 1024 // some requests are rejected as they arrive
		}
		eng.NumBlocks = (4096/eng.BlockSize + 1) * (1 + rng.IntN(4))
		cfg := Config{Engine: eng, Policy: []string{"fcfs", "priority"}[rng.IntN(2)], Cost: r, Workers: 1, Seed: uint64(seed)}
		if rng.IntN(3) == 0 {
			cfg.Overheads.PerOutputToken = 1e-4 * rng.Float64()
		}
		cfg.Check = seed%5 == 0
		name := fmt.Sprintf("seed %d: %s, sessions %v, engine %+v", seed, cfg.Policy, sessions, eng)
		sameAsStepped(t, name, tr, cfg, seed%2 == 1)
	}
}
