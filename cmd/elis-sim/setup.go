package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

// simFlags are the flags that set up a simulated run (shared with sweep).
func simFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "policy", Value: "fcfs,isrtf", Usage: "comma-separated policies: " + strings.Join(policies.Names(), ", ") + "; each may name an ISRTF mode and guards, NAME[/MODE][+GUARD...] with guards " + guardHelp + " (isrtf/patch+lazy+cap=2)"},
		&cli.StringFlag{Name: "isrtf-mode", Value: "paper", Usage: "ISRTF mode: paper (re-rank at window boundaries, pause keeping KV), resubmit (each window a new request), patch (order the waiting queue only)"},
		&cli.StringFlag{Name: "predictor", Value: "noisy:mae=19.9", Usage: "oracle, noisy:sigma=S, noisy:mae=TOKENS, recorded (from the trace) or constant:TOKENS"},
		&cli.IntFlag{Name: "prediction-interval", Value: 50, Usage: "re-predict every K generated tokens", EnvVars: []string{"VLLM_ELIS_PREDICTION_INTERVAL"}},
		&cli.Float64Flag{Name: "predictor-cost-ms", Value: predictor.DefaultCost.PerBatch * 1e3, Usage: "fixed cost of one batched predictor call, ms (added to the step it precedes)"},
		&cli.StringFlag{Name: "model", Value: "llama-2-13b", Usage: "model preset: " + strings.Join(cost.ArchNames(), ", "), EnvVars: []string{"ELIS_SIM_MODEL"}},
		&cli.StringFlag{Name: "gpu", Value: "a100-80g", Usage: "GPU preset: " + strings.Join(cost.GPUNames(), ", "), EnvVars: []string{"ELIS_SIM_GPU"}},
		&cli.IntFlag{Name: "tp", Value: 1, Usage: "tensor parallelism (GPUs per worker)"},
		&cli.StringFlag{Name: "stack", Value: cost.DefaultStack, Usage: "serving stack the GPU preset prices: vllm-v1 (today's vLLM: CUDA graphs, FlashAttention-class kernels) or 2023 (Splitwise's engine, the ELIS paper's vLLM 0.5.0; the default for the embedded workload)"},
		&cli.StringFlag{Name: "cost-model", Usage: "fitted cost model JSON (overrides --model, --gpu and --tp)"},
		&cli.IntFlag{Name: "workers", Value: 1, Usage: "engine replicas"},
		&cli.StringFlag{Name: "router", Value: "least-loaded", Usage: "router across workers: " + strings.Join(policies.RouterNames(), ", ")},
		&cli.IntFlag{Name: "max-num-seqs", Usage: "sequences per step (0: vLLM's default for the GPU)"},
		&cli.IntFlag{Name: "max-num-batched-tokens", Usage: "token budget per step (0: vLLM's default for the GPU)"},
		&cli.Float64Flag{Name: "gpu-memory-utilization", Value: 0.9, Usage: "fraction of GPU memory vLLM may use"},
		&cli.IntFlag{Name: "kv-blocks", Usage: "KV cache capacity in blocks (0: from GPU memory)"},
		&cli.IntFlag{Name: "block-size", Value: 16, Usage: "tokens per KV block"},
		&cli.IntFlag{Name: "max-model-len", Usage: "context length (0: the model's)"},
		&cli.IntFlag{Name: "long-prefill-token-threshold", Usage: "cap one request's prefill chunk per step (0: off)"},
		&cli.BoolFlag{Name: "no-enable-prefix-caching", Usage: "turn off vLLM's automatic prefix caching (on by default, as in vLLM v1)"},
		&cli.StringFlag{Name: "aging", Usage: "starvation guard N,M: a request waiting N steps is promoted for M steps"},
		&cli.Float64Flag{Name: "preempt-limit", Usage: "protect a request from preemption after this fraction of its predicted length (TRAIL's C)"},
		&cli.StringFlag{Name: "predictor-calls", Usage: "how predictor calls are made and priced: sync (one call per request on the critical path, as the vLLM patch does; the default in patch mode), batched (one call per step, as ELIS's frontend; the default otherwise) or async (batched beside the forward pass: free, its answer known one step late)"},
		&cli.Float64Flag{Name: "slowdown-cap", Usage: "tail guard, any policy: a waiting request whose projected slowdown (over running alone) reaches this factor is promoted for good (0: off)"},
		&cli.BoolFlag{Name: "lazy-predictions", Value: true, Usage: "call the predictor only where its answer can change an order: not while no more requests wait than the batch has places (--lazy-predictions=false, or +eager in --policy, predicts at every arrival and window as ELIS and the vLLM patch do)"},
		&cli.StringFlag{Name: "displace-margin", Usage: "paper mode hysteresis TOKENS[:RATIO]: displace a running request only for a waiting one predicted shorter by more than TOKENS and RATIO of its remaining"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the noisy predictor and the embedded workload", EnvVars: []string{"ELIS_SIM_SEED"}},
		&cli.BoolFlag{Name: "check", Usage: "verify the scheduler's invariants after every step (slower)"},
		&cli.StringFlag{Name: "slo", Usage: "goodput objectives, e.g. ttft=2s,tpot=100ms,jct=60s"},
	}
}

