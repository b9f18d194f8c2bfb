package predictor

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/elis-sim/elis-sim/internal/synth"
	"github.com/elis-sim/elis-sim/policies"
)

// Cost is what predictions add to a scheduler step: a fixed part per batch
// of predictions (kernel launches), plus parts per request and per input
// token. The defaults follow the ELIS predictor (bge-base + 8 linear
// layers) measured on an H200 in fp16, about 5 ms a call at small batches.
type Cost struct {
	PerBatch float64 `json:"per_batch_s"`
	PerCall  float64 `json:"per_call_s"`
	PerToken float64 `json:"per_token_s"`
	// PerTokenSq prices attention, quadratic in each input's length: it is
	// charged on tokens^2/calls, the sum of squares of equal-length inputs.
	PerTokenSq float64 `json:"per_token_sq_s,omitempty"`
}

// DefaultCost approximates the ELIS predictor in PyTorch eager, fp16, on
// an H200: launch-bound near 5 ms per batched call up to 16 x 512 tokens.
var DefaultCost = Cost{PerBatch: 5e-3, PerCall: 0, PerToken: 2e-7}

// StepSeconds is what calls predictions over tokens input tokens add to
// the step they precede, as the system makes them: one batch (ELIS's
// frontend), one call each on the critical path (sync: the vLLM patch),
// or nothing when they run beside the forward pass (async).
func (c Cost) StepSeconds(calls, tokens int, sync, async bool) float64 {
	switch {
	case async:
		return 0
	case sync:
		return c.SyncSeconds(calls, tokens)
	}
	return c.Seconds(calls, tokens)
}

// SyncSeconds prices calls predictions made one at a time, each its own
// batch on the scheduler's critical path (the vLLM patch's way).
func (c Cost) SyncSeconds(calls, tokens int) float64 {
	if calls == 0 {
		return 0
	}
	t := float64(tokens)
	return float64(calls)*(c.PerBatch+c.PerCall) + c.PerToken*t + c.PerTokenSq*t*t/float64(calls)
}

// Seconds prices calls predictions over tokens input tokens, batched.
func (c Cost) Seconds(calls, tokens int) float64 {
	if calls == 0 {
		return 0
	}
	t := float64(tokens)
	return c.PerBatch + c.PerCall*float64(calls) + c.PerToken*t + c.PerTokenSq*t*t/float64(calls)
}

// Oracle predicts the true remaining tokens.
type Oracle struct{}

// Predict returns the truth.
func (Oracle) Predict(r *policies.Request, generated int) float64 {
	return float64(r.OutputTokens - generated)
}

// Constant predicts the same value for everything: a useless predictor,
// under which ISRTF falls back to arrival order.
type Constant float64

// Predict returns the constant.
func (c Constant) Predict(*policies.Request, int) float64 { return float64(c) }

// Noisy multiplies the true remaining tokens by a log-normal error
// exp(Sigma * z). z is a hash of (Seed, request index, tokens generated), so
// a request gets the same prediction at the same point under every policy.
type Noisy struct {
	Sigma float64
	Seed  uint64
}

// Predict returns a noisy estimate.
func (n Noisy) Predict(r *policies.Request, generated int) float64 {
	return n.value(r.Index, generated, r.OutputTokens-generated)
}

func (n Noisy) value(index, generated, remaining int) float64 {
	return float64(remaining) * math.Exp(n.Sigma*normal(n.Seed, uint64(index), uint64(generated)))
}

// Recorded replays predictions stored in a trace: for request i, the entry
// with the largest generated count not above the request's. Requests without
// one get +Inf, the patch's value for a failed prediction.
type Recorded [][]Point

// Point is one recorded prediction.
type Point struct {
	Generated int
	Remaining float64
}

// Predict returns the recorded value.
func (r Recorded) Predict(q *policies.Request, generated int) float64 {
	v := math.Inf(1)
	if q.Index < len(r) {
		for _, p := range r[q.Index] {
			if p.Generated > generated {
				break
			}
			v = p.Remaining
		}
	}
	return v
}

// normal is a standard normal draw determined by its arguments (Box-Muller
// over two hashed uniforms).
func normal(seed, a, b uint64) float64 {
	h := synth.Mix(seed ^ synth.Mix(a^synth.Mix(b)))
	u1 := (float64(h>>11) + 0.5) / (1 << 53)
	u2 := float64(synth.Mix(h)>>11) / (1 << 53)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// Spec describes a predictor on the command line.
type Spec struct {
	Kind  string  // oracle, noisy, recorded, constant, network
	Sigma float64 // noisy: log-normal sigma
	MAE   float64 // noisy: target mean absolute error in tokens (instead of Sigma)
	Value float64 // constant
}

// ParseSpec reads "oracle", "noisy:sigma=0.3", "noisy:mae=19.9",
// "recorded", "constant:100" or "network" (replay only: the predictor
// network's own outputs).
func ParseSpec(s string) (Spec, error) {
	kind, arg, _ := strings.Cut(s, ":")
	bad := fmt.Errorf("predictor %q: valid are oracle, noisy:sigma=S, noisy:mae=TOKENS, recorded, constant:TOKENS, network (replay)", s)
	switch kind {
	case "oracle", "recorded", "network":
		if arg != "" {
			return Spec{}, bad
		}
		return Spec{Kind: kind}, nil
	case "constant":
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || math.IsNaN(v) {
			return Spec{}, bad
		}
		return Spec{Kind: kind, Value: v}, nil
	case "noisy":
		k, v, ok := strings.Cut(arg, "=")
		if !ok || (k != "sigma" && k != "mae") {
			return Spec{}, fmt.Errorf("predictor %q: noisy wants sigma=S (log-space noise) or mae=TOKENS (a target mean absolute error)", s)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
			return Spec{}, fmt.Errorf("predictor %q: %s=%q is not a finite number >= 0", s, k, v)
		}
		if k == "sigma" {
			return Spec{Kind: kind, Sigma: f}, nil
		}
		return Spec{Kind: kind, MAE: f}, nil
	}
	return Spec{}, bad
}

func (s Spec) String() string {
	switch s.Kind {
	case "constant":
		return fmt.Sprintf("constant:%g", s.Value)
	case "noisy":
		if s.MAE > 0 {
			return fmt.Sprintf("noisy:mae=%g", s.MAE)
		}
		return fmt.Sprintf("noisy:sigma=%g", s.Sigma)
	}
	return s.Kind
}
