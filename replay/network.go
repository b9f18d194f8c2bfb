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
type NetworkPredictor struct {
	Net    gpu.PredictorNet
	Inputs [][]int32 // by request index
}

// NewNetworkPredictor checks the inputs against the network.
func NewNetworkPredictor(net gpu.PredictorNet, inputs [][]int32) (*NetworkPredictor, error) {
	cfg := net.Config()
	for i, ids := range inputs {
		if len(ids) == 0 {
			return nil, fmt.Errorf("request %d: no predictor input (does the trace carry prompt text?)", i)
		}
		if len(ids) > cfg.MaxPositions {
			inputs[i] = append(ids[:cfg.MaxPositions-1:cfg.MaxPositions-1], ids[len(ids)-1]) // keep [SEP]
		}
	}
	return &NetworkPredictor{Net: net, Inputs: inputs}, nil
}

// Predict runs the network on the request's prompt.
func (n *NetworkPredictor) Predict(s *policies.Seq) float64 {
	out, err := n.Net.Predict([][]int32{n.Inputs[s.Index]}, nil)
	if err != nil || len(out) == 0 || math.IsNaN(float64(out[0])) {
		return math.Inf(1) // a failed prediction, as in the patch
	}
	return math.Max(float64(out[0])-float64(s.Generated), 0)
}
