package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/traces"
)

func genTrace(t testing.TB, n int, seed uint64, arrivals string, out traces.Lengths) *traces.Trace {
	t.Helper()
	arr, err := traces.ParseArrivals(arrivals)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := traces.Generate(traces.GenConfig{N: n, Seed: seed, Arrivals: arr,
		Prompt: traces.LogNormal{Mean: 200, Sigma: 0.8, Max: 2000}, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func testConfig(t testing.TB, policy string) Config {
	r, err := cost.NewRoofline("llama-2-13b", "a100-80g", 1)
	if err != nil {
		t.Fatal(err)
	}
	eng := cost.EngineDefaults(r, 0.9)
	return Config{Engine: eng, Policy: policy, Mode: policies.RerankPause, Predictor: predictor.Spec{Kind: "noisy", Sigma: 0.5},
		PredCost: predictor.DefaultCost, Cost: r, Workers: 1, Seed: 1, Check: true}
}

// checkRun asserts the properties every simulated run must have.
func checkRun(t *testing.T, name string, tr *traces.Trace, res *Result) {
	t.Helper()
	for i, r := range res.Records {
		want := tr.Requests[i]
		if r.ID != want.ID {
			t.Fatalf("%s: request %d (%s) lost: record %+v", name, i, want.ID, r)
		}
		if r.Rejected != "" {
			continue
		}
		if r.Finish < 0 || r.Generated != want.OutputTokens {
			t.Fatalf("%s: request %s unfinished: %+v", name, want.ID, r)
		}
		if !(r.Arrival <= r.FirstScheduled && r.FirstScheduled < r.FirstToken && r.FirstToken <= r.Finish) {
			t.Fatalf("%s: request %s times out of order: %+v", name, want.ID, r)
		}
	}
	if got := res.Stats.Finished + res.Stats.Rejected; got != int64(len(tr.Requests)) {
		t.Fatalf("%s: %d finished + rejected, want %d", name, got, len(tr.Requests))
	}
}

func resultBytes(t *testing.T, res *Result) []byte {
	b, err := json.Marshal(res.Records)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPropertiesOnEveryPolicy runs small random workloads under every
// policy, mode and guard, with the core's invariants (KV blocks within
// capacity, token budget and sequence limit per step) checked after every
// step, and asserts no request is lost and the same seed gives the same
// bytes.
func TestPropertiesOnEveryPolicy(t *testing.T) {
	tight := func(c *Config) { c.Engine.NumBlocks = 300; c.Engine.MaxBatchedTokens = 512; c.Engine.MaxSeqs = 8 }
	variants := []struct {
		name   string
		mod    func(*Config)
		shared bool // the trace with shared system prompts
	}{
		{"default", func(*Config) {}, false},
		{"no-prefix-caching", func(c *Config) { tight(c); c.Engine.PrefixCaching = false }, false},
		{"shared-prefixes", tight, true},
		{"isrtf-guards", func(c *Config) {
			tight(c)
			c.Engine.LazyPredictions, c.Engine.DisplaceMargin, c.Engine.DisplaceRatio = true, 10, 0.1
			c.Engine.Guard.SlowdownCap = 3
			c.Engine.AsyncPredictions = true
			c.SyncPredictions = true
		}, false},
		{"tight-memory", tight, false},
		{"aging", func(c *Config) { tight(c); c.Engine.Guard = policies.Guard{AgingSteps: 20, PromoteSteps: 5} }, false},
		{"preempt-limit", func(c *Config) { tight(c); c.Engine.Guard.PreemptLimit = 0.8 }, false},
		{"chunk-threshold", func(c *Config) { tight(c); c.Engine.LongPrefillThreshold = 64 }, false},
		{"3-workers-rr", func(c *Config) { tight(c); c.Workers = 3; c.Router = "round-robin" }, false},
		{"3-workers-work", func(c *Config) { tight(c); c.Workers = 3; c.Router = "least-predicted-work" }, false},
	}
	exercised := map[string]int64{} // preemptions and rejections per variant, to know the checks saw them
	for seed := uint64(1); seed <= 3; seed++ {
		tr := genTrace(t, 150, seed, "poisson:20", traces.LogNormal{Mean: 150, Sigma: 1, Max: 1500})
		tr.Requests[7].PromptTokens = 5000 // longer than the cache in tight runs: rejected, not hung
		shared := genTrace(t, 150, seed, "poisson:20", traces.LogNormal{Mean: 150, Sigma: 1, Max: 1500})
		for i := range shared.Requests {
			if r := &shared.Requests[i]; i%3 != 0 {
				r.PromptTokens += 300
				r.HashIDs, r.HashBlock = []uint64{uint64(i % 2), 7, 8, 9}, 64 // two system prompts, 256 tokens each
			}
		}
		for _, pol := range policies.Names() {
			for _, mode := range []policies.Rerank{policies.RerankPause, policies.RerankResubmit, policies.RerankNone} {
				if mode != policies.RerankPause && pol != "isrtf" {
					continue
				}
				for _, v := range variants {
					name := fmt.Sprintf("%s/%s/%s/seed%d", pol, mode, v.name, seed)
					cfg := testConfig(t, pol)
					cfg.Mode = mode
					cfg.KeepHistory = true
					v.mod(&cfg)
					tr := tr
					if v.shared {
						tr = shared
					}
					a, err := Run(tr, cfg)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					checkRun(t, name, tr, a)
					exercised[v.name+" preemptions"] += a.Stats.Preemptions
					exercised[v.name+" rejections"] += a.Stats.Rejected
					exercised[v.name+" cached tokens"] += a.Stats.PrefixHit
					b, _ := Run(tr, cfg)
					if !bytes.Equal(resultBytes(t, a), resultBytes(t, b)) {
						t.Fatalf("%s: same seed, different records", name)
					}
				}
			}
		}
	}
	for _, k := range []string{"tight-memory preemptions", "aging preemptions", "tight-memory rejections", "shared-prefixes cached tokens", "tight-memory cached tokens"} {
		if exercised[k] == 0 {
			t.Errorf("no %s happened: the workload does not exercise them", k)
		}
	}
	if n := exercised["no-prefix-caching cached tokens"]; n != 0 {
		t.Errorf("%d tokens hit with prefix caching off", n)
	}
}

func meanJCT(res *Result) float64 {
	s, n := 0.0, 0
	for _, r := range res.Records {
		if r.Rejected == "" {
			s += r.Finish - r.Arrival
			n++
		}
	}
	return s / float64(n)
}

// On a loaded trace with widely varying outputs: the oracle beats ISRTF
// with a noisy predictor, which beats FCFS; a useless predictor brings
// ISRTF back to FCFS.
func TestPolicyOrderingOnLoadedTrace(t *testing.T) {
	tr := genTrace(t, 400, 5, "gamma:0.73:10.41", traces.LogNormal{Mean: 250, Sigma: 1.1, Max: 2000})
	// 5x the paper's rate, and the paper's batch of 4.
	for i := range tr.Requests {
		tr.Requests[i].Arrival /= 40
	}
	paper, err := cost.NewRooflineStack("llama-2-13b", "a100-80g", "2023", 1) // the paper's engine, vLLM 0.5.0
	if err != nil {
		t.Fatal(err)
	}
	run := func(policy string, spec predictor.Spec) float64 {
		cfg := testConfig(t, policy)
		cfg.Cost = paper
		cfg.Engine.MaxSeqs = 4
		cfg.Predictor = spec
		cfg.Check = false
		res, err := Run(tr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkRun(t, policy, tr, res)
		return meanJCT(res)
	}
	fcfs := run("fcfs", predictor.Spec{})
	oracle := run("srpt-oracle", predictor.Spec{})
	noisy := run("isrtf", predictor.Spec{Kind: "noisy", MAE: 19.9})
	useless := run("isrtf", predictor.Spec{Kind: "constant", Value: 100})
	t.Logf("mean JCT: fcfs %.1f s, srpt-oracle %.1f s, isrtf noisy %.1f s, isrtf constant %.1f s", fcfs, oracle, noisy, useless)
	if !(oracle < noisy && noisy < fcfs) {
		t.Errorf("want srpt-oracle < isrtf(noisy) < fcfs, got %.2f, %.2f, %.2f", oracle, noisy, fcfs)
	}
	if math.Abs(useless-fcfs)/fcfs > 0.02 {
		t.Errorf("constant predictor: isrtf %.2f, fcfs %.2f: want within 2%%", useless, fcfs)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	tr := genTrace(t, 5, 1, "poisson:1", traces.Fixed(10))
	cfg := testConfig(t, "lifo")
	if _, err := Run(tr, cfg); err == nil {
		t.Fatal("accepted unknown policy")
	}
	cfg = testConfig(t, "fcfs")
	cfg.Router = "random"
	if _, err := Run(tr, cfg); err == nil {
		t.Fatal("accepted unknown router")
	}
	cfg = testConfig(t, "isrtf")
	cfg.Predictor = predictor.Spec{Kind: "recorded"}
	if _, err := Run(tr, cfg); err == nil {
		t.Fatal("recorded predictor without recordings")
	}
}

// Without shared content and without preemption nothing can hit, so
// prefix caching changes no time: the records equal those of the run
// without it but for the cache's own counts.
func TestPrefixCachingWithoutSharingChangesNothing(t *testing.T) {
	tr := genTrace(t, 300, 5, "poisson:5", traces.LogNormal{Mean: 150, Sigma: 1, Max: 1500})
	cfg := testConfig(t, "fcfs")
	on, err := Run(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine.PrefixCaching = false
	off, _ := Run(tr, cfg)
	if on.Stats.Preemptions != 0 || on.Stats.PrefixHit != 0 {
		t.Fatalf("%d preemptions, %d tokens hit: the workload is not the one meant", on.Stats.Preemptions, on.Stats.PrefixHit)
	}
	for i := range on.Records {
		r := on.Records[i]
		if int(r.PrefillTokens) != r.PromptTokens {
			t.Fatalf("request %s computed %d prefill tokens of a %d-token prompt", r.ID, r.PrefillTokens, r.PromptTokens)
		}
		r.PrefillTokens, r.CachedTokens = 0, 0
		if fmt.Sprint(r) != fmt.Sprint(off.Records[i]) {
			t.Fatalf("request %d: %+v with the cache, %+v without", i, r, off.Records[i])
		}
	}
}

// A cost file's overheads: a request joins its engine late by the
// per-request and per-prompt-token delays (its arrival stays the trace's),
// and each token reaches the client late by the per-output-token delay.
func TestOverheads(t *testing.T) {
	tr := &traces.Trace{Requests: []traces.Request{{ID: "a", Arrival: 0, PromptTokens: 100, OutputTokens: 3}, {ID: "b", Arrival: 0.001, PromptTokens: 10, OutputTokens: 3}}}
	cfg := testConfig(t, "fcfs")
	cfg.Cost = &cost.Linear{Base: 0.01}
	plain, err := Run(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Overheads = cost.Overheads{PerRequest: 0.5, PerPromptToken: 0.01, PerOutputToken: 0.2}
	late, err := Run(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, b := late.Records[0], late.Records[1]
	// a joins at 0.5 + 1.0 = 1.5 s, b at 0.001 + 0.5 + 0.1 = 0.601 s: b goes first.
	if a.Arrival != 0 || math.Abs(b.FirstScheduled-0.601) > 1e-9 || math.Abs(a.FirstScheduled-1.5) > 1e-9 {
		t.Fatalf("joins: a %+v, b %+v", a, b)
	}
	if math.Abs(b.FirstToken-(b.FirstScheduled+0.01+0.2)) > 1e-9 || math.Abs(b.Finish-b.FirstToken-(plain.Records[1].Finish-plain.Records[1].FirstToken)) > 1e-9 {
		t.Fatalf("token delays: %+v", b)
	}
}
