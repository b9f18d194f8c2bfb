package main

import (
	"fmt"

	"github.com/elis-sim/elis-sim/traces"
)

// elisLike generates an ELIS-like workload: the ELIS paper's gamma
// arrivals (shape 0.73, scale 10.41 s) at rate times their rate, and
// lengths shaped like LMSYS-Chat (heavy-tailed prompts of mean 62 tokens,
// outputs of the given mean), each capped.
func elisLike(name string, n int, rate float64, promptMax, outMean, outMax int, seed uint64) *traces.Trace {
	t, err := traces.Generate(traces.GenConfig{
		N: n, Seed: seed, Name: name,
		Arrivals:       traces.Gamma{Shape: 0.73, Scale: 10.41},
		RateMultiplier: rate,
		Prompt:         traces.LogNormal{Mean: 62, Sigma: 1.2, Max: promptMax},
		Output:         traces.LogNormal{Mean: float64(outMean), Sigma: 0.9, Max: outMax},
	})
	if err != nil {
		panic(err) // the embedded parameters are valid
	}
	return t
}

// defaultWorkload is the embedded workload "elis-sim run" uses without a
// trace: 300 requests at 5x the ELIS rate, prompts up to 2048 tokens,
// outputs of mean 160 up to 1024.
func defaultWorkload(seed uint64) (*traces.Trace, string) {
	return elisLike("elis-default", 300, 5, 2048, 160, 1024, seed),
		"embedded ELIS-like workload: 300 requests, gamma(0.73, 10.41 s) arrivals at 5x, LMSYS-like lengths"
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
	const n, rate, max = 30, 10, 128
	return elisLike("elis-default-cpu", n, rate, max, 80, max, seed),
		fmt.Sprintf("embedded ELIS-like workload for the CPU: %d requests, gamma(0.73, 10.41 s) arrivals at %dx, LMSYS-like lengths (up to %d tokens each)", n, rate, max)
}
