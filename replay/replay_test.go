package replay

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/traces"
)

func tinySetup(t *testing.T, policy string, blocks int) (*traces.Trace, Config) {
	t.Helper()
	tr, err := traces.Generate(traces.GenConfig{N: 24, Seed: 3, Arrivals: traces.Poisson{Rate: 400},
		Prompt: traces.Uniform{Min: 4, Max: 40}, Output: traces.Uniform{Min: 2, Max: 30}})
	if err != nil {
		t.Fatal(err)
	}
	mc, _ := gpu.Preset("tiny")
	w, err := gpu.RandomWeights(mc, 1)
	if err != nil {
		t.Fatal(err)
	}
	eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: blocks, MaxModelLen: 256, PredictionInterval: 8}
	net := gpu.RandomPredictor(gpu.BertConfig{Hidden: 32, Intermediate: 64, Layers: 1, Heads: 4, Vocab: 1000, MaxPositions: 512, TypeVocab: 2, LNEps: 1e-12}, []int{32, 1}, 2)
	return tr, Config{Engine: eng, Policy: policy, Mode: policies.RerankPause, Predictor: predictor.Noisy{Sigma: 0.5, Seed: 1},
		NewNet: func(int) (gpu.PredictorNet, error) { return net, nil }, Workers: 2, Router: "least-loaded", TimeScale: 1, Vocab: mc.Vocab, Seed: 1, KeepHistory: true,
		NewExecutor: func(int) (gpu.Executor, error) { return gpu.NewCPU(w, 4, blocks, 0) }}
}

// Every request of a small trace completes with the right number of
// tokens, under FCFS and ISRTF, with memory tight enough to preempt.
//
// The requests arrive all but at once (time scale 1e-9) and any two of
// them outgrow 16 blocks together while each fits alone, so preemption
// does not depend on how fast this machine runs the steps: a replay's
// clock is the wall clock, and a test that timed arrivals against steps
// failed on a loaded machine.
func TestReplayCompletesEveryRequest(t *testing.T) {
	for _, pol := range []string{"fcfs", "isrtf"} {
		for _, blocks := range []int{200, 16} {
			tr, cfg := tinySetup(t, pol, blocks)
			cfg.TimeScale = 1e-9
			for i := range tr.Requests {
				r := &tr.Requests[i]
				r.PromptTokens, r.OutputTokens = 16+i%9, 16+(i*5)%9 // 32 to 48 tokens: 8 to 12 blocks of 4
			}
			res, err := Run(context.Background(), tr, cfg)
			if err != nil {
				t.Fatalf("%s/%d: %v", pol, blocks, err)
			}
			if len(res.Records) != len(tr.Requests) || res.Interrupted {
				t.Fatalf("%s/%d: %d records of %d", pol, blocks, len(res.Records), len(tr.Requests))
			}
			for i, r := range res.Records {
				if r.Rejected == "" && (r.Generated != tr.Requests[i].OutputTokens || r.Finish < r.FirstToken || r.FirstToken < r.Arrival) {
					t.Fatalf("%s/%d: record %+v", pol, blocks, r)
				}
			}
			if blocks == 16 && res.Stats.Preemptions == 0 {
				t.Errorf("%s: 16 blocks did not preempt anything", pol)
			}
		}
	}
}

