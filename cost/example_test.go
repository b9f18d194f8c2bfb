package cost_test

import (
	"fmt"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/policies"
)

// Price a step: the roofline model of Llama-3.1-8B on an H100 under
// today's vLLM, for a decode of 64 requests of 512 tokens of context, and
// for a prefill of one 2,048-token prompt. A step's price depends only on
// the batch's sums, which the core fills in.
func Example() {
	r, err := cost.NewRooflineStack("llama-3.1-8b", "h100", cost.DefaultStack, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	decode := &policies.Batch{DecodeSeqs: 64, DecodeContext: 64 * 512}
	prefill := &policies.Batch{PrefillTokens: 2048, PrefillAttn: 2048 * (2048 + 1) / 2}
	fmt.Printf("decode, 64 x 512: %.1f ms\n", r.StepTime(decode)*1e3)
	fmt.Printf("prefill, 2,048 tokens: %.1f ms\n", r.StepTime(prefill)*1e3)
	// Output:
	// decode, 64 x 512: 8.2 ms
	// prefill, 2,048 tokens: 46.4 ms
}