// simSetup is a parsed set of simulation flags.
type simSetup struct {
	base     sim.Config
	policies []string
	engine   string // "model on gpu (tpN)" for the setup line
	slo      report.SLO
	specs    map[string]*policySpec // by the --policy entry
}

// policySpec is one --policy entry: a policy, an ISRTF mode when it names
// one, and guards, e.g. isrtf/patch+lazy+cap=2, so that variants run side
// by side in one table or sweep.
type policySpec struct {
	policy  string
	mode    policies.Rerank
	modeSet bool
	mods    []func(*sim.Config)
}

// guardHelp lists what may follow a policy after "+".
const guardHelp = "lazy, eager, cap=S, margin=TOKENS[:RATIO], limit=C, sync, batched, async"

// parsePolicySpec reads NAME[/MODE][+GUARD...].
func parsePolicySpec(entry string) (*policySpec, error) {
	parts := strings.Split(entry, "+")
	ps := &policySpec{policy: parts[0]}
	if name, mode, ok := strings.Cut(parts[0], "/"); ok {
		m, err := policies.ParseRerank(mode)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", entry, err)
		}
		ps.policy, ps.mode, ps.modeSet = name, m, true
	}
	if _, err := policies.New(ps.policy, policies.RerankPause); err != nil {
		return nil, err
	}
	for _, g := range parts[1:] {
		key, val, _ := strings.Cut(g, "=")
		num := func() (float64, error) {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil || !(v >= 0) {
				return 0, fmt.Errorf("%q: guard %q wants a number", entry, g)
			}
			return v, nil
		}
		switch key {
		case "lazy", "eager":
			lazy := key == "lazy"
			ps.mods = append(ps.mods, func(c *sim.Config) { c.Engine.LazyPredictions = lazy })
		case "sync", "batched", "async":
			sync, async := key == "sync", key == "async"
			ps.mods = append(ps.mods, func(c *sim.Config) { c.SyncPredictions, c.Engine.AsyncPredictions = sync, async })
		case "cap", "limit":
			v, err := num()
			if err != nil {
				return nil, err
			}
			if key == "cap" {
				ps.mods = append(ps.mods, func(c *sim.Config) { c.Engine.Guard.SlowdownCap = v })
			} else {
				ps.mods = append(ps.mods, func(c *sim.Config) { c.Engine.Guard.PreemptLimit = v })
			}
		case "margin":
			tok, ratio, hasRatio := strings.Cut(val, ":")
			m, err := strconv.ParseFloat(tok, 64)
			r := 0.0
			if err == nil && hasRatio {
				r, err = strconv.ParseFloat(ratio, 64)
			}
			if err != nil {
				return nil, fmt.Errorf("%q: guard %q wants margin=TOKENS[:RATIO]", entry, g)
			}
			ps.mods = append(ps.mods, func(c *sim.Config) { c.Engine.DisplaceMargin, c.Engine.DisplaceRatio = m, r })
		default:
			return nil, fmt.Errorf("%q: unknown guard %q (valid: %s)", entry, g, guardHelp)
		}
	}
	return ps, nil
}

// configFor is base set up for the --policy entry spec.
func (s *simSetup) configFor(base sim.Config, spec string) sim.Config {
	ps := s.specs[spec]
	base.Policy = ps.policy
	if ps.modeSet {
		base.Mode = ps.mode
	}
	for _, m := range ps.mods {
		m(&base)
	}
	return base
}

