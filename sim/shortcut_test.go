package sim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/traces"
)

// The simulator's shortcuts change no byte: on random workloads and
// setups -- every policy and ISRTF mode, the guards, lazy, eager and
// asynchronous predictions, routers over several engines, prefix caching
// on and off with shared prefixes and sessions, KV pressure, chunked
// prefill, overheads, rejections -- a run whose core keeps steady decodes
// lazily gives the records (streamed: in the same order), counters, gap
// histogram and makespan of the run that visits every request of every
// step.
func TestShortcutsChangeNothing(t *testing.T) {
	pols := []string{"fcfs", "isrtf", "sjf", "srpt-oracle", "priority", "sjf-oracle"}
	modes := []policies.Rerank{policies.RerankPause, policies.RerankNone, policies.RerankResubmit}
	routers := []string{"least-loaded", "round-robin", "least-predicted-work", "prefix-affinity"}
	n := 100
	if testing.Short() {
		n = 15
	}
	for seed := range n {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		gen := traces.GenConfig{N: 150 + rng.IntN(250), Seed: uint64(seed), Arrivals: traces.Poisson{Rate: 2 + 30*rng.Float64()},
			Prompt: traces.Uniform{Min: 10, Max: 10 + rng.IntN(1500)}, Output: traces.Uniform{Min: 1, Max: 2 + rng.IntN(600)}}
		if rng.IntN(2) == 0 {
			gen.Shared = traces.SharedPrefix{Tokens: 64 + rng.IntN(400), Fraction: rng.Float64(), Count: 1 + rng.IntN(3)}
		}
		tr, err := traces.Generate(gen)
		if err != nil {
			t.Fatal(err)
		}
		if rng.IntN(3) == 0 {
			addSessions(tr, rng)
		}
		r, _ := cost.NewRoofline("llama-3.1-8b", "h100", 1)
		eng := policies.Config{MaxBatchedTokens: 64 << rng.IntN(7), MaxSeqs: 1 + rng.IntN(64), BlockSize: []int{1, 8, 16, 32}[rng.IntN(4)],
			MaxModelLen: 4096, PredictionInterval: 1 + rng.IntN(80), PrefixCaching: rng.IntN(3) > 0,
			LazyPredictions: rng.IntN(2) == 0, AsyncPredictions: rng.IntN(4) == 0}
		if seed%4 == 3 {
			eng.MaxModelLen = 1024 // some requests are rejected as they arrive
		}
		eng.NumBlocks = (4096/eng.BlockSize + 1) * (1 + rng.IntN(6)) // from a single request's room to plenty
		if rng.IntN(3) == 0 {
			eng.LongPrefillThreshold = 32 + rng.IntN(256)
		}
		switch rng.IntN(5) {
		case 0:
			eng.Guard.AgingSteps, eng.Guard.PromoteSteps = 5+rng.IntN(100), 1+rng.IntN(20)
		case 1:
			eng.Guard.SlowdownCap = 1.2 + 3*rng.Float64()
		case 2:
			eng.Guard.PreemptLimit = rng.Float64()
		case 3:
			eng.DisplaceMargin, eng.DisplaceRatio = 20*rng.Float64(), 0.3*rng.Float64()
		}
		cfg := Config{Engine: eng, Policy: pols[rng.IntN(len(pols))], Mode: modes[rng.IntN(len(modes))],
			Predictor: predictor.Spec{Kind: "noisy", Sigma: rng.Float64()}, PredCost: predictor.DefaultCost, Cost: r,
			Workers: 1 + rng.IntN(3), Router: routers[rng.IntN(len(routers))], Seed: uint64(seed), KeepHistory: rng.IntN(2) == 0,
			SyncPredictions: rng.IntN(2) == 0}
		if rng.IntN(3) == 0 {
			cfg.Overheads = cost.Overheads{PerRequest: 1e-3 * rng.Float64(), PerPromptToken: 1e-6 * rng.Float64(), PerOutputToken: 1e-4 * rng.Float64()}
		}
		cfg.Check = seed%10 == 0 // the core's invariants, the steady set's included, after every step
		name := fmt.Sprintf("seed %d: %s/%v, %d workers (%s), engine %+v", seed, cfg.Policy, cfg.Mode, cfg.Workers, cfg.Router, eng)
		// Half the runs stream their records: the order they come in is
		// compared too.
		sameAsStepped(t, name, tr, cfg, seed%2 == 1)
	}
}

// sameAsStepped runs tr under cfg as the simulator does and visiting every
// request of every step (streaming the records when streams), and fails
// where the two runs differ in a byte.
func sameAsStepped(t *testing.T, name string, tr *traces.Trace, cfg Config, streams bool) {
	t.Helper()
	var stream []policies.Record
	if streams {
		cfg.OnRecord = func(r *policies.Record) error { stream = append(stream, *r); return nil }
	}
	fast, err := Run(tr, cfg)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if streams {
		fast.Records, stream = stream, nil
	}
	cfg.TokenByToken = true
	ref, err := Run(tr, cfg)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if streams {
		ref.Records = stream
	}
	if a, b := runBytes(t, fast), runBytes(t, ref); a != b {
		t.Fatalf("%s: the shortcut changed the run:\n%s\nstepped:\n%s", name, first(a, b), first(b, a))
	}
}

// addSessions puts about half of tr's requests that name no shared
// prefix into one of five conversations, whose streams a prefix cache
// shares (a session's output blocks are named as they fill).
func addSessions(tr *traces.Trace, rng *rand.Rand) {
	for i := range tr.Requests {
		if r := &tr.Requests[i]; len(r.HashIDs) == 0 && rng.IntN(2) == 0 {
			r.Session = fmt.Sprint("s", rng.IntN(5))
		}
	}
}

// runBytes is everything a run's outputs are made of.
func runBytes(t *testing.T, r *Result) string {
	rec, err := json.Marshal(r.Records)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s\nstats %+v\ngaps %+v\nmakespan %v sigma %v", rec, r.Stats, r.Gaps, r.Makespan, r.Sigma)
}

// first is a's text from where it first differs from b.
func first(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return a[max(0, i-200):min(len(a), i+300)]
}
