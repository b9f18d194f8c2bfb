package cost

import (
	"encoding/json"
	"fmt"
	"math"
	"os"

	"gonum.org/v1/gonum/mat"

	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
)

// StepSample is one timed step shape of a device profile.
type StepSample struct {
	PrefillTokens  int
	PrefillContext int64
	PrefillAttn    float64
	DecodeSeqs     int
	DecodeContext  int64
	// KVCells are the KV cells occupied while the step ran, where an
	// engine's attention reads them all (llama.cpp's: see
	// policies.Batch.KVCells); 0 elsewhere.
	KVCells int64
	Seconds float64
}

// features are the terms a Linear cost model weighs.
func (s *StepSample) features() []float64 {
	return []float64{1, float64(s.PrefillTokens), float64(s.DecodeSeqs), float64(s.DecodeContext), s.PrefillAttn, float64(s.PrefillContext),
		float64(s.PrefillTokens+s.DecodeSeqs) * float64(s.KVCells)}
}

// Linear prices a step as a weighted sum of its shape: a fixed cost, per
// new token (prefill and decode), per cached token read by decodes, per
// unit of causal attention work and per cached token read by prefills.
// It is what "elis-sim calibrate" fits to a device profile. Where every
// token's attention reads every occupied KV cell (llama.cpp's server, whose
// idle slots keep their prompts), a step also costs per token per cell.
type Linear struct {
	Base              float64 `json:"base_s"`
	PerPrefillToken   float64 `json:"per_prefill_token_s"`
	PerDecodeSeq      float64 `json:"per_decode_seq_s"`
	PerDecodeContext  float64 `json:"per_decode_context_token_s"`
	PerPrefillAttn    float64 `json:"per_prefill_attention_unit_s"`
	PerPrefillContext float64 `json:"per_prefill_context_token_s"`
	PerTokenCell      float64 `json:"per_token_kv_cell_s,omitempty"`
}

// linearFields are the JSON names of coef's entries, in order.
var linearFields = []string{"base_s", "per_prefill_token_s", "per_decode_seq_s", "per_decode_context_token_s", "per_prefill_attention_unit_s", "per_prefill_context_token_s", "per_token_kv_cell_s"}

func (l *Linear) coef() []float64 {
	return []float64{l.Base, l.PerPrefillToken, l.PerDecodeSeq, l.PerDecodeContext, l.PerPrefillAttn, l.PerPrefillContext, l.PerTokenCell}
}

// linearOf is the model of coefficients in coef's order.
func linearOf(c []float64) *Linear {
	return &Linear{c[0], c[1], c[2], c[3], c[4], c[5], c[6]}
}

// StepTime implements StepCoster.
func (l *Linear) StepTime(b *policies.Batch) float64 {
	if b.Tokens() == 0 {
		return 0
	}
	s := StepSample{PrefillTokens: b.PrefillTokens, PrefillContext: b.PrefillContext, PrefillAttn: b.PrefillAttn,
		DecodeSeqs: b.DecodeSeqs, DecodeContext: b.DecodeContext, KVCells: b.KVCells}
	return l.predict(&s)
}

func (l *Linear) predict(s *StepSample) float64 {
	t := 0.0
	for i, f := range s.features() {
		t += f * l.coef()[i]
	}
	return t
}

// FitLinear fits a Linear model to samples by least squares on relative
// error (each row weighted by 1/measured, so short decode steps count as
// much as long prefills), with gonum's QR solver. Terms the samples cannot
// tell apart come out as 0; negative coefficients are dropped and the rest
// refitted, since a step never gets faster with more work.
func FitLinear(samples []StepSample) (*Linear, error) {
	if len(samples) < 6 {
		return nil, fmt.Errorf("calibration needs at least 6 timed steps, got %d", len(samples))
	}
	rows := make([][]float64, len(samples))
	ys := make([]float64, len(samples))
	for i := range samples {
		rows[i], ys[i] = samples[i].features(), samples[i].Seconds
	}
	coef, err := fitNonNegative(rows, ys, "step")
	if err != nil {
		return nil, err
	}
	return linearOf(coef), nil
}