// parseSimSetup reads the simulation flags. paperBatch (the embedded
// workloads) caps the batch at the ELIS paper's 4 requests unless
// --max-num-seqs says otherwise.
func parseSimSetup(c *cli.Context, paperBatch bool) (*simSetup, error) {
	s := &simSetup{specs: map[string]*policySpec{}}
	for _, p := range strings.Split(c.String("policy"), ",") {
		p = strings.TrimSpace(p)
		ps, err := parsePolicySpec(p)
		if err != nil {
			return nil, badf("--policy: %w", err)
		}
		s.specs[p] = ps
		s.policies = append(s.policies, p)
	}
	mode, err := policies.ParseRerank(c.String("isrtf-mode"))
	if err != nil {
		return nil, badf("--isrtf-mode: %w", err)
	}
	spec, err := predictor.ParseSpec(c.String("predictor"))
	if err != nil {
		return nil, badf("--predictor: %w", err)
	}
	if spec.Kind == "network" {
		return nil, badf("--predictor network: the network's own predictions need real execution (elis-sim replay); simulate with oracle, noisy, recorded or constant")
	}
	util := c.Float64("gpu-memory-utilization")
	if util <= 0 || util > 1 {
		return nil, badf("--gpu-memory-utilization %v: want a fraction in (0, 1]", util)
	}
	var coster cost.StepCoster
	var roof *cost.Roofline
	var eng policies.Config
	var fileCost *predictor.Cost
	var overheads cost.Overheads
	if f := c.String("cost-model"); f != "" {
		cf, err := cost.LoadCostFile(f)
		if err != nil {
			return nil, bad(fmt.Errorf("--cost-model: %w", err))
		}
		coster, roof, fileCost = cf.Coster(), cf.Roofline, cf.Predictor
		if cf.Overheads != nil {
			overheads = *cf.Overheads
		}
		if roof != nil {
			eng = cost.EngineDefaults(roof, util)
			s.engine = fmt.Sprintf("%s on %s", roof.Arch.Name, roof.GPU.Name)
		} else {
			s.engine = fmt.Sprintf("%s on %s (linear cost model %s)", cf.Model, cf.Device, f)
		}
		if cf.Engine != nil {
			eng = *cf.Engine
		}
	} else if e := c.String("engine"); e != "" && e != "sim" {
		// serve on a device: its forward passes set the pace, and its
		// engine limits come from the model (serveAction).
		eng = policies.Config{MaxBatchedTokens: 512, MaxSeqs: 16, BlockSize: 16, NumBlocks: 512, MaxModelLen: 2048, PredictionInterval: 50}
		s.engine = c.String("model")
	} else {
		stack := c.String("stack")
		if paperBatch && !c.IsSet("stack") {
			stack = "2023" // the ELIS paper's engine, vLLM 0.5.0
		}
		r, err := cost.NewRooflineStack(c.String("model"), c.String("gpu"), stack, c.Int("tp"))
		if err != nil {
			return nil, badf("--model/--gpu/--stack/--tp: %w", err)
		}
		coster, roof = r, r
		eng = cost.EngineDefaults(r, util)
		s.engine = fmt.Sprintf("%s on %s", r.Arch.Name, r.GPU.Name)
	}
	if roof != nil && roof.TP > 1 {
		s.engine += fmt.Sprintf(" x%d (TP)", roof.TP)
	}
	applyEngineFlags(c, &eng)
	if paperBatch && !c.IsSet("max-num-seqs") {
		eng.MaxSeqs = 4
	}
	if c.IsSet("block-size") || eng.BlockSize == 0 {
		eng.BlockSize = c.Int("block-size")
		if !c.IsSet("kv-blocks") && roof != nil {
			eng.NumBlocks = roof.KVBlocks(util, eng.BlockSize)
		}
	}
	if err := applyPolicyFlags(c, &eng); err != nil {
		return nil, err
	}
	if c.Int("workers") < 1 {
		return nil, badf("--workers %d: want >= 1", c.Int("workers"))
	}
	if _, err := policies.NewRouter(c.String("router")); err != nil {
		return nil, badf("--router: %w", err)
	}
	if s.slo, err = report.ParseSLO(c.String("slo")); err != nil {
		return nil, badf("--slo: %w", err)
	}
	if c.Float64("predictor-cost-ms") < 0 {
		return nil, badf("--predictor-cost-ms: want >= 0")
	}
	pc := predictor.DefaultCost
	if fileCost != nil {
		pc = *fileCost
	}
	if c.IsSet("predictor-cost-ms") || fileCost == nil {
		pc.PerBatch = c.Float64("predictor-cost-ms") / 1e3
	}
	sync := mode == policies.RerankNone
	switch c.String("predictor-calls") {
	case "":
	case "sync":
		sync = true
	case "batched":
		sync = false
	case "async":
		sync, eng.AsyncPredictions = false, true
	default:
		return nil, badf("--predictor-calls %q: want sync, batched or async", c.String("predictor-calls"))
	}
	s.base = sim.Config{Engine: eng, Mode: mode, Predictor: spec, PredCost: pc, Cost: coster, Overheads: overheads, SyncPredictions: sync,
		Workers: c.Int("workers"), Router: c.String("router"), Seed: c.Uint64("seed"), Check: c.Bool("check"),
		// Every prediction is kept only for the outputs that show them; the
		// summary's accuracy comes from the core's running sums.
		KeepHistory: c.String("out") != "" || c.String("log-predictions") != ""}
	return s, nil
}

