package policies

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// hashPredictor errs by a factor in [0.5, 1.5) fixed per request and point.
type hashPredictor struct{}

func (hashPredictor) Predict(r *Request, generated int) float64 {
	return float64(r.OutputTokens-generated) * (0.5 + float64((r.Index*7+generated*13)%10)/10)
}

// Random small workloads in a cache tight enough to preempt often (a third
// with steady decodes kept lazily): a core
// that is not idle always has work to run from Next (clients leaving at
// random times included), its invariants
// hold after every step, and every request finishes or is rejected; with
// prefix caching on as well, with requests sharing prefixes and sessions.
func TestRandomWorkloadsNeverStall(t *testing.T) {
	for _, caching := range []bool{false, true} {
		t.Run(fmt.Sprintf("caching=%v", caching), func(t *testing.T) { randomWorkloads(t, caching) })
	}
}

// randomContent shares prefixes often: a third of the requests name
// nothing, a third draw hash chains that diverge early, a third belong to
// one of three sessions.
func randomContent(rng *rand.Rand) *Content {
	switch rng.IntN(3) {
	case 1:
		h := make([]uint64, 1+rng.IntN(6))
		for i := range h {
			h[i] = uint64(i*10 + rng.IntN(2))
		}
		return &Content{Hashes: h, HashBlock: 8}
	case 2:
		return &Content{Session: 1 + uint64(rng.IntN(3))}
	}
	return nil
}

func randomWorkloads(t *testing.T, caching bool) {
	for _, name := range Names() {
		for _, mode := range []Rerank{RerankPause, RerankResubmit, RerankNone} {
			if name != "isrtf" && mode != RerankPause {
				continue
			}
			for seed := uint64(0); seed < 150; seed++ {
				rng := rand.New(rand.NewPCG(seed, 1))
				pol, _ := New(name, mode)
				s, err := NewScheduler(Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: 16, MaxModelLen: 256, PredictionInterval: 8, PrefixCaching: caching,
					LazyPredictions: seed%2 == 1, DisplaceMargin: float64(seed % 3 * 5), DisplaceRatio: float64(seed%4) / 10}, pol)
				if err != nil {
					t.Fatal(err)
				}
				s.SumsOnly = seed%3 == 0 // steady decodes kept lazily (aborts write them out)
				const n = 24
				added, done := 0, 0
				var answers []float64
				for step := 0; done < n; step++ {
					if step > 5000 {
						t.Fatalf("%s/%s seed %d: %d of %d done after 5000 steps", name, mode, seed, done, n)
					}
					for added < n && rng.IntN(3) == 0 {
						r := Request{ID: fmt.Sprint(added), Index: added, PromptTokens: 4 + rng.IntN(37), OutputTokens: 2 + rng.IntN(29)}
						if caching {
							r.Content = randomContent(rng)
						}
						s.Add(r, float64(step))
						added++
					}
					// The driver answers asks whenever it likes before a
					// step, and must when Next waits.
					if rng.IntN(2) == 0 {
						answers = AnswerAll(s, hashPredictor{}, answers)
					}
					b := s.Next(float64(step))
					for b.Wait {
						if len(s.Asks()) == 0 {
							t.Fatalf("%s/%s seed %d step %d: waits with nothing asked", name, mode, seed, step)
						}
						answers = AnswerAll(s, hashPredictor{}, answers)
						b = s.Next(float64(step))
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
					if added > 0 && rng.IntN(40) == 0 {
						// A client leaves, wherever its request is.
						s.Abort(rng.IntN(added), float64(step)+0.5)
						if err := s.CheckInvariants(); err != nil {
							t.Fatalf("%s/%s seed %d after an abort: %v", name, mode, seed, err)
						}
					}
					done += len(s.TakeFinished())
				}
			}
		}
	}
}

// A sums-only core under a light load gives each new request a finished
// one's Seq: once warm, a request's whole life (arrival, prefill, decode,
// finish, record) allocates nothing, and each record is still its own.
func TestLightLoadReusesFinishedRequests(t *testing.T) {
	pol, _ := New("fcfs", RerankPause)
	s, err := NewScheduler(Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: 64, MaxModelLen: 256, PredictionInterval: 8, PrefixCaching: true}, pol)
	if err != nil {
		t.Fatal(err)
	}
	s.SumsOnly = true
	var recs []Record
	i := 0
	life := func() {
		s.Add(Request{ID: "r", Index: i, PromptTokens: 10, OutputTokens: 5}, float64(i))
		for !s.Idle() {
			s.Next(float64(i))
			s.Complete(float64(i) + 0.5)
		}
		recs = s.AppendFinished(recs[:0])
		if len(recs) != 1 || recs[0].Index != i || recs[0].Generated != 5 || recs[0].Finish < 0 {
			t.Fatalf("request %d: records %+v", i, recs)
		}
		i++
	}
	for range 10 {
		life()
	}
	if a := testing.AllocsPerRun(100, life); a != 0 {
		t.Errorf("%v allocations a request, want 0", a)
	}
}
