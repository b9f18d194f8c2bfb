package sim

import (
	"fmt"
	"math"
	"sort"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/internal/hist"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/traces"
)

// Config is one simulated run.
type Config struct {
	Engine    policies.Config
	Policy    string
	Mode      policies.Rerank // for isrtf and srpt-oracle
	Predictor predictor.Spec
	PredCost  predictor.Cost
	Cost      cost.StepCoster
	Workers   int
	Router    string
	Seed      uint64 // seeds the noisy predictor
	// Check verifies the core's invariants after every step, the steady
	// set's included (tests use it; it costs time).
	Check bool
	// TokenByToken visits every running request at every step, where the
	// simulator would let the core keep steady decodes lazily (policies.
	// Scheduler.SumsOnly): the reference the shortcut is checked against.
	TokenByToken bool
	// KeepHistory keeps every prediction in the records.
	KeepHistory bool
	// SyncPredictions prices each predictor call as its own batch (the
	// vLLM patch calls the predictor per request, synchronously); else the
	// calls before a step are one batch (ELIS's frontend).
	SyncPredictions bool
	// Overheads delay each request before it joins an engine and each
	// token on its way back (zero: none).
	Overheads cost.Overheads
	// OnRecord, when set, gets each request's record as soon as it is
	// final (finished or rejected) and the result keeps none: a run of
	// millions of requests streams them out instead of holding them. The
	// record is the callee's to read during the call only.
	OnRecord func(*policies.Record) error
}

// Result is what a run produced.
type Result struct {
	Policy   string
	Records  []policies.Record // in trace order; nil with Config.OnRecord
	Gaps     hist.H            // every inter-token gap
	Stats    policies.Stats    // summed over workers
	Makespan float64           // time from the first arrival to the last finish
	Sigma    float64           // the noisy predictor's log-normal sigma
}

// worker is one engine replica.
type worker struct {
	id    int
	core  *policies.Scheduler
	price cost.StepCoster // its own: it keeps its last step's terms
	busy  bool
	until float64
	// stretch: how many steps after the one built are its copies (the
	// core's Stretch), built being that step as priced.
	stretch int
	built   policies.Batch
}

// maxStretch bounds how far ahead a quiet stretch is looked for: an
// arrival or a finish ends most stretches sooner (at 32 instead, a doubled
// output length's run had 8% more stretches), and the rest go on from a
// new look at the next step.
const maxStretch = 256

// PredictorFor builds the predictor a run uses, and the sigma of a noisy one.
func PredictorFor(spec predictor.Spec, tr *traces.Trace, k int, seed uint64) (policies.Predictor, float64, error) {
	switch spec.Kind {
	case "", "oracle":
		return predictor.Oracle{}, 0, nil
	case "constant":
		return predictor.Constant(spec.Value), 0, nil
	case "noisy":
		sigma := spec.Sigma
		if spec.MAE > 0 {
			jobs := make([]predictor.Job, len(tr.Requests))
			for i, r := range tr.Requests {
				jobs[i] = predictor.Job{Index: i, Output: r.OutputTokens}
			}
			sigma = predictor.SigmaForMAE(jobs, k, seed, spec.MAE)
		}
		return predictor.Noisy{Sigma: sigma, Seed: seed}, sigma, nil
	case "recorded":
		rec := make(predictor.Recorded, len(tr.Requests))
		any := false
		for i, r := range tr.Requests {
			for _, p := range r.Predictions {
				rec[i] = append(rec[i], predictor.Point{Generated: p.Generated, Remaining: p.Remaining})
				any = true
			}
		}
		if !any {
			return nil, 0, fmt.Errorf("predictor recorded: trace %q has no recorded predictions", tr.Name)
		}
		return rec, 0, nil
	case "network":
		return nil, 0, fmt.Errorf("predictor network: the network's own predictions need real execution (elis-sim replay); the simulator takes oracle, noisy, recorded or constant")
	}
	return nil, 0, fmt.Errorf("unknown predictor %q", spec.Kind)
}

