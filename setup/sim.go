package setup

import (
	"fmt"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/sim"
)

// Sim is a simulated run's settings read from Options: a base config and
// the policy entries to run on it.
type Sim struct {
	Base     sim.Config
	Policies []*Policy
	Engine   string // "model on gpu", for setup lines
	SLO      report.SLO
}

// ParseSim reads the Flags of a simulated run. paperBatch (the embedded
// workloads) caps the batch at the ELIS paper's 4 requests and prices the
// paper's serving stack unless the options say otherwise.
func ParseSim(o Options, paperBatch bool) (*Sim, error) {
	s := &Sim{}
	var err error
	if s.Policies, err = ParsePolicies(o.String("policy")); err != nil {
		return nil, Errorf("--policy: %w", err)
	}
	mode, err := policies.ParseRerank(o.String("isrtf-mode"))
	if err != nil {
		return nil, Errorf("--isrtf-mode: %w", err)
	}
	spec, err := predictor.ParseSpec(o.String("predictor"))
	if err != nil {
		return nil, Errorf("--predictor: %w", err)
	}
	if spec.Kind == "network" {
		return nil, Errorf("--predictor network: the network's own predictions need real execution (elis-sim replay); simulate with oracle, noisy, recorded or constant")
	}
	if sc := o.String("scheduler"); sc != "" && sc != "vllm" && sc != "llama.cpp" {
		return nil, Errorf("--scheduler %q: valid are vllm (the default) and llama.cpp", sc)
	}
	util := o.Float64("gpu-memory-utilization")
	if util <= 0 || util > 1 {
		return nil, Errorf("--gpu-memory-utilization %v: want a fraction in (0, 1]", util)
	}
	var coster cost.StepCoster
	var roof *cost.Roofline
	var eng policies.Config
	var fileCost *predictor.Cost
	var overheads cost.Overheads
	if f := o.String("cost-model"); f != "" {
		cf, err := cost.LoadCostFile(f)
		if err != nil {
			return nil, Bad(fmt.Errorf("--cost-model: %w", err))
		}
		coster, roof, fileCost = cf.Coster(), cf.Roofline, cf.Predictor
		if cf.Overheads != nil {
			overheads = *cf.Overheads
		}
		if roof != nil {
			eng = cost.EngineDefaults(roof, util)
			s.Engine = fmt.Sprintf("%s on %s", roof.Arch.Name, roof.GPU.Name)
		} else {
			s.Engine = fmt.Sprintf("%s on %s (linear cost model %s)", cf.Model, cf.Device, f)
		}
		if cf.Engine != nil {
			eng = *cf.Engine
		}
	} else if e := o.String("engine"); e != "" && e != "sim" {
		// serve on a device: its forward passes set the pace, and its
		// engine limits come from the model.
		eng = policies.Config{MaxBatchedTokens: 512, MaxSeqs: 16, BlockSize: 16, NumBlocks: 512, MaxModelLen: 2048, PredictionInterval: 50}
		s.Engine = o.String("model")
	} else {
		stack := o.String("stack")
		if paperBatch && !o.IsSet("stack") {
			stack = "2023" // the ELIS paper's engine, vLLM 0.5.0
		}
		r, err := cost.NewRooflineStack(o.String("model"), o.String("gpu"), stack, o.Int("tp"))
		if err != nil {
			return nil, Errorf("--model/--gpu/--stack/--tp: %w", err)
		}
		coster, roof = r, r
		eng = cost.EngineDefaults(r, util)
		s.Engine = fmt.Sprintf("%s on %s", r.Arch.Name, r.GPU.Name)
	}
	if roof != nil && roof.TP > 1 {
		s.Engine += fmt.Sprintf(" x%d (TP)", roof.TP)
	}
	EngineOptions(o, &eng)
	if paperBatch && !o.IsSet("max-num-seqs") {
		eng.MaxSeqs = 4
	}
	if o.IsSet("block-size") || eng.BlockSize == 0 {
		eng.BlockSize = o.Int("block-size")
		if !o.IsSet("kv-blocks") && roof != nil {
			eng.NumBlocks = roof.KVBlocks(util, eng.BlockSize)
		}
	}
	if roof == nil && (eng.MaxBatchedTokens == 0 || eng.MaxSeqs == 0 || eng.NumBlocks == 0 || eng.MaxModelLen == 0) {
		return nil, Errorf("--cost-model %s names no engine limits (a linear fit of a server profiled without them): give --max-num-batched-tokens, --max-num-seqs, --kv-blocks and --max-model-len", o.String("cost-model"))
	}
	if err := PolicyOptions(o, &eng); err != nil {
		return nil, err
	}
	if o.Int("workers") < 1 {
		return nil, Errorf("--workers %d: want >= 1", o.Int("workers"))
	}
	if _, err := policies.NewRouter(o.String("router")); err != nil {
		return nil, Errorf("--router: %w", err)
	}
	if s.SLO, err = report.ParseSLO(o.String("slo")); err != nil {
		return nil, Errorf("--slo: %w", err)
	}
	if o.Float64("predictor-cost-ms") < 0 {
		return nil, Errorf("--predictor-cost-ms: want >= 0")
	}
	pc := predictor.DefaultCost
	if fileCost != nil {
		pc = *fileCost
	}
	if o.IsSet("predictor-cost-ms") || fileCost == nil {
		pc.PerBatch = o.Float64("predictor-cost-ms") / 1e3
	}
	sync, err := PredictorCalls(o, mode, &eng)
	if err != nil {
		return nil, err
	}
	s.Base = sim.Config{Engine: eng, Mode: mode, Predictor: spec, PredCost: pc, Cost: coster, Overheads: overheads, SyncPredictions: sync,
		Workers: o.Int("workers"), Router: o.String("router"), Seed: o.Uint64("seed"), Check: o.Bool("check"),
		// Every prediction is kept only for the outputs that show them; the
		// summary's accuracy comes from the core's running sums.
		KeepHistory: o.String("out") != "" || o.String("log-predictions") != ""}
	return s, nil
}

