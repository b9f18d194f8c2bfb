package policies

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// hashPredictor errs by a factor in [0.5, 1.5) fixed per request and point.
type hashPredictor struct{}

func (hashPredictor) Predict(s *Seq) float64 {
	return float64(s.Remaining()) * (0.5 + float64((s.Index*7+s.Generated*13)%10)/10)
}

// Random small workloads in a cache tight enough to preempt often: after
// at most one retry (a self-preempting request stops the running pass,
// rule 3) a core that is not idle always has work to run, its invariants
// hold after every step, and every request finishes or is rejected.
func TestRandomWorkloadsNeverStall(t *testing.T) {
	for _, name := range Names() {
		for _, mode := range []Rerank{RerankPause, RerankResubmit, RerankNone} {
			if name != "isrtf" && mode != RerankPause {
				continue
			}
			for seed := uint64(0); seed < 150; seed++ {
				rng := rand.New(rand.NewPCG(seed, 1))
				pol, _ := New(name, mode)
				s, err := NewScheduler(Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: 16, MaxModelLen: 256, PredictionInterval: 8}, pol, hashPredictor{})
				if err != nil {
					t.Fatal(err)
				}
				const n = 24
				added, done := 0, 0
				for step := 0; done < n; step++ {
					if step > 5000 {
						t.Fatalf("%s/%s seed %d: %d of %d done after 5000 steps", name, mode, seed, done, n)
					}
					for added < n && rng.IntN(3) == 0 {
						s.Add(Request{ID: fmt.Sprint(added), Index: added, PromptTokens: 4 + rng.IntN(37), OutputTokens: 2 + rng.IntN(29)}, float64(step))
						added++
					}
					b := s.Schedule(float64(step))
					if b.Empty() && !s.Idle() {
						b = s.Schedule(float64(step))
					}
					if err := s.CheckInvariants(); err != nil {
						t.Fatalf("%s/%s seed %d: %v", name, mode, seed, err)
					}
					if b.Empty() && !s.Idle() {
						t.Fatalf("%s/%s seed %d step %d: stalled: %s", name, mode, seed, step, dumpState(s))
					}
					if !b.Empty() {
						s.Complete(float64(step) + 0.5)
					}
					done += len(s.TakeFinished())
				}
			}
		}
	}
}
