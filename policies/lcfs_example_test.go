package policies_test

import (
	"fmt"

	"github.com/elis-sim/elis-sim/policies"
)

// Adding a policy is this file: a type with the Policy methods, and a
// Register call. From then on the core, the CLI's --policy, sweep specs
// and the property checks of every registered policy know it; a scenario
// script (here testdata/lcfs) shows its order step by step.

// lcfs is last come, first served: the newest waiting request first, and
// the newest running one is the victim when memory runs out.
type lcfs struct{}

func (lcfs) Name() string { return "lcfs" }
func (lcfs) Less(a, b *policies.Seq) bool {
	return a.Arrival > b.Arrival || a.Arrival == b.Arrival && a.Index > b.Index
}
func (lcfs) Victim(running []*policies.Seq) int { return newest(running) }
func (lcfs) Predictive() bool                   { return false }
func (lcfs) Rerank() policies.Rerank            { return policies.RerankNone }
func (lcfs) Traits() policies.Traits            { return policies.Traits{} }

func newest(running []*policies.Seq) int {
	best := 0
	for i, s := range running {
		if s.Arrival > running[best].Arrival {
			best = i
		}
	}
	return best
}

func init() { policies.Register("lcfs", func(policies.Rerank) policies.Policy { return lcfs{} }) }

// A registered policy runs like the built-in ones: three requests wait
// behind a batch of one, and LCFS serves the newest first.
func ExampleRegister() {
	eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 1, BlockSize: 16, NumBlocks: 32, MaxModelLen: 1024, PredictionInterval: 50}
	pol, _ := policies.New("lcfs", policies.RerankNone)
	core, _ := policies.NewScheduler(eng, pol)
	for i, id := range []string{"first", "second", "third"} {
		core.Add(policies.Request{ID: id, Index: i, Arrival: float64(i) * 0.001, PromptTokens: 8, OutputTokens: 2}, float64(i)*0.001)
	}
	now := 0.01
	for !core.Idle() {
		core.Next(now)
		now += 0.01
		core.Complete(now)
		for _, r := range core.TakeFinished() {
			fmt.Println(r.ID)
		}
	}
	// Output:
	// third
	// second
	// first
}
