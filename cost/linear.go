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
	Seconds        float64
}

// features are the terms a Linear cost model weighs.
func (s *StepSample) features() []float64 {
	return []float64{1, float64(s.PrefillTokens), float64(s.DecodeSeqs), float64(s.DecodeContext), s.PrefillAttn, float64(s.PrefillContext)}
}

// Linear prices a step as a weighted sum of its shape: a fixed cost, per
// new token (prefill and decode), per cached token read by decodes, per
// unit of causal attention work and per cached token read by prefills.
// It is what "elis-sim calibrate" fits to a device profile.
type Linear struct {
	Base              float64 `json:"base_s"`
	PerPrefillToken   float64 `json:"per_prefill_token_s"`
	PerDecodeSeq      float64 `json:"per_decode_seq_s"`
	PerDecodeContext  float64 `json:"per_decode_context_token_s"`
	PerPrefillAttn    float64 `json:"per_prefill_attention_unit_s"`
	PerPrefillContext float64 `json:"per_prefill_context_token_s"`
}

// linearFields are the JSON names of coef's entries, in order.
var linearFields = []string{"base_s", "per_prefill_token_s", "per_decode_seq_s", "per_decode_context_token_s", "per_prefill_attention_unit_s", "per_prefill_context_token_s"}

func (l *Linear) coef() []float64 {
	return []float64{l.Base, l.PerPrefillToken, l.PerDecodeSeq, l.PerDecodeContext, l.PerPrefillAttn, l.PerPrefillContext}
}

// StepTime implements StepCoster.
func (l *Linear) StepTime(b *policies.Batch) float64 {
	if b.Tokens() == 0 {
		return 0
	}
	s := StepSample{PrefillTokens: b.PrefillTokens, PrefillContext: b.PrefillContext, PrefillAttn: b.PrefillAttn,
		DecodeSeqs: b.DecodeSeqs, DecodeContext: b.DecodeContext}
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
	// A term no sample exercises (say, prefills that read a cache) cannot
	// be fitted: it stays 0.
	active := make([]bool, 6)
	for i := range samples {
		for j, f := range samples[i].features() {
			active[j] = active[j] || f != 0
		}
	}
	for round := 0; round < 6; round++ {
		var cols []int
		for j, a := range active {
			if a {
				cols = append(cols, j)
			}
		}
		A := mat.NewDense(len(samples), len(cols), nil)
		y := mat.NewVecDense(len(samples), nil)
		for i := range samples {
			s := &samples[i]
			if s.Seconds <= 0 {
				return nil, fmt.Errorf("step %d: time %v, want > 0", i, s.Seconds)
			}
			f := s.features()
			for k, j := range cols {
				A.Set(i, k, f[j]/s.Seconds)
			}
			y.SetVec(i, 1)
		}
		var x mat.VecDense
		if err := x.SolveVec(A, y); err != nil {
			return nil, fmt.Errorf("calibration: %w (do the profile's shapes vary?)", err)
		}
		coef := make([]float64, 6)
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
			return &Linear{coef[0], coef[1], coef[2], coef[3], coef[4], coef[5]}, nil
		}
	}
	return nil, fmt.Errorf("calibration did not settle on non-negative coefficients")
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
	switch f.Kind {
	case "linear":
		if f.Linear == nil {
			return nil, fmt.Errorf("cost model %s: kind linear without a \"linear\" object", path)
		}
		for i, v := range f.Linear.coef() {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return nil, fmt.Errorf("cost model %s: field \"linear.%s\": %v, want a finite number of seconds >= 0", path, linearFields[i], v)
			}
		}
		return &f, nil
	case "roofline", "":
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
