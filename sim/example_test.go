package sim_test

import (
	"fmt"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

// Run a simulation from Go: a generated trace, one engine priced by the
// roofline model, FCFS against ISRTF with a predictor whose error is
// about the ELIS predictor's. Same trace, same seed: same numbers, on any
// machine. (ISRTF halves the mean here and lengthens the tail: the long
// requests wait.)
func Example() {
	tr, err := traces.Generate(traces.GenConfig{N: 300, Seed: 1, Arrivals: traces.Poisson{Rate: 4},
		Prompt: traces.Uniform{Min: 50, Max: 500}, Output: traces.LogNormal{Mean: 200, Sigma: 1, Max: 1000}})
	if err != nil {
		fmt.Println(err)
		return
	}
	r, _ := cost.NewRooflineStack("llama-2-13b", "a100-80g", cost.DefaultStack, 1)
	eng := cost.EngineDefaults(r, 0.9)
	eng.MaxSeqs = 8 // a small batch, where the order matters
	for _, pol := range []string{"fcfs", "isrtf"} {
		res, err := sim.Run(tr, sim.Config{Engine: eng, Policy: pol, Mode: policies.RerankPause, Cost: r,
			Predictor: predictor.Spec{Kind: "noisy", Sigma: 0.2}, PredCost: predictor.DefaultCost, Workers: 1, Seed: 1})
		if err != nil {
			fmt.Println(err)
			return
		}
		s := report.Summarize(res.Records, nil)
		fmt.Printf("%-5s mean JCT %.1f s, p99 %.1f s\n", pol, s.JCT.Mean, s.JCT.P99)
	}
	// Output:
	// fcfs  mean JCT 37.0 s, p99 69.9 s
	// isrtf mean JCT 14.9 s, p99 129.7 s
}