// label names a --policy entry's run in tables and plots: a plain ISRTF
// gets its mode when it is not the paper's; an entry with a mode or guards
// is its own name.
func (s *simSetup) label(policy string) string {
	if ps := s.specs[policy]; ps != nil && (ps.modeSet || len(ps.mods) > 0) {
		return policy
	}
	if (policy == "isrtf" || policy == "srpt-oracle") && s.base.Mode != policies.RerankPause {
		return policy + "/" + s.base.Mode.String()
	}
	return policy
}

// streamOut says where a run's records go as the simulator finishes them,
// so that no run holds its records: a run file per policy in out (none
// when empty), and the per-request values of plotMetric for a plot.
type streamOut struct {
	out        string
	plotMetric string
}

// runAll simulates tr under each policy in turn. With stream set, each
// run's records are summarised and written as they finish and the runs
// returned hold none; else each, when set, gets every run as soon as it
// exists. Either way policies run one after another.
func (s *simSetup) runAll(tr *traces.Trace, desc string, stream *streamOut, each func(*report.Run) error) ([]*report.Run, error) {
	if s.base.Predictor.Kind == "recorded" && !slices.ContainsFunc(tr.Requests, func(r traces.Request) bool { return len(r.Predictions) > 0 }) {
		return nil, badf("--predictor recorded: the trace %s has no recorded predictions (its requests' \"predictions\" field)", desc)
	}
	base := s.base
	sigma := 0.0
	reads := false // does any run read the predictor?
	for _, p := range s.policies {
		reads = reads || sim.ReadsPredictor(s.configFor(base, p))
	}
	if spec := base.Predictor; reads && spec.Kind == "noisy" && spec.MAE > 0 {
		// Fit the noisy predictor's sigma once, for every run.
		_, fit, err := sim.PredictorFor(spec, tr, base.Engine.PredictionInterval, base.Seed)
		if err != nil {
			return nil, err
		}
		sigma = fit
		base.Predictor = predictor.Spec{Kind: "noisy", Sigma: fit}
	}
	var runs []*report.Run
	for _, p := range s.policies {
		cfg := s.configFor(base, p)
		if stream != nil {
			run, err := s.streamRun(tr, desc, cfg, p, sigma, stream)
			if err != nil {
				return nil, err
			}
			runs = append(runs, run)
			continue
		}
		res, err := sim.Run(tr, cfg)
		if err != nil {
			return nil, err
		}
		run := s.toRun(p, desc, res, max(sigma, res.Sigma))
		if each != nil {
			if err := each(run); err != nil {
				return nil, err
			}
		}
		runs = append(runs, run)
	}
	return runs, nil
}

func (s *simSetup) toRun(policy, desc string, res *sim.Result, sigma float64) *report.Run {
	return makeRun(s.label(policy), s.setupOf(policy, desc, sigma), res.Records, &res.Gaps, &res.Stats.Errors, s.slo)
}