// fitNonNegative solves rows x = ys by least squares on relative error
// with every coefficient >= 0 (a term that would come out negative is
// dropped and the rest refitted); a column no row exercises stays 0. what
// names a row in errors.
func fitNonNegative(rows [][]float64, ys []float64, what string) ([]float64, error) {
	n := len(rows[0])
	active := make([]bool, n)
	for _, r := range rows {
		for j, f := range r {
			active[j] = active[j] || f != 0
		}
	}
	for i, y := range ys {
		if !(y > 0) {
			return nil, fmt.Errorf("%s %d: time %v, want > 0", what, i, y)
		}
	}
	for round := 0; round < n; round++ {
		var cols []int
		for j, a := range active {
			if a {
				cols = append(cols, j)
			}
		}
		A := mat.NewDense(len(rows), len(cols), nil)
		y := mat.NewVecDense(len(rows), nil)
		for i, r := range rows {
			for k, j := range cols {
				A.Set(i, k, r[j]/ys[i])
			}
			y.SetVec(i, 1)
		}
		var x mat.VecDense
		if err := x.SolveVec(A, y); err != nil {
			return nil, fmt.Errorf("calibration: %w (do the profile's shapes vary?)", err)
		}
		coef := make([]float64, n)
		neg := false
		for k, j := range cols {
			v := x.AtVec(k)
			if v < 0 || math.IsNaN(v) {
				active[j] = false
				neg = true
			} else {
				coef[j] = v
			}
		}
		if !neg {
			return coef, nil
		}
	}
	return nil, fmt.Errorf("calibration did not settle on non-negative coefficients")
}

// Overheads are a serving engine's delays outside its steps: before a
// request can be scheduled (tokenising, handing it to the engine: a fixed
// part and a part per prompt token) and between a token's step and the
// client (detokenising, streaming). Zero unless measured: calibrate fits
// them from a live server's profile.
type Overheads struct {
	PerRequest     float64 `json:"per_request_s"`
	PerPromptToken float64 `json:"per_prompt_token_s"`
	PerOutputToken float64 `json:"per_output_token_s"`
}

// RequestSample is a request timed alone from a client: its prompt's
// tokens and its time to first token, which is the overheads before the
// engine plus its prefill steps plus the first token's way back.
type RequestSample struct {
	PromptTokens int
	// KVCells are the cells occupied when it was sent (other slots' kept
	// prompts, on llama.cpp's server), -1 where that was not measured:
	// then the cell term does not apply to it.
	KVCells int64
	Seconds float64
}

// FitServer fits a Linear model and the overheads to a live server's
// profile: steps timed from a client (decode steps, from the gaps between
// tokens of concurrent requests) and lone requests' times to first token.
// The steps pin the step's own terms, so what a lone request takes beyond
// its prefill step is the overhead. The per-prompt-token overhead cannot be
// told apart from the prefill's per-token cost from outside the server: it
// is left 0 (and the prefill term carries it).
func FitServer(steps []StepSample, reqs []RequestSample, budget int) (*Linear, *Overheads, error) {
	var rows [][]float64
	var ys []float64
	for i := range steps {
		rows = append(rows, append(steps[i].features(), 0))
		ys = append(ys, steps[i].Seconds)
	}
	for _, r := range reqs {
		// The prompt's chunks of at most budget tokens, each a step.
		row := make([]float64, 8)
		for _, s := range r.Chunks(budget) {
			for j, f := range s.features() {
				row[j] += f
			}
		}
		row[7] = 1
		rows = append(rows, row)
		ys = append(ys, r.Seconds)
	}
	if len(rows) < 7 {
		return nil, nil, fmt.Errorf("calibration needs at least 7 timings, got %d", len(rows))
	}
	coef, err := fitNonNegative(rows, ys, "timing")
	if err != nil {
		return nil, nil, err
	}
	return linearOf(coef), &Overheads{PerRequest: coef[7]}, nil
}