// Run simulates tr under cfg.
func Run(tr *traces.Trace, cfg Config) (*Result, error) {
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("workers %d: want >= 1", cfg.Workers)
	}
	if cfg.Cost == nil {
		return nil, fmt.Errorf("no cost model")
	}
	if cfg.Engine.PredictionInterval == 0 {
		cfg.Engine.PredictionInterval = 50
	}
	pol, err := policies.New(cfg.Policy, cfg.Mode)
	if err != nil {
		return nil, err
	}
	spec, predCost := cfg.Predictor, cfg.PredCost
	if pol.Traits().Oracle {
		spec, predCost = predictor.Spec{Kind: "oracle"}, predictor.Cost{} // an upper bound: perfect and free
	}
	if !pol.Predictive() {
		predCost = predictor.Cost{}
	}
	router, err := policies.NewRouter(cfg.Router)
	if err != nil {
		return nil, err
	}
	// A predictor is built (and a noisy one fitted) only for a policy or
	// router that reads it.
	var pred policies.Predictor
	var sigma float64
	if readsPredictor(pol, router) {
		if pred, sigma, err = PredictorFor(spec, tr, cfg.Engine.PredictionInterval, cfg.Seed); err != nil {
			return nil, err
		}
	}
	res := &Result{Policy: pol.Name(), Sigma: sigma}
	if cfg.OnRecord == nil {
		res.Records = make([]policies.Record, len(tr.Requests))
	}
	ws := make([]*worker, cfg.Workers)
	for i := range ws {
		core, err := policies.NewScheduler(cfg.Engine, pol)
		if err != nil {
			return nil, err
		}
		core.KeepHistory = cfg.KeepHistory
		// The simulator prices steps from their sums: the core keeps
		// steady decodes lazily (cost per event); the reference visits
		// every request.
		core.SumsOnly = !cfg.TokenByToken
		core.OnGap = func(g float64, n int) { res.Gaps.AddN(g, uint64(n)) }
		core.OnGaps = func(gs []float64, n int) { res.Gaps.AddEach(gs, uint64(n)) }
		ws[i] = &worker{id: i, core: core, price: cost.ForRun(cfg.Cost)}
	}
	dispatch := policies.NewDispatcher(router, cfg.Workers, len(tr.Requests), pred)
	var answers []float64
	var req policies.Request

	var sinkErr error
	var recs []policies.Record // a step's, reused
	collect := func(w *worker) {
		recs = w.core.AppendFinished(recs[:0])
		for i := range recs {
			r := &recs[i]
			r.Worker = w.id
			if c := cfg.Overheads.PerOutputToken; c > 0 && r.FirstToken >= 0 {
				r.FirstToken += c
				r.Finish += c
			}
			if cfg.OnRecord == nil {
				res.Records[r.Index] = *r
			} else if sinkErr == nil {
				sinkErr = cfg.OnRecord(r)
			}
			dispatch.Done(r.Index)
		}
	}
	// A lone worker that keeps steady decodes runs quiet stretches of
	// steps in one go (DESIGN.md rule 22); with several, their steps
	// interleave as stepping would have them.
	quiet := cfg.Workers == 1 && !cfg.TokenByToken
	var ends []float64    // a stretch's step ends
	nextAt := math.Inf(1) // the next arrival, as the loop last found it
	// end is when step b, started by w at now, ends. A stretch's steps
	// are priced by cost.StretchEnds to the same bits (they make no
	// predictions: their predictor cost is zero).
	end := func(w *worker, now float64, b *policies.Batch) float64 {
		return now + w.price.StepTime(b) + predCost.StepSeconds(b.Predictions, b.PredictionTokens, cfg.SyncPredictions, cfg.Engine.AsyncPredictions)
	}
	start := func(w *worker, now float64) error {
		// The core asks for its predictions; the simulator answers at
		// once, as the patch's synchronous predictor call would.
		answers = policies.AnswerAll(w.core, pred, answers)
		b := w.core.Next(now)
		for b.Wait {
			answers = policies.AnswerAll(w.core, pred, answers)
			b = w.core.Next(now)
		}
		// Asynchronous asks of this step: answered beside it.
		answers = policies.AnswerAll(w.core, pred, answers)
		if cfg.Check {
			if err := w.core.CheckInvariants(); err != nil {
				return fmt.Errorf("worker %d: %w", w.id, err)
			}
		}
		if b.Empty() {
			if !w.core.Idle() {
				return fmt.Errorf("worker %d stalled at t=%.3f with %d running and %d waiting", w.id, now, w.core.Running(), w.core.Waiting())
			}
			w.busy = false
			return nil
		}
		w.busy = true
		w.until = end(w, now, b)
		if quiet {
			// Look no further ahead than the step in which the next
			// request is likely to arrive (steps grow as contexts do: the
			// pricing stops there).
			limit := maxStretch
			if d := w.until - now; d > 0 && nextAt-w.until < d*maxStretch {
				limit = int((nextAt-w.until)/d) + 2
			}
			if w.stretch = w.core.Stretch(limit); w.stretch > 0 {
				w.built = *b
			}
		}
		return nil
	}

	reqs := tr.Requests
	next := 0
	t0 := 0.0
	if len(reqs) > 0 {
		t0 = reqs[0].Arrival
	}
	// A request joins its engine after the overheads before scheduling:
	// order[k] is the k-th to join, at joins[k].
	var order []int
	var joins []float64
	oh := cfg.Overheads
	if oh.PerRequest > 0 || oh.PerPromptToken > 0 {
		order = make([]int, len(reqs))
		joins = make([]float64, len(reqs))
		for i := range order {
			order[i] = i
		}
		at := func(i int) float64 {
			return reqs[i].Arrival + oh.PerRequest + oh.PerPromptToken*float64(reqs[i].PromptTokens)
		}
		sort.SliceStable(order, func(a, b int) bool { return at(order[a]) < at(order[b]) })
		for k, i := range order {
			joins[k] = at(i)
		}
	}
	joinAt := func(k int) (int, float64) {
		if order == nil {
			return k, reqs[k].Arrival
		}
		return order[k], joins[k]
	}
	last := t0
	for {
		wi, tEnd := -1, math.Inf(1)
		for i, w := range ws {
			if w.busy && w.until < tEnd {
				wi, tEnd = i, w.until
			}
		}
		nextAt = math.Inf(1)
		if next < len(reqs) {
			_, nextAt = joinAt(next)
		}
		if nextAt <= tEnd && next < len(reqs) {
			// Every request arriving at this instant joins before idle
			// workers build their next step.
			now := nextAt
			for ; next < len(reqs); next++ {
				i, at := joinAt(next)
				if at != now {
					break
				}
				r := &reqs[i]
				// One variable for every request: routers see its address,
				// which would move a fresh one to the heap each time.
				req = policies.Request{ID: r.ID, Index: i, Arrival: r.Arrival, PromptTokens: r.PromptTokens, OutputTokens: r.OutputTokens, Priority: r.Priority,
					Content: policies.NewContent(r.HashIDs, r.HashBlock, r.SessionKey())}
				w := ws[dispatch.Route(&req)]
				w.core.Add(req, now)
				w.stretch = 0 // it waits: the next step may admit it
				collect(w)    // rejections are final at once
			}
			for _, w := range ws {
				if !w.busy && !w.core.Idle() {
					if err := start(w, now); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		if wi < 0 {
			break
		}
		w := ws[wi]
		if w.stretch > 0 {
			// Price the stretch's steps as start would (end), up to the
			// step in which the next request arrives, run all but the
			// last at once, and let the core build the last: it ends as
			// any step does (a request may arrive in it, or it may finish
			// some).
			ends = cost.StretchEnds(w.price, append(ends[:0], tEnd), &w.built, tEnd, w.stretch, nextAt)
			k := len(ends) - 1
			w.core.Advance(ends[:k])
			w.stretch, w.until = 0, ends[k]
			continue
		}
		w.core.Complete(tEnd)
		last = math.Max(last, tEnd)
		collect(w)
		if err := start(w, tEnd); err != nil {
			return nil, err
		}
	}
	if sinkErr != nil {
		return nil, sinkErr
	}
	res.Makespan = last - t0
	for _, w := range ws {
		res.Stats.Add(w.core.Stats())
	}
	return res, nil
}

// ReadsPredictor says whether a run under cfg reads its predictor: its
// policy is predictive or its router routes by predicted work.
func ReadsPredictor(cfg Config) bool {
	pol, err := policies.New(cfg.Policy, cfg.Mode)
	if err != nil {
		return false
	}
	router, err := policies.NewRouter(cfg.Router)
	return err == nil && readsPredictor(pol, router)
}

func readsPredictor(pol policies.Policy, router policies.Router) bool {
	return pol.Predictive() || router.NeedsWork()
}
