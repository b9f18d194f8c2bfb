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
	return run(tr, newTraceArrivals(tr, cfg.Overheads), len(tr.Requests), cfg)
}

// RunStream simulates the requests of st, taken as the run goes: the
// trace is never held whole. The run keeps no records, so cfg.OnRecord
// must take them, and its predictor must need no whole trace (a noisy one
// is given its sigma, not fitted to a target error: see PredictorFor), nor
// its requests overheads before they join (they could reorder them).
// After the run, st.Err says whether every request was read; a run that
// ended early for want of them is no run of the trace.
func RunStream(st *traces.Stream, cfg Config) (*Result, error) {
	switch {
	case cfg.OnRecord == nil:
		return nil, fmt.Errorf("a streamed run keeps no records: Config.OnRecord must take them")
	case NeedsTrace(cfg):
		return nil, fmt.Errorf("predictor %s reads the whole trace: a streamed run cannot have it", cfg.Predictor.Kind)
	case cfg.Overheads.PerRequest > 0 || cfg.Overheads.PerPromptToken > 0:
		return nil, fmt.Errorf("overheads before joining can reorder requests: a streamed run cannot have them")
	}
	return run(nil, streamArrivals{st}, 0, cfg)
}

// NeedsTrace reports whether a run under cfg must have its whole trace
// before it starts: its noisy predictor is fitted to a target error over
// every request, or its predictions are recorded in the trace.
func NeedsTrace(cfg Config) bool {
	if !ReadsPredictor(cfg) {
		return false
	}
	switch spec := cfg.Predictor; spec.Kind {
	case "recorded":
		return true
	case "noisy":
		return spec.MAE > 0
	}
	return false
}

// arrivals gives a run its requests in the order they join an engine.
type arrivals interface {
	// peek is the next: the request, its index (its trace position)
	// and when it joins; ok is false when none is left.
	peek() (r *traces.Request, index int, at float64, ok bool)
	pop()
}

// traceArrivals are a trace's requests, each joining at its arrival or,
// with overheads before joining, after them (order[k] is the k-th to
// join, at joins[k]).
type traceArrivals struct {
	reqs  []traces.Request
	next  int
	order []int
	joins []float64
}

func newTraceArrivals(tr *traces.Trace, oh cost.Overheads) *traceArrivals {
	a := &traceArrivals{reqs: tr.Requests}
	if oh.PerRequest > 0 || oh.PerPromptToken > 0 {
		reqs := tr.Requests
		a.order = make([]int, len(reqs))
		a.joins = make([]float64, len(reqs))
		for i := range a.order {
			a.order[i] = i
		}
		at := func(i int) float64 {
			return reqs[i].Arrival + oh.PerRequest + oh.PerPromptToken*float64(reqs[i].PromptTokens)
		}
		sort.SliceStable(a.order, func(x, y int) bool { return at(a.order[x]) < at(a.order[y]) })
		for k, i := range a.order {
			a.joins[k] = at(i)
		}
	}
	return a
}

func (a *traceArrivals) peek() (*traces.Request, int, float64, bool) {
	switch {
	case a.next >= len(a.reqs):
		return nil, 0, 0, false
	case a.order == nil:
		return &a.reqs[a.next], a.next, a.reqs[a.next].Arrival, true
	}
	i := a.order[a.next]
	return &a.reqs[i], i, a.joins[a.next], true
}

func (a *traceArrivals) pop() { a.next++ }

// streamArrivals are a stream's requests, each joining at its arrival.
type streamArrivals struct{ st *traces.Stream }

func (a streamArrivals) peek() (*traces.Request, int, float64, bool) {
	r, ok := a.st.Peek()
	if !ok {
		return nil, 0, 0, false
	}
	return r, a.st.Taken(), r.Arrival, true
}

func (a streamArrivals) pop() { a.st.Pop() }

// run simulates the requests src gives (n of them, 0 when unknown; tr
// the whole trace when there is one) under cfg.
func run(tr *traces.Trace, src arrivals, n int, cfg Config) (*Result, error) {
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
		res.Records = make([]policies.Record, n)
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
	dispatch := policies.NewDispatcher(router, cfg.Workers, n, pred)
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

	// The run's time starts at the first arrival (the first to join
	// may be a later one, with overheads before joining).
	t0 := 0.0
	if tr != nil && len(tr.Requests) > 0 {
		t0 = tr.Requests[0].Arrival
	} else if r, _, _, ok := src.peek(); ok {
		t0 = r.Arrival
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
		_, _, at, more := src.peek()
		if more {
			nextAt = at
		}
		if more && nextAt <= tEnd {
			// Every request arriving at this instant joins before idle
			// workers build their next step.
			now := nextAt
			for {
				r, i, at, ok := src.peek()
				if !ok || at != now {
					break
				}
				// One variable for every request: routers see its address,
				// which would move a fresh one to the heap each time.
				req = policies.Request{ID: r.ID, Index: i, Arrival: r.Arrival, PromptTokens: r.PromptTokens, OutputTokens: r.OutputTokens, Priority: r.Priority,
					Content: policies.NewContent(r.HashIDs, r.HashBlock, r.SessionKey())}
				w := ws[dispatch.Route(&req)]
				w.core.Add(req, now)
				src.pop()
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
