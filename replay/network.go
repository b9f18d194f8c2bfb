package replay

import (
	"fmt"
	"math"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/policies"
)

// NetworkPredictor makes the predictor network's own outputs the
// predictions, for trained weights (an ELIS checkpoint). Its input is the
// request's prompt as token ids of the network's tokenizer, [CLS] ...
// [SEP], at most the network's 512 positions. The served model's output in
// a replay is not real text, so the network sees the prompt only: its
// output estimates the whole answer, and the remaining tokens are that
// estimate less what was generated.
//
// The network runs when the predictor is made, over every prompt in
// batches, not inside the scheduler core: the core's asks are then
// answered by a lookup that cannot block or fail. A prompt whose output is missing or
// not a number is predicted +Inf (the patch's failed prediction: FCFS-like
// for that request) and counted in Failed.
type NetworkPredictor struct {
	Totals []float64 // the network's output for each request index
	Failed int       // requests whose output was not a number
}

// NewNetworkPredictor runs net over inputs, batch prompts a call; an
// error of the network's ends it.
func NewNetworkPredictor(net gpu.PredictorNet, inputs [][]int32, batch int) (*NetworkPredictor, error) {
	cfg := net.Config()
	for i, ids := range inputs {
		if len(ids) == 0 {
			return nil, fmt.Errorf("request %d: no predictor input (does the trace carry prompt text?)", i)
		}
		if len(ids) > cfg.MaxPositions {
			inputs[i] = append(ids[:cfg.MaxPositions-1:cfg.MaxPositions-1], ids[len(ids)-1]) // keep [SEP]
		}
	}
	np := &NetworkPredictor{Totals: make([]float64, len(inputs))}
	batch = max(batch, 1)
	for lo := 0; lo < len(inputs); lo += batch {
		hi := min(lo+batch, len(inputs))
		out, err := net.Predict(inputs[lo:hi], nil)
		if err != nil {
			return nil, fmt.Errorf("predictor network on requests %d to %d: %w", lo, hi-1, err)
		}
		for i := lo; i < hi; i++ {
			v := math.NaN()
			if i-lo < len(out) {
				v = float64(out[i-lo])
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				np.Failed++
				v = math.Inf(1)
			}
			np.Totals[i] = v
		}
	}
	return np, nil
}

// Predict is the network's estimate for the request less what it has
// generated.
func (n *NetworkPredictor) Predict(r *policies.Request, generated int) float64 {
	if r.Index < 0 || r.Index >= len(n.Totals) {
		return math.Inf(1)
	}
	return math.Max(n.Totals[r.Index]-float64(generated), 0)
}
