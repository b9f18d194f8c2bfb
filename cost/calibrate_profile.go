package cost

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
)

// CalibrateProfile fits a linear step cost model (and the predictor
// network's cost, when timed) to a device profile; the engine settings it
// was taken with come along, so "run --cost-model" simulates that engine.
func CalibrateProfile(p *DeviceProfile) (*CostFile, error) {
	if len(p.Requests) > 0 {
		return calibrateServer(p)
	}
	lin, err := FitLinear(p.Steps)
	if err != nil {
		return nil, err
	}
	pe, de := lin.StepErrors(p.Steps)
	cf := &CostFile{Kind: "linear", Device: p.Meta["device"], Model: p.Meta["model"], Linear: lin,
		Errors: map[string]string{"prefill_step": fmt.Sprintf("%.1f%%", pe), "decode_step": fmt.Sprintf("%.1f%%", de)}}
	cf.Engine = profileEngine(p)
	if len(p.Predictor) > 0 {
		c, err := FitPredictorCost(p.Predictor)
		if err != nil {
			return nil, fmt.Errorf("predictor timings: %w", err)
		}
		cf.Predictor = &c
		var errs []float64
		for _, s := range p.Predictor {
			errs = append(errs, math.Abs(c.Seconds(s.Calls, s.Tokens)-s.Seconds)/s.Seconds*100)
		}
		cf.Errors["predictor"] = fmt.Sprintf("%.1f%%", mean(errs))
	}
	return cf, nil
}

// profileEngine is the engine a profile names in its metadata, nil when
// it names too little of it.
func profileEngine(p *DeviceProfile) *policies.Config {
	eng := policies.Config{PredictionInterval: 50, BlockSize: 16}
	for key, dst := range map[string]*int{"block_size": &eng.BlockSize, "kv_blocks": &eng.NumBlocks, "max_num_seqs": &eng.MaxSeqs,
		"max_num_batched_tokens": &eng.MaxBatchedTokens, "max_model_len": &eng.MaxModelLen, "long_prefill_token_threshold": &eng.LongPrefillThreshold} {
		v, err := strconv.Atoi(p.Meta[key])
		if err != nil {
			if key == "block_size" || key == "long_prefill_token_threshold" {
				continue // vLLM's defaults: 16, off
			}
			return nil
		}
		*dst = v
	}
	if p.Meta["scheduler"] == "llama.cpp" {
		eng.Slots = true
	}
	if eng.Validate() != nil {
		return nil
	}
	return &eng
}

// calibrateServer fits a live server's profile: steps and overheads.
func calibrateServer(p *DeviceProfile) (*CostFile, error) {
	budget, err := strconv.Atoi(p.Meta["max_num_batched_tokens"])
	if err != nil || budget < 1 {
		budget = 8192
	}
	lin, oh, err := FitServer(p.Steps, p.Requests, budget)
	if err != nil {
		return nil, err
	}
	_, de := lin.StepErrors(p.Steps)
	var re []float64
	for _, r := range p.Requests {
		t := oh.PerRequest
		for _, s := range r.Chunks(budget) {
			t += lin.predict(&s)
		}
		re = append(re, math.Abs(t-r.Seconds)/r.Seconds*100)
	}
	return &CostFile{Kind: "linear", Device: p.Meta["device"], Model: p.Meta["model"], Linear: lin, Overheads: oh, Engine: profileEngine(p),
		Errors: map[string]string{"decode_step": fmt.Sprintf("%.1f%%", de), "first_token": fmt.Sprintf("%.1f%%", mean(re))}}, nil
}

// FitPredictorCost fits predictor.Cost (per batch, per call, per token) to
// timed calls by least squares, with non-negative parts.
func FitPredictorCost(calls []PredictorCall) (predictor.Cost, error) {
	steps := make([]StepSample, len(calls))
	for i, s := range calls {
		// The linear fitter's terms: a constant, calls as "decode
		// sequences", tokens as "prefill tokens" and tokens^2/calls as
		// "attention units".
		t := float64(s.Tokens)
		steps[i] = StepSample{DecodeSeqs: s.Calls, PrefillTokens: s.Tokens, PrefillAttn: t * t / float64(s.Calls), Seconds: s.Seconds}
	}
	l, err := FitLinear(steps)
	if err != nil {
		return predictor.Cost{}, err
	}
	return predictor.Cost{PerBatch: l.Base, PerCall: l.PerDecodeSeq, PerToken: l.PerPrefillToken, PerTokenSq: l.PerPrefillAttn}, nil
}

// WriteCostFile writes f as indented JSON, atomically.
func WriteCostFile(path string, f *CostFile) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(f)
	})
}