// PredictorCalls reads --predictor-calls: whether calls are priced one
// request at a time (sync, the default in patch mode, where the vLLM
// patch makes them so), and sets eng's asynchronous calls.
func PredictorCalls(o Options, mode policies.Rerank, eng *policies.Config) (sync bool, err error) {
	sync = mode == policies.RerankNone
	switch o.String("predictor-calls") {
	case "":
	case "sync":
		sync = true
	case "batched":
		sync = false
	case "async":
		sync, eng.AsyncPredictions = false, true
	default:
		return false, Errorf("--predictor-calls %q: want sync, batched or async", o.String("predictor-calls"))
	}
	return sync, nil
}

// ConfigFor is base set up for policy entry p.
func (s *Sim) ConfigFor(base sim.Config, p *Policy) sim.Config {
	p.Apply(Knobs{Policy: &base.Policy, Mode: &base.Mode, Engine: &base.Engine, Sync: &base.SyncPredictions})
	return base
}

// Label names entry p's run.
func (s *Sim) Label(p *Policy) string { return p.Label(s.Base.Mode) }

// SetupOf is a run's setup in words (its "summary") and numbers.
func (s *Sim) SetupOf(entry, desc string, sigma float64) map[string]string {
	e := s.Base.Engine
	pred := s.Base.Predictor.String()
	if sigma > 0 {
		pred += fmt.Sprintf(" (sigma %.3f)", sigma)
	}
	cache := ""
	if e.PrefixCaching {
		cache = ", prefix caching"
	}
	summary := fmt.Sprintf("setup: %s | %s, %d worker(s), max %d seqs, %d-token budget, %d KV blocks%s | predictor %s, K=%d, ISRTF mode %s",
		desc, s.Engine, s.Base.Workers, e.MaxSeqs, e.MaxBatchedTokens, e.NumBlocks, cache, pred, e.PredictionInterval, s.Base.Mode)
	if e.Slots {
		summary = fmt.Sprintf("setup: %s | %s, %d worker(s), llama.cpp scheduling: %d slots of %d tokens, %d-token batches | predictor %s, K=%d, ISRTF mode %s",
			desc, s.Engine, s.Base.Workers, e.MaxSeqs, e.MaxModelLen, e.MaxBatchedTokens, pred, e.PredictionInterval, s.Base.Mode)
	}
	setup := map[string]string{
		"source": "sim", "summary": summary, "policy": entry, "workload": desc, "engine": s.Engine, "predictor": pred,
		"isrtf_mode": s.Base.Mode.String(), "workers": fmt.Sprint(s.Base.Workers), "router": s.Base.Router,
		"max_num_seqs": fmt.Sprint(e.MaxSeqs), "max_num_batched_tokens": fmt.Sprint(e.MaxBatchedTokens),
		"kv_blocks": fmt.Sprint(e.NumBlocks), "prediction_interval": fmt.Sprint(e.PredictionInterval),
		"seed": fmt.Sprint(s.Base.Seed),
	}
	if e.PrefixCaching {
		setup["prefix_caching"] = "on" // absent when off, so runs without it keep their bytes
	}
	if e.Slots {
		setup["scheduler"] = "llama.cpp"
	}
	return setup
}