// streamRun simulates one policy with its records summarised, written to
// their run file and sampled for the plot as they finish, never held.
func (s *simSetup) streamRun(tr *traces.Trace, desc string, cfg sim.Config, spec string, sigma float64, st *streamOut) (*report.Run, error) {
	label := s.label(spec)
	z := report.NewSummarizer(s.slo)
	var rw *report.RunWriter
	if st.out != "" {
		path := runPath(st.out, label, len(s.policies))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		var err error
		if rw, err = report.NewRunWriter(path); err != nil {
			return nil, err
		}
		defer rw.Abort()
	}
	var vals []float64
	cfg.OnRecord = func(r *policies.Record) error {
		z.Add(r)
		if st.plotMetric != "" {
			if v, ok := report.MetricValue(r, st.plotMetric); ok {
				vals = append(vals, v)
			}
		}
		if rw != nil {
			return rw.Add(r)
		}
		return nil
	}
	res, err := sim.Run(tr, cfg)
	if err != nil {
		return nil, err
	}
	run := summaryRun(label, s.setupOf(spec, desc, max(sigma, res.Sigma)), z, &res.Gaps, &res.Stats.Errors, nil)
	if st.plotMetric != "" {
		run.PlotValues = map[string][]float64{st.plotMetric: vals}
	}
	if rw != nil {
		if err := rw.Close(run); err != nil {
			return nil, err
		}
	}
	return run, nil
}

// setupOf is a run's setup in words (its "summary") and numbers.
func (s *simSetup) setupOf(policy, desc string, sigma float64) map[string]string {
	e := s.base.Engine
	pred := s.base.Predictor.String()
	if sigma > 0 {
		pred += fmt.Sprintf(" (sigma %.3f)", sigma)
	}
	cache := ""
	if e.PrefixCaching {
		cache = ", prefix caching"
	}
	summary := fmt.Sprintf("setup: %s | %s, %d worker(s), max %d seqs, %d-token budget, %d KV blocks%s | predictor %s, K=%d, ISRTF mode %s",
		desc, s.engine, s.base.Workers, e.MaxSeqs, e.MaxBatchedTokens, e.NumBlocks, cache, pred, e.PredictionInterval, s.base.Mode)
	setup := map[string]string{
		"source": "sim", "summary": summary, "policy": policy, "workload": desc, "engine": s.engine, "predictor": pred,
		"isrtf_mode": s.base.Mode.String(), "workers": fmt.Sprint(s.base.Workers), "router": s.base.Router,
		"max_num_seqs": fmt.Sprint(e.MaxSeqs), "max_num_batched_tokens": fmt.Sprint(e.MaxBatchedTokens),
		"kv_blocks": fmt.Sprint(e.NumBlocks), "prediction_interval": fmt.Sprint(e.PredictionInterval),
		"seed": fmt.Sprint(s.base.Seed),
	}
	if e.PrefixCaching {
		setup["prefix_caching"] = "on" // absent when off, so runs without it keep their bytes
	}
	return setup
}

// applyEngineFlags overrides eng's limits with the flags the user set; a
// limit set to 0 keeps the default, as the flags' help says.
func applyEngineFlags(c *cli.Context, eng *policies.Config) {
	for flag, dst := range map[string]*int{"max-num-seqs": &eng.MaxSeqs, "max-num-batched-tokens": &eng.MaxBatchedTokens,
		"kv-blocks": &eng.NumBlocks, "max-model-len": &eng.MaxModelLen} {
		if c.IsSet(flag) && c.Int(flag) != 0 {
			*dst = c.Int(flag)
		}
	}
	if c.IsSet("long-prefill-token-threshold") {
		eng.LongPrefillThreshold = c.Int("long-prefill-token-threshold")
	}
	eng.PrefixCaching = !c.Bool("no-enable-prefix-caching")
}

// applyPolicyFlags sets the prediction interval and the starvation guard,
// then validates eng.
func applyPolicyFlags(c *cli.Context, eng *policies.Config) error {
	eng.PredictionInterval = c.Int("prediction-interval")
	if a := c.String("aging"); a != "" {
		if _, err := fmt.Sscanf(a, "%d,%d", &eng.Guard.AgingSteps, &eng.Guard.PromoteSteps); err != nil {
			return badf("--aging %q: want N,M (steps waited, steps promoted)", a)
		}
	}
	eng.Guard.PreemptLimit = c.Float64("preempt-limit")
	eng.LazyPredictions = c.Bool("lazy-predictions")
	eng.Guard.SlowdownCap = c.Float64("slowdown-cap")
	if m := c.String("displace-margin"); m != "" {
		tok, ratio, hasRatio := strings.Cut(m, ":")
		var err error
		if eng.DisplaceMargin, err = strconv.ParseFloat(tok, 64); err == nil && hasRatio {
			eng.DisplaceRatio, err = strconv.ParseFloat(ratio, 64)
		}
		if err != nil {
			return badf("--displace-margin %q: want TOKENS[:RATIO], e.g. 20:0.1", m)
		}
	}
	if err := eng.Validate(); err != nil {
		return badf("engine settings: %w", err)
	}
	return nil
}
