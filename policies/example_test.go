package policies_test

import (
	"fmt"

	"github.com/elis-sim/elis-sim/policies"
)

// Drive the core by hand: it has no clock, so the caller says when each
// thing happens. Two requests arrive; each step the core says what to
// compute, the caller "runs" it for 10 ms and says so. Both prompts fit
// the 64-token budget of the first step; then both decode, one token a
// step each, until each has its output.
func Example() {
	eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 16, NumBlocks: 32, MaxModelLen: 1024, PredictionInterval: 50}
	pol, _ := policies.New("fcfs", policies.RerankPause)
	core, _ := policies.NewScheduler(eng, pol)
	core.Add(policies.Request{ID: "long", Index: 0, PromptTokens: 40, OutputTokens: 3}, 0)
	core.Add(policies.Request{ID: "short", Index: 1, PromptTokens: 8, OutputTokens: 2}, 0)
	now := 0.0
	for !core.Idle() {
		b := core.Next(now)
		fmt.Printf("t=%2.0f ms: step of %d items, %d prefill tokens, %d decodes\n", now*1e3, len(b.Items), b.PrefillTokens, b.DecodeSeqs)
		now += 0.010
		core.Complete(now)
	}
	for _, r := range core.TakeFinished() {
		fmt.Printf("%s: first token at %.0f ms, done at %.0f ms\n", r.ID, r.FirstToken*1e3, r.Finish*1e3)
	}
	// Output:
	// t= 0 ms: step of 2 items, 48 prefill tokens, 0 decodes
	// t=10 ms: step of 2 items, 0 prefill tokens, 2 decodes
	// t=20 ms: step of 1 items, 0 prefill tokens, 1 decodes
	// short: first token at 10 ms, done at 20 ms
	// long: first token at 10 ms, done at 30 ms
}