// Chunks are the steps a lone request's prompt takes: chunks of at most
// budget tokens, each reading what came before it and, where they were
// measured, the cells others hold.
func (r RequestSample) Chunks(budget int) []StepSample {
	var out []StepSample
	for p := 0; p < r.PromptTokens; {
		c := min(budget, r.PromptTokens-p)
		s := StepSample{PrefillTokens: c, PrefillContext: int64(p), PrefillAttn: float64(c) * (float64(p) + float64(c+1)/2)}
		if r.KVCells >= 0 {
			s.KVCells = r.KVCells + int64(p+c)
		}
		out = append(out, s)
		p += c
	}
	return out
}

// CostFile is a fitted cost model on disk: either a roofline or a linear
// model, with the engine it was measured on and, when profiled, the
// predictor network's cost.
type CostFile struct {
	Kind      string            `json:"kind"` // "roofline" or "linear"
	Device    string            `json:"device,omitempty"`
	Model     string            `json:"model_name,omitempty"`
	Linear    *Linear           `json:"linear,omitempty"`
	Roofline  *Roofline         `json:"roofline,omitempty"`
	Engine    *policies.Config  `json:"engine,omitempty"`
	Predictor *predictor.Cost   `json:"predictor_cost,omitempty"`
	Overheads *Overheads        `json:"overheads,omitempty"`
	Errors    map[string]string `json:"fit_errors,omitempty"` // class -> mean |error| on the profile
}

// Coster returns the file's step cost model.
func (f *CostFile) Coster() StepCoster {
	if f.Linear != nil {
		return f.Linear
	}
	return f.Roofline
}

// LoadCostFile reads a cost model file: a CostFile, or a bare Roofline as
// "elis-sim cost show" prints.
func LoadCostFile(path string) (*CostFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f CostFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("cost model %s: %w", path, err)
	}
	if f.Engine != nil {
		if err := f.Engine.Validate(); err != nil {
			return nil, fmt.Errorf("cost model %s: field \"engine\": %w", path, err)
		}
	}
	var fixed []field
	if o := f.Overheads; o != nil {
		fixed = append(fixed, field{"overheads.per_request_s", o.PerRequest}, field{"overheads.per_prompt_token_s", o.PerPromptToken},
			field{"overheads.per_output_token_s", o.PerOutputToken})
	}
	if c := f.Predictor; c != nil {
		fixed = append(fixed, field{"predictor_cost.per_batch_s", c.PerBatch}, field{"predictor_cost.per_call_s", c.PerCall},
			field{"predictor_cost.per_token_s", c.PerToken}, field{"predictor_cost.per_token_sq_s", c.PerTokenSq})
	}
	if err := seconds(fixed); err != nil {
		return nil, fmt.Errorf("cost model %s: %w", path, err)
	}
	switch f.Kind {
	case "linear":
		if f.Linear == nil {
			return nil, fmt.Errorf("cost model %s: kind linear without a \"linear\" object", path)
		}
		var coef []field
		for i, v := range f.Linear.coef() {
			coef = append(coef, field{"linear." + linearFields[i], v})
		}
		if err := seconds(coef); err != nil {
			return nil, fmt.Errorf("cost model %s: %w", path, err)
		}
		return &f, nil
	case "roofline", "":
		if f.Roofline != nil {
			if err := f.Roofline.fill("roofline."); err != nil {
				return nil, fmt.Errorf("cost model %s: %w", path, err)
			}
		}
		if f.Roofline == nil {
			r, err := LoadRoofline(path) // a bare roofline
			if err != nil {
				return nil, err
			}
			f.Roofline = r
		}
		f.Kind = "roofline"
		return &f, nil
	}
	return nil, fmt.Errorf("cost model %s: kind %q (valid: roofline, linear)", path, f.Kind)
}

// StepErrors reports a linear model's mean absolute relative error on
// samples, split into prefill-bearing and decode-only steps.
func (l *Linear) StepErrors(samples []StepSample) (prefill, decode float64) {
	var pe, de []float64
	for i := range samples {
		s := &samples[i]
		e := math.Abs(l.predict(s)-s.Seconds) / s.Seconds * 100
		if s.PrefillTokens > 0 {
			pe = append(pe, e)
		} else {
			de = append(de, e)
		}
	}
	if len(pe) > 0 {
		prefill = mean(pe)
	}
	if len(de) > 0 {
		decode = mean(de)
	}
	return prefill, decode
}
