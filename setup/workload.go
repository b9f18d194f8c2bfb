package setup

import (
	"fmt"

	"github.com/elis-sim/elis-sim/traces"
)

// Scenario is a workload a sweep runs at several loads.
type Scenario struct {
	Name, About string
	Arrivals    traces.Arrivals // at 1x
	Prompt      traces.Lengths
	Output      traces.Lengths
	// LogPredictions: a sweep writes the prediction log of ISRTF's first
	// seed, to watch its updates.
	LogPredictions bool
	// Policies, when set, are the scenario's own --policy default; Only:
	// it runs when named, not in "all".
	Policies string
	Only     bool
}

// Trace is the scenario's n requests drawn with seed.
func (s *Scenario) Trace(n int, seed uint64) (*traces.Trace, error) {
	return traces.Generate(traces.GenConfig{N: n, Seed: seed, Arrivals: s.Arrivals, Prompt: s.Prompt, Output: s.Output, Name: s.Name})
}

// The ELIS paper's arrivals (gamma, shape 0.73, scale 10.41 s) and
// LMSYS-Chat-like lengths: heavy-tailed prompts of mean 62 tokens and
// outputs of mean 160.
var (
	elisArrivals = traces.Gamma{Shape: 0.73, Scale: 10.41}
	lmsysPrompt  = traces.LogNormal{Mean: 62, Sigma: 1.2, Max: 2048}
	lmsysOutput  = traces.LogNormal{Mean: 160, Sigma: 0.9, Max: 1024}
)

// Scenarios follow the ISRTF test guide for the patched vLLM.
var Scenarios = []Scenario{
	{Name: "fcfs-vs-isrtf", About: "ELIS-like gamma arrivals, LMSYS-like lengths",
		Arrivals: elisArrivals, Prompt: lmsysPrompt, Output: lmsysOutput},
	{Name: "mixed-lengths", About: "a third each of short (50-100), medium (100-300) and long (300-500) outputs",
		Arrivals: elisArrivals, Prompt: lmsysPrompt,
		Output: traces.Mixture{traces.Uniform{Min: 50, Max: 100}, traces.Uniform{Min: 100, Max: 300}, traces.Uniform{Min: 300, Max: 500}}},
	{Name: "long-output", About: "long outputs (800-1600 tokens) whose prediction updates can be watched",
		Arrivals: traces.Gamma{Shape: 0.73, Scale: 10.41 * 6}, Prompt: lmsysPrompt, Output: traces.Uniform{Min: 800, Max: 1600}, LogPredictions: true},
	{Name: "isrtf-variants", About: "FCFS, ISRTF as the paper has it, the vLLM patch and each guard, on the fcfs-vs-isrtf workload: run with --policy to choose the variants",
		Arrivals: elisArrivals, Prompt: lmsysPrompt, Output: lmsysOutput,
		Policies: "fcfs,isrtf+eager,isrtf/patch+sync+eager,isrtf,isrtf+margin=20:0.2,isrtf+cap=2,isrtf+cap=1.5", Only: true},
}

// ScenarioNames lists the Scenarios' names, in order.
func ScenarioNames() []string {
	var out []string
	for _, s := range Scenarios {
		out = append(out, s.Name)
	}
	return out
}

// ScenarioByName is the named scenario, or nil.
func ScenarioByName(name string) *Scenario {
	for i := range Scenarios {
		if Scenarios[i].Name == name {
			return &Scenarios[i]
		}
	}
	return nil
}

// SweepPolicies are what a sweep compares unless told otherwise.
const SweepPolicies = "fcfs,isrtf,srpt-oracle"

// elisLike generates an ELIS-like workload: the ELIS arrivals at rate
// times their rate, and LMSYS-like lengths of the given output mean, each
// capped.
func elisLike(name string, n int, rate float64, promptMax, outMean, outMax int, seed uint64) *traces.Trace {
	t, err := traces.Generate(traces.GenConfig{
		N: n, Seed: seed, Name: name,
		Arrivals:       elisArrivals,
		RateMultiplier: rate,
		Prompt:         traces.LogNormal{Mean: 62, Sigma: 1.2, Max: promptMax},
		Output:         traces.LogNormal{Mean: float64(outMean), Sigma: 0.9, Max: outMax},
	})
	if err != nil {
		panic(err) // the embedded parameters are valid
	}
	return t
}

// DefaultWorkload is the embedded workload "elis-sim run" uses without a
// trace: 300 requests at 5x the ELIS rate, prompts up to 2048 tokens,
// outputs of mean 160 up to 1024; and its description.
func DefaultWorkload(seed uint64) (*traces.Trace, string) {
	return elisLike("elis-default", 300, 5, 2048, 160, 1024, seed),
		"embedded ELIS-like workload: 300 requests, gamma(0.73, 10.41 s) arrivals at 5x, LMSYS-like lengths"
}

// DefaultReplayWorkload is what "elis-sim replay" replays without a
// trace: on a GPU the run workload itself; on the CPU a short cut of it
// (30 requests at 10x the rate, prompts and outputs up to 128 tokens, so
// that they fit the tiny model's 256 positions) that replays in well
// under a minute a policy.
func DefaultReplayWorkload(device string, seed uint64) (*traces.Trace, string) {
	if device != "cpu" {
		return DefaultWorkload(seed)
	}
	const n, rate, max = 30, 10, 128
	return elisLike("elis-default-cpu", n, rate, max, 80, max, seed),
		fmt.Sprintf("embedded ELIS-like workload for the CPU: %d requests, gamma(0.73, 10.41 s) arrivals at %dx, LMSYS-like lengths (up to %d tokens each)", n, rate, max)
}

// LoadTrace reads the trace args name (at most one), or builds the
// embedded workload from the seed option; it returns the trace and a line
// describing it.
func LoadTrace(o Options, args []string) (*traces.Trace, string, error) {
	if len(args) > 1 {
		return nil, "", Errorf("want at most one TRACE, got %d arguments", len(args))
	}
	if len(args) == 1 {
		t, err := traces.ReadFile(args[0])
		if err != nil {
			return nil, "", Bad(err)
		}
		return t, describe(args[0], len(t.Requests), t.Duration(), t.Rate()), nil
	}
	t, desc := DefaultWorkload(o.Uint64("seed"))
	return t, desc, nil
}

// describe is a trace file's workload in words: the setup's "workload".
func describe(path string, n int, duration, rate float64) string {
	return fmt.Sprintf("%s: %d requests over %.0f s (%.3g req/s)", path, n, duration, rate)
}
