package sim

import (
	"fmt"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/traces"
)

// BenchmarkSimulate is the performance target: llama-3.1-8b on an
// H100, Poisson 10 req/s, prompts and outputs around 512 tokens; report
// 10k, 100k and 1M requests (go test -bench Simulate -benchtime 1x).
func BenchmarkSimulate(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, pol := range []string{"fcfs", "isrtf", "fcfs-nocache"} {
			caching := pol != "fcfs-nocache"
			pol := strings.TrimSuffix(pol, "-nocache")
			b.Run(fmt.Sprintf("%s/n=%d", pol+map[bool]string{false: "-nocache"}[caching], n), func(b *testing.B) {
				if testing.Short() && n > 10_000 {
					b.Skip("short")
				}
				tr, err := traces.Generate(traces.GenConfig{N: n, Seed: 1, Arrivals: traces.Poisson{Rate: 10},
					Prompt: traces.Uniform{Min: 384, Max: 640}, Output: traces.Uniform{Min: 384, Max: 640}})
				if err != nil {
					b.Fatal(err)
				}
				r, _ := cost.NewRoofline("llama-3.1-8b", "h100", 1)
				cfg := Config{Engine: cost.EngineDefaults(r, 0.9), Policy: pol, Mode: policies.RerankPause,
					Predictor: predictor.Spec{Kind: "noisy", Sigma: 0.3}, PredCost: predictor.DefaultCost, Cost: r, Workers: 1, Seed: 1}
				cfg.Engine.PrefixCaching = caching
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					res, err := Run(tr, cfg)
					if err != nil {
						b.Fatal(err)
					}
					if res.Stats.Finished != int64(n) {
						b.Fatalf("finished %d of %d", res.Stats.Finished, n)
					}
				}
			})
		}
	}
}

// BenchmarkOutputLength is issue 26's other target: at the same
// utilisation, doubling every output length should cost little more if a
// run cost per event rather than per token (100k requests, llama-3.1-8b
// on an H100, FCFS; compare the two sub-benchmarks, and each with
// sim.Config.TokenByToken, which visits every request at every step).
// Doubling the outputs doubles the steps, each still priced and its gap
// counted on its own, so the steady core (which makes a step cost per
// event, not per running request) leaves that per-step floor.
func BenchmarkOutputLength(b *testing.B) {
	for _, c := range []struct {
		name   string
		rate   float64
		lo, hi int
	}{{"out=100-300,rate=10", 10, 100, 300}, {"out=200-600,rate=5", 5, 200, 600}} {
		for _, stepped := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/token-by-token=%v", c.name, stepped), func(b *testing.B) {
				tr, err := traces.Generate(traces.GenConfig{N: 100_000, Seed: 1, Arrivals: traces.Poisson{Rate: c.rate},
					Prompt: traces.Uniform{Min: 384, Max: 640}, Output: traces.Uniform{Min: c.lo, Max: c.hi}})
				if err != nil {
					b.Fatal(err)
				}
				r, _ := cost.NewRoofline("llama-3.1-8b", "h100", 1)
				cfg := Config{Engine: cost.EngineDefaults(r, 0.9), Policy: "fcfs", Mode: policies.RerankPause, Cost: r, Workers: 1, Seed: 1,
					TokenByToken: stepped}
				cfg.Engine.PrefixCaching = true
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Run(tr, cfg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
