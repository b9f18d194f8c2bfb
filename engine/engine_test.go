package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/policies"
)

// With prefix caching a request reuses the KV blocks another request
// computed for the same content, on the executor for real: it computes
// only its own tokens and generates exactly what it generates without the
// cache, where it computes everything. Sessions reuse a previous turn's
// output too.
func TestPrefixCachingReusesBlocks(t *testing.T) {
	mc, _ := gpu.Preset("tiny")
	wts, err := gpu.RandomWeights(mc, 1)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []policies.Request{
		{ID: "a", Index: 0, PromptTokens: 24, OutputTokens: 5, Content: &policies.Content{Hashes: []uint64{1, 2, 3}, HashBlock: 8}},
		{ID: "b", Index: 1, PromptTokens: 30, OutputTokens: 6, Content: &policies.Content{Hashes: []uint64{1, 2, 4, 5}, HashBlock: 8}},
		{ID: "t1", Index: 2, PromptTokens: 10, OutputTokens: 12, Content: &policies.Content{Session: 9}},
		{ID: "t2", Index: 3, PromptTokens: 30, OutputTokens: 4, Content: &policies.Content{Session: 9}},
	}
	run := func(caching bool) (map[string][]int32, policies.Stats) {
		eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: 64, MaxModelLen: 256, PredictionInterval: 50, PrefixCaching: caching}
		pol, _ := policies.New("fcfs", policies.RerankPause)
		core, err := policies.NewScheduler(eng, pol)
		if err != nil {
			t.Fatal(err)
		}
		exec, err := gpu.NewCPU(wts, 4, 64, 0)
		if err != nil {
			t.Fatal(err)
		}
		w, err := New(Config{Core: core, Exec: exec, Vocab: mc.Vocab, Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]int32{}
		for _, r := range reqs { // one at a time: each finds the others' blocks cached
			w.Add(Submission{Req: r})
			for !core.Idle() {
				if _, err := w.Step(); err != nil {
					t.Fatal(err)
				}
			}
			out[r.ID] = w.seqs[r.Index].tokens[r.PromptTokens:]
		}
		return out, core.Stats()
	}
	plain, _ := run(false)
	cached, st := run(true)
	// b hits a's first 16 tokens, t2 hits t1's stream up to the last
	// token t1 computed (21 of 22: 20 tokens in full blocks of 4).
	if st.PrefixHit != 16+20 {
		t.Errorf("prefix hits %d tokens, want 36", st.PrefixHit)
	}
	for id, toks := range plain {
		if !slices.Equal(toks, cached[id]) {
			t.Errorf("%s generated %v with the cache, %v without", id, cached[id], toks)
		}
	}
}

// The cost model's engine: a step lasts at least what the model prices it
// at (a lower bound only: the machine may be slower, never faster), every
// request gets its forced number of placeholder tokens through OnToken,
// and an aborted request leaves with its blocks freed.
func TestTimedEngineAndAbort(t *testing.T) {
	eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: 64, MaxModelLen: 256, PredictionInterval: 50, PrefixCaching: true}
	pol, _ := policies.New("fcfs", policies.RerankPause)
	core, _ := policies.NewScheduler(eng, pol)
	got := map[int]int{}
	w, err := New(Config{Core: core, Coster: &cost.Linear{Base: 0.002}, Vocab: 100, Seed: 1, Start: time.Now(),
		OnToken: func(i int, tok int32, n int) {
			if tok < 0 || tok >= 100 || n != got[i]+1 {
				t.Errorf("request %d: token %d as number %d after %d", i, tok, n, got[i])
			}
			got[i] = n
		}})
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan Submission, 3)
	aborts := make(chan int, 1)
	in <- Submission{Req: policies.Request{ID: "a", Index: 0, PromptTokens: 5, OutputTokens: 4}}
	in <- Submission{Req: policies.Request{ID: "b", Index: 1, PromptTokens: 3, OutputTokens: 6}, Prompt: []int32{1, 2, 3}}
	in <- Submission{Req: policies.Request{ID: "c", Index: 2, PromptTokens: 9, OutputTokens: 200}}
	aborts <- 2
	close(in)
	close(aborts)
	var recs []policies.Record
	start := time.Now()
	if err := w.Run(context.Background(), in, aborts, func(r []policies.Record) { recs = append(recs, r...) }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || got[0] != 4 || got[1] != 6 || core.Stats().Aborted != 1 || core.FreeBlocks() != 64 {
		t.Fatalf("records %+v, tokens %v, stats %+v, %d free blocks", recs, got, core.Stats(), core.FreeBlocks())
	}
	if steps := core.Stats().Steps; time.Since(start) < time.Duration(steps)*2*time.Millisecond {
		t.Fatalf("%d steps of 2 ms took %v", steps, time.Since(start))
	}
}

// An idle worker blocks in Run, whatever its context: given
// context.Background (whose Done is nil, as serve passes it), the loop
// used to take its non-blocking branch and spin a core while no request
// came. Run passes its loop once to find nothing, then waits; a request
// and the inbox's close each wake it a bounded number of times.
func TestIdleWorkerBlocks(t *testing.T) {
	eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: 64, MaxModelLen: 256, PredictionInterval: 50}
	pol, _ := policies.New("fcfs", policies.RerankPause)
	core, _ := policies.NewScheduler(eng, pol)
	w, err := New(Config{Core: core, Coster: &cost.Linear{Base: 1e-4}})
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan Submission, 1)
	ran := make(chan error, 1)
	got := make(chan []policies.Record, 1)
	go func() { ran <- w.Run(context.Background(), in, nil, func(r []policies.Record) { got <- r }) }()
	// However long it is left idle, a blocked loop makes no more passes;
	// a spinning one makes thousands in this time on any machine.
	time.Sleep(200 * time.Millisecond)
	if n := w.passes.Load(); n > 2 {
		t.Fatalf("an idle worker passed its loop %d times in 200 ms: it polls instead of blocking", n)
	}
	in <- Submission{Req: policies.Request{ID: "a", Index: 0, PromptTokens: 4, OutputTokens: 2}}
	if recs := <-got; len(recs) != 1 || recs[0].Generated != 2 {
		t.Fatalf("records %+v", recs)
	}
	before := w.passes.Load()
	time.Sleep(200 * time.Millisecond)
	if n := w.passes.Load() - before; n > 1 {
		t.Fatalf("idle again after a request, the worker passed its loop %d more times", n)
	}
	close(in)
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
}

// A request's memory follows the tokens it generates, not its limit: a
// chat's default max_tokens is the whole context, and reserving it for
// every request took a server from 249 MB to 1.3 GB on 2,000 chats.
func TestTokensNotReservedForMaxTokens(t *testing.T) {
	eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: 64, MaxModelLen: 1 << 20, PredictionInterval: 50}
	pol, _ := policies.New("fcfs", policies.RerankPause)
	core, _ := policies.NewScheduler(eng, pol)
	w, err := New(Config{Core: core, Coster: &cost.Linear{Base: 1e-4}})
	if err != nil {
		t.Fatal(err)
	}
	w.Add(Submission{Req: policies.Request{ID: "a", Index: 0, PromptTokens: 8, OutputTokens: 1 << 20}})
	w.Add(Submission{Req: policies.Request{ID: "b", Index: 1, PromptTokens: 3, OutputTokens: 1 << 20}, Prompt: []int32{1, 2, 3}})
	for i, prompt := range []int{8, 3} {
		if c := cap(w.seqs[i].tokens); c > prompt+256 {
			t.Errorf("request %d reserved %d tokens for a %d-token prompt", i, c, prompt)
		}
	}
}