// Stopping arrivals finishes what is in flight and reports it.
func TestReplayStop(t *testing.T) {
	tr, cfg := tinySetup(t, "fcfs", 200)
	for i := range tr.Requests {
		tr.Requests[i].Arrival = float64(i) // one a second: most never arrive
	}
	stop := make(chan struct{})
	close(stop)
	cfg.Stop = stop
	res, err := Run(context.Background(), tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || len(res.Records) != res.Arrived || res.Arrived >= len(tr.Requests) {
		t.Fatalf("interrupted %v, %d records, %d arrived of %d", res.Interrupted, len(res.Records), res.Arrived, len(tr.Requests))
	}
}

// A worker that fails at its first step ends the replay at once with its
// error, an hour-long trace notwithstanding: the arrivals and the other
// workers are cancelled, and no goroutine of Run's is left.
func TestReplayFirstErrorCancelsTheRest(t *testing.T) {
	tr, cfg := tinySetup(t, "fcfs", 200)
	for i := range tr.Requests {
		tr.Requests[i].Arrival = float64(i) * 150 // one every 150 s: an hour
	}
	inner := cfg.NewExecutor
	cfg.NewExecutor = func(i int) (gpu.Executor, error) {
		e, err := inner(i)
		if i == 0 {
			return &brokenExec{Executor: e}, err
		}
		return e, err
	}
	cfg.Router = "round-robin"
	before := runtime.NumGoroutine()
	_, err := Run(context.Background(), tr, cfg)
	if err == nil || !strings.Contains(err.Error(), "device lost") {
		t.Fatalf("Run: %v", err)
	}
	for runtime.NumGoroutine() > before { // goroutines end as they return; a leak hangs here
		time.Sleep(time.Millisecond)
	}
}

// brokenExec passes the warm-up, then fails every step.
type brokenExec struct {
	gpu.Executor
	warm int
}

func (b *brokenExec) Step(seqs []gpu.SeqStep, next []int32) error {
	if b.warm < 2 { // engine.WarmUp's two steps
		b.warm++
		return b.Executor.Step(seqs, next)
	}
	return errors.New("device lost")
}

// With --predictor network the network's outputs order ISRTF: finite,
// non-negative, shrinking as tokens are generated.
func TestNetworkPredictor(t *testing.T) {
	net := gpu.RandomPredictor(gpu.BertConfig{Hidden: 32, Intermediate: 64, Layers: 1, Heads: 4, Vocab: 200, MaxPositions: 8, TypeVocab: 2, LNEps: 1e-12}, []int{16, 1}, 4)
	long := []int32{101, 1, 2, 3, 4, 5, 6, 7, 8, 9, 102}
	inputs := [][]int32{{101, 5, 102}, long}
	np, err := NewNetworkPredictor(net, inputs, 2)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(inputs[1]); n != 8 || inputs[1][7] != 102 {
		t.Fatalf("long input not cut to 8 positions ending in [SEP]: %v", inputs[1])
	}
	// Run up front, batched: the same as the network one prompt at a time.
	for i, ids := range inputs {
		one, _ := net.Predict([][]int32{ids}, nil)
		if np.Totals[i] != float64(one[0]) || np.Failed != 0 {
			t.Fatalf("request %d: %v batched, %v alone", i, np.Totals[i], one[0])
		}
	}
	r := &policies.Request{Index: 0, OutputTokens: 50}
	v0, v3 := np.Predict(r, 0), np.Predict(r, 3)
	if v0 < 0 || v3 < 0 || v3 > v0 || v0 != v0 {
		t.Fatalf("predictions %v then %v", v0, v3)
	}
	if _, err := NewNetworkPredictor(net, [][]int32{nil}, 2); err == nil {
		t.Fatal("accepted an empty input")
	}
	// The network's errors are the replay's, no longer a silent +Inf.
	if _, err := NewNetworkPredictor(net, [][]int32{{101, 300, 102}}, 2); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Fatalf("an id beyond the network's vocabulary: %v", err)
	}
}

// countingNet counts the predictor network's calls and the sequences in
// each.
type countingNet struct {
	gpu.PredictorNet
	mu    sync.Mutex
	calls []int
}

func (c *countingNet) Predict(ids [][]int32, mask [][]int32) ([]float32, error) {
	c.mu.Lock()
	c.calls = append(c.calls, len(ids))
	c.mu.Unlock()
	return c.PredictorNet.Predict(ids, mask)
}

// The predictor calls are made as the config says: batched, a call may
// hold several requests; with SyncPredictions (the vLLM patch's way, +sync
// in --policy) every call holds one, and the same predictions take more
// calls.
func TestSyncPredictionsCallOneAtATime(t *testing.T) {
	count := func(sync bool) []int {
		tr, cfg := tinySetup(t, "isrtf", 200)
		cfg.TimeScale, cfg.Workers, cfg.SyncPredictions = 1e-9, 1, sync
		cfg.Engine.LazyPredictions = false // predict at every arrival and window
		net := &countingNet{}
		inner := cfg.NewNet
		cfg.NewNet = func(i int) (gpu.PredictorNet, error) {
			n, err := inner(i)
			net.PredictorNet = n
			return net, err
		}
		if _, err := Run(context.Background(), tr, cfg); err != nil {
			t.Fatal(err)
		}
		return net.calls[1:] // the first is the warm-up
	}
	batched, sync := count(false), count(true)
	if slices.Max(batched) < 2 {
		t.Fatalf("batched calls %v: none held several requests", batched)
	}
	if slices.Max(sync) != 1 || len(sync) <= len(batched) {
		t.Fatalf("sync calls %v (batched %v): want one request a call, so more calls", sync, batched)
	}
}
