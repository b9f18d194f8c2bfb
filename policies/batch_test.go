package policies

import "testing"

// A step is priced by what its items are: a one-token chunk of a prompt
// (here the last token of a 9-token prompt after a budget of 8) is a
// prefill, not a decode; the next step's single token is a decode.
func TestOneTokenChunkIsAPrefill(t *testing.T) {
	pol, _ := New("fcfs", RerankPause)
	s, _ := NewScheduler(Config{MaxBatchedTokens: 8, MaxSeqs: 4, BlockSize: 4, NumBlocks: 16, MaxModelLen: 100, PredictionInterval: 50}, pol)
	s.Add(Request{ID: "a", PromptTokens: 9, OutputTokens: 3}, 0)
	for step, want := range []struct{ prefill, decodes int }{{8, 0}, {1, 0}, {0, 1}} {
		b := s.Schedule(float64(step))
		if b.PrefillTokens != want.prefill || b.DecodeSeqs != want.decodes {
			t.Fatalf("step %d: %d prefill tokens and %d decodes, want %d and %d", step, b.PrefillTokens, b.DecodeSeqs, want.prefill, want.decodes)
		}
		s.Complete(float64(step) + 1)
	}
}
