package main

import (
	"github.com/elis-sim/elis-sim/traces"
)

// defaultWorkload is the embedded workload "elis-sim run" uses without a
// trace: the ELIS paper's gamma arrivals (shape 0.73, scale 10.41 s) at 5x
// the rate, and lengths shaped like LMSYS-Chat (prompts mean 62 tokens,
// heavy-tailed; outputs mean 160, up to 1024), 300 requests.
func defaultWorkload(seed uint64) (*traces.Trace, string) {
	t, err := traces.Generate(traces.GenConfig{
		N: 300, Seed: seed, Name: "elis-default",
		Arrivals:       traces.Gamma{Shape: 0.73, Scale: 10.41},
		RateMultiplier: 5,
		Prompt:         traces.LogNormal{Mean: 62, Sigma: 1.2, Max: 2048},
		Output:         traces.LogNormal{Mean: 160, Sigma: 0.9, Max: 1024},
	})
	if err != nil {
		panic(err) // the embedded parameters are valid
	}
	return t, "embedded ELIS-like workload: 300 requests, gamma(0.73, 10.41 s) arrivals at 5x, LMSYS-like lengths"
}

// defaultReplayWorkload is what "elis-sim replay" replays without a trace:
// on a GPU the run workload itself; on the CPU a short cut of it (30
// requests at 10x the rate, prompts and outputs up to 128 tokens, so that
// they fit the tiny model's 256 positions) that replays in well under a
// minute a policy.
func defaultReplayWorkload(device string, seed uint64) (*traces.Trace, string) {
	if device != "cpu" {
		return defaultWorkload(seed)
	}
	t, err := traces.Generate(traces.GenConfig{
		N: 30, Seed: seed, Name: "elis-default-cpu",
		Arrivals:       traces.Gamma{Shape: 0.73, Scale: 10.41},
		RateMultiplier: 10,
		Prompt:         traces.LogNormal{Mean: 62, Sigma: 1.2, Max: 128},
		Output:         traces.LogNormal{Mean: 80, Sigma: 0.9, Max: 128},
	})
	if err != nil {
		panic(err) // the embedded parameters are valid
	}
	return t, "embedded ELIS-like workload for the CPU: 30 requests, gamma(0.73, 10.41 s) arrivals at 10x, LMSYS-like lengths (up to 128 tokens each)"
}