// EngineOptions overrides eng's limits with the options the user set; a
// limit set to 0 keeps the default, as the flags' help says.
func EngineOptions(o Options, eng *policies.Config) {
	for _, f := range []struct {
		name string
		dst  *int
	}{{"max-num-seqs", &eng.MaxSeqs}, {"max-num-batched-tokens", &eng.MaxBatchedTokens},
		{"kv-blocks", &eng.NumBlocks}, {"max-model-len", &eng.MaxModelLen}} {
		if o.IsSet(f.name) && o.Int(f.name) != 0 {
			*f.dst = o.Int(f.name)
		}
	}
	if o.IsSet("long-prefill-token-threshold") {
		eng.LongPrefillThreshold = o.Int("long-prefill-token-threshold")
	}
	if o.IsSet("scheduler") {
		eng.Slots = o.String("scheduler") == "llama.cpp"
	}
	// llama.cpp's slots share no prefix cache, and hold every slot's
	// context: they never preempt.
	eng.PrefixCaching = !o.Bool("no-enable-prefix-caching") && !eng.Slots
	if need := eng.MaxSeqs * ((eng.MaxModelLen + eng.BlockSize - 1) / max(eng.BlockSize, 1)); eng.Slots && !o.IsSet("kv-blocks") && eng.NumBlocks < need {
		eng.NumBlocks = need
	}
}

// PolicyOptions sets the prediction interval, the starvation and tail
// guards and the prediction knobs, then validates eng.
func PolicyOptions(o Options, eng *policies.Config) error {
	eng.PredictionInterval = o.Int("prediction-interval")
	if a := o.String("aging"); a != "" {
		if _, err := fmt.Sscanf(a, "%d,%d", &eng.Guard.AgingSteps, &eng.Guard.PromoteSteps); err != nil {
			return Errorf("--aging %q: want N,M (steps waited, steps promoted)", a)
		}
	}
	eng.Guard.PreemptLimit = o.Float64("preempt-limit")
	eng.LazyPredictions = o.Bool("lazy-predictions")
	eng.Guard.SlowdownCap = o.Float64("slowdown-cap")
	if m := o.String("displace-margin"); m != "" {
		var err error
		if eng.DisplaceMargin, eng.DisplaceRatio, err = parseMargin(m); err != nil {
			return Errorf("--displace-margin %q: want TOKENS[:RATIO], e.g. 20:0.1", m)
		}
	}
	if err := eng.Validate(); err != nil {
		return Errorf("engine settings: %w", err)
	}
	return nil
}
