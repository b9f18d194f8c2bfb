package replay

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/elis-sim/elis-sim/engine"
	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/hist"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/traces"
)

// Config is one replay.
type Config struct {
	Engine policies.Config
	Policy string
	Mode   policies.Rerank
	// SyncPredictions runs the predictor network one request at a time,
	// as the vLLM patch calls it, instead of one batch a step.
	SyncPredictions bool
	// Predictor gives the predicted values (oracle, noisy or recorded);
	// nil for non-predictive policies.
	Predictor policies.Predictor
	// NewNet, when set, places the predictor network for worker i (on its
	// GPU), run at every step that follows predictions, batched over them,
	// so its cost is real. Run closes what it returns.
	NewNet  func(worker int) (gpu.PredictorNet, error)
	Workers int
	Router  string
	// TimeScale multiplies the trace's arrival times (0.5 doubles the rate).
	TimeScale float64
	// NewExecutor builds worker i's executor; its cache must have
	// Engine.NumBlocks blocks of Engine.BlockSize tokens.
	NewExecutor func(worker int) (gpu.Executor, error)
	Vocab       int // the served model's vocabulary, for synthetic prompts
	Seed        uint64
	KeepHistory bool
	// Stop, when closed, ends the arrivals: the requests in flight finish
	// and Run returns what completed (a first Ctrl-C).
	Stop <-chan struct{}
}

// Result is what a replay measured. Records holds the requests that
// finished (or were rejected), in trace order; times are wall-clock seconds
// from the start.
type Result struct {
	Records     []policies.Record
	Gaps        hist.H
	Stats       policies.Stats
	Makespan    float64
	Arrived     int
	Interrupted bool // stopped early: Records holds what completed
}

// Run replays tr. Cancelling ctx abandons the requests in flight and
// returns at once with what completed; closing cfg.Stop ends the arrivals
// and lets those in flight finish. The arrivals and the workers run as one
// group: the first to fail cancels the others and Run returns its error
// at once, and no goroutine of Run's outlives it.
func Run(ctx context.Context, tr *traces.Trace, cfg Config) (*Result, error) {
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("workers %d: want >= 1", cfg.Workers)
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	pol, err := policies.New(cfg.Policy, cfg.Mode)
	if err != nil {
		return nil, err
	}
	if pol.Predictive() && cfg.Predictor == nil {
		return nil, fmt.Errorf("policy %s needs a predictor", cfg.Policy)
	}
	router, err := policies.NewRouter(cfg.Router)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	var mu sync.Mutex // guards res, dispatch
	dispatch := policies.NewDispatcher(router, cfg.Workers, len(tr.Requests), cfg.Predictor)
	ws := make([]*engine.Worker, cfg.Workers)
	inbox := make([]chan engine.Submission, cfg.Workers)
	for i := range ws {
		core, err := policies.NewScheduler(cfg.Engine, pol)
		if err != nil {
			return nil, err
		}
		core.KeepHistory = cfg.KeepHistory
		core.OnGap = func(g float64, n int) { mu.Lock(); res.Gaps.AddN(g, uint64(n)); mu.Unlock() }
		exec, err := cfg.NewExecutor(i)
		if err != nil {
			return nil, err
		}
		defer exec.Close()
		if exec.NumBlocks() != cfg.Engine.NumBlocks || exec.BlockSize() != cfg.Engine.BlockSize {
			return nil, fmt.Errorf("worker %d: executor cache %dx%d, engine expects %dx%d blocks", i, exec.NumBlocks(), exec.BlockSize(), cfg.Engine.NumBlocks, cfg.Engine.BlockSize)
		}
		if err := engine.WarmUp(exec, cfg.Vocab); err != nil {
			return nil, fmt.Errorf("worker %d: warming up: %w", i, err)
		}
		ws[i], err = engine.New(engine.Config{ID: i, Core: core, Exec: exec, Vocab: cfg.Vocab, Seed: cfg.Seed,
			SyncPredictions: cfg.SyncPredictions, Predictor: cfg.Predictor})
		if err != nil {
			return nil, err
		}
		if cfg.NewNet != nil {
			net, err := cfg.NewNet(i)
			if err != nil {
				return nil, fmt.Errorf("worker %d: predictor network: %w", i, err)
			}
			defer net.Close()
			if _, err := net.Predict([][]int32{{0, 0}}, nil); err != nil {
				return nil, fmt.Errorf("worker %d: warming up the predictor network: %w", i, err)
			}
			ws[i].Net = net
		}
		inbox[i] = make(chan engine.Submission, len(tr.Requests))
	}
	// The clock starts once every executor is built and warm: uploading
	// weights and compiling kernels is no request's time.
	start := time.Now()
	for _, w := range ws {
		w.Start = start
	}

	g, gctx := errgroup.WithContext(ctx)
	stopped := false
	// Arrivals: sleep until each request's time, route it, hand it over.
	g.Go(func() error {
		defer func() {
			for _, ch := range inbox {
				close(ch)
			}
		}()
		timer := time.NewTimer(0)
		defer timer.Stop()
		for i := range tr.Requests {
			r := &tr.Requests[i]
			at := start.Add(time.Duration(r.Arrival * cfg.TimeScale * float64(time.Second)))
			timer.Reset(time.Until(at))
			select {
			case <-cfg.Stop:
				stopped = true
				return nil
			case <-gctx.Done():
				return nil
			case <-timer.C:
			}
			req := policies.Request{ID: r.ID, Index: i, Arrival: r.Arrival * cfg.TimeScale, PromptTokens: r.PromptTokens, OutputTokens: r.OutputTokens, Priority: r.Priority,
				Content: policies.NewContent(r.HashIDs, r.HashBlock, r.SessionKey())}
			mu.Lock()
			w := dispatch.Route(&req)
			res.Arrived++
			mu.Unlock()
			inbox[w] <- engine.Submission{Req: req} // buffered for the whole trace
		}
		return nil
	})
	for i, w := range ws {
		g.Go(func() error {
			return w.Run(gctx, inbox[i], nil, func(recs []policies.Record) {
				mu.Lock()
				defer mu.Unlock()
				for _, r := range recs {
					r.Worker = w.ID
					res.Records = append(res.Records, r)
					dispatch.Done(r.Index)
				}
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(res.Records, func(i, j int) bool { return res.Records[i].Index < res.Records[j].Index })
	for _, w := range ws {
		res.Stats.Add(w.Core.Stats())
	}
	res.Makespan = time.Since(start).Seconds()
	res.Interrupted = stopped || ctx.Err() != nil
	return res, nil
}
