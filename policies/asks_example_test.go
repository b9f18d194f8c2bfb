package policies_test

import (
	"fmt"

	"github.com/elis-sim/elis-sim/policies"
)

// halfTruth predicts half of the true remaining tokens: any Predictor will
// do, since the core only reads the answers.
type halfTruth struct{}

func (halfTruth) Predict(r *policies.Request, generated int) float64 {
	return float64(r.OutputTokens-generated) / 2
}

// A predictive policy asks for its predictions; the driver answers them
// before the next step. Here ISRTF's core, with one place in the batch,
// asks for both arrivals at once (eager predictions), is answered, and
// serves the one predicted shorter first.
func ExampleScheduler_Asks() {
	eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 1, BlockSize: 16, NumBlocks: 32, MaxModelLen: 1024, PredictionInterval: 50}
	pol, _ := policies.New("isrtf", policies.RerankPause)
	core, _ := policies.NewScheduler(eng, pol)
	core.Add(policies.Request{ID: "long", Index: 0, PromptTokens: 8, OutputTokens: 40}, 0)
	core.Add(policies.Request{ID: "short", Index: 1, PromptTokens: 8, OutputTokens: 4}, 0)
	for _, a := range core.Asks() {
		fmt.Printf("asked: %s after %d tokens\n", a.Request.ID, a.Generated)
	}
	policies.AnswerAll(core, halfTruth{}, nil)
	b := core.Next(0)
	fmt.Printf("first step: %s (waits for answers: %v)\n", b.Items[0].Seq.ID, b.Wait)
	// Output:
	// asked: long after 0 tokens
	// asked: short after 0 tokens
	// first step: short (waits for answers: false)
}
