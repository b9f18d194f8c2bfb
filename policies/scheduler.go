package policies

import (
	"container/heap"
	"fmt"
	"math"
	"slices"
)

// Scheduler is the core: a deterministic state machine with no clock and no
// I/O. A driver calls Add when a request arrives, Next to get the next
// step, runs it, and Complete when it ended; TakeFinished hands back the
// records of requests that finished or were rejected. Times are whatever the
// driver says they are.
//
// The core never calls a predictor. Where a policy needs a prediction it
// asks: Asks lists the predictions wanted (a request and the tokens it has
// generated), the driver answers them with Answer before it calls Next
// again, and Next returns a batch marked Wait, building nothing, while an
// ask the step needs is unanswered. So a driver decides how and where
// predictions are made (a lookup in the simulator, a network batched over
// the asks beside a forward pass in replay), and nothing inside the core
// can block or fail.
type Scheduler struct {
	cfg Config
	pol Policy

	running []*Seq
	waiting waitQueue
	slab    []Seq  // FIFO queues: the rest of the slab new Seqs come from
	paused  []*Seq // waiting requests that kept their KV blocks
	kv      *kvPool

	step       int64
	nextOrder  int64
	frontOrder int64
	batch      Batch
	finished   []Record
	// ended holds finished requests' Seqs for Add to reuse (reuses).
	ended []*Seq

	bounds   []*Seq       // running requests at a window (boundary), in running order
	aging    []agingEntry // waiting requests by the step they started waiting
	promoted []*Seq
	capped   capHeap // waiting requests by the step the slowdown cap promotes them

	pendingPred, pendingPredTokens int
	clock                          float64 // the latest time a driver gave
	lazyWaiting                    []*Seq  // waiting requests not yet predicted
	asking, answered               []*Seq  // asynchronous predictions: asked this step, known at the next
	asks                           []Ask   // predictions wanted and not yet answered, in the order asked
	wait                           Batch   // what Next returns while it waits for answers
	// resume is where a step that stopped to ask for predictions goes on
	// once they are answered: the running pass at request i with budget
	// tokens left.
	resume struct {
		on        bool
		i, budget int
		preempted bool
	}

	// KeepHistory keeps every prediction in the records, for the
	// predictor's accuracy, --out and the prediction log.
	KeepHistory bool
	// ReportPredictions lists every prediction the core makes, for the
	// driver to take (TakePredictions) and act on: serve logs the ISRTF
	// fork's [ELIS] lines from them. The core does no I/O itself: it lists
	// the effect, the driver performs it (etcd-io/raft's shape for storage
	// writes).
	ReportPredictions bool
	made              []PredictionMade
	// SumsOnly: the driver reads only a batch's sums (it prices steps, it
	// runs none), so the core may keep steady decodes out of Batch.Items
	// and cost per event (steady.go, DESIGN.md rule 21), and its KV cache
	// counts the blocks nobody named rather than giving them ids (see
	// Seq.BlockTable; the same blocks hit and are evicted). Set it before the
	// first Add. Between Next and Complete such a driver calls nothing but
	// Asks, Answer and CheckInvariants.
	SumsOnly bool
	steady   steadySet
	// OnGap, when set, is called with the inter-token gaps (seconds) of
	// each step: n tokens in a row of the batch that had the same gap (a
	// step's decodes mostly share one), so a driver counting millions of
	// tokens makes a call a run, not a token.
	OnGap func(gap float64, n int)
	// OnGaps, when set, takes a quiet stretch's gaps (Advance) in one
	// call, in step order, each that of n tokens; OnGap takes them one
	// by one otherwise.
	OnGaps  func(gaps []float64, n int)
	gapBuf  []float64
	markBuf []gapMark // markGaps' scratch

	// Config.Slots: each slot's occupied KV cells (kept after its request
	// ends, until the next one replaces them), whether a request holds it,
	// and the step it was last used at (the least recently used free slot
	// is taken).
	slotCells []int64
	slotBusy  []bool
	slotUsed  []int64

	completed float64 // the time the last step ended (Complete's)

	stats Stats
}

type agingEntry struct {
	s     *Seq
	since int64
}

// Stats are the core's counters.
type Stats struct {
	Steps, Preemptions, Rejected, Finished int64
	Aborted                                int64 // dropped by Abort
	Predictions                            int64 // predictions asked for (predictor calls)
	PredictionsSkipped                     int64 // re-predictions skipped while nothing waited
	// PrefixQueried and PrefixHit count the tokens of requests admitted
	// with nothing computed and those of them the prefix cache held
	// (vLLM's prefix cache queries and hits); 0 with caching off.
	PrefixQueried, PrefixHit int64
	// Errors sums the error of every finite prediction, so a run keeps
	// its predictor's accuracy without keeping each prediction.
	Errors PredictionErrors
}

// PredictionErrors accumulates predicted minus actual remaining tokens
// over finite predictions, in constant memory.
type PredictionErrors struct {
	N                      int64
	SumAbs, SumSq          float64 // of the errors
	SumActual, SumActualSq float64 // of the actual remaining tokens
}

// Add counts one prediction; infinite ones (failed predictions) are left
// out.
func (p *PredictionErrors) Add(predicted float64, actual int) {
	if math.IsInf(predicted, 0) {
		return
	}
	e, a := predicted-float64(actual), float64(actual)
	p.N++
	p.SumAbs += math.Abs(e)
	p.SumSq += e * e
	p.SumActual += a
	p.SumActualSq += a * a
}

// Merge adds o's sums to p's.
func (p *PredictionErrors) Merge(o PredictionErrors) {
	p.N += o.N
	p.SumAbs += o.SumAbs
	p.SumSq += o.SumSq
	p.SumActual += o.SumActual
	p.SumActualSq += o.SumActualSq
}

// Add sums o into s (the counters of several workers).
func (s *Stats) Add(o Stats) {
	s.Steps += o.Steps
	s.Preemptions += o.Preemptions
	s.Rejected += o.Rejected
	s.Finished += o.Finished
	s.Aborted += o.Aborted
	s.Predictions += o.Predictions
	s.PredictionsSkipped += o.PredictionsSkipped
	s.PrefixQueried += o.PrefixQueried
	s.PrefixHit += o.PrefixHit
	s.Errors.Merge(o.Errors)
}

// NewScheduler returns a core with an empty cache. A predictive policy's
// core asks its driver for predictions (see Asks).
func NewScheduler(cfg Config, pol Policy) (*Scheduler, error) {
	if cfg.PredictionInterval == 0 {
		cfg.PredictionInterval = 50
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Slots && pol.Predictive() && pol.Rerank() != RerankNone {
		return nil, fmt.Errorf("policy %s: with slots (llama.cpp's scheduling) a running request keeps its slot, so ISRTF orders the waiting queue only: use patch mode", pol.Name())
	}
	s := &Scheduler{cfg: cfg, pol: pol, kv: newKVPool(cfg.NumBlocks, cfg.BlockSize, cfg.PrefixCaching)}
	s.wait.Wait = true
	if cfg.Slots {
		s.slotCells, s.slotBusy, s.slotUsed = make([]int64, cfg.MaxSeqs), make([]bool, cfg.MaxSeqs), make([]int64, cfg.MaxSeqs)
	}
	s.waiting.less = pol.Less
	if pol.Traits().FIFO && cfg.Guard.AgingSteps == 0 && cfg.Guard.SlowdownCap == 0 {
		// Queue order alone (FCFS without the starvation guard): kept
		// by appending, not by a heap (see waitQueue).
		s.waiting.fifo = true
	}
	if b, ok := pol.(*basic); ok && b.byPredicted {
		s.waiting.keyed = true // the keys beside the requests (see waitQueue)
	}
	return s, nil
}

// Predictive reports whether the core's policy asks for predictions.
func (s *Scheduler) Predictive() bool { return s.pol.Predictive() }

// Stats returns the counters so far.
func (s *Scheduler) Stats() Stats { return s.stats }

// PrefixCaching reports whether the core caches prefixes: then each
// request's BlockTable names the blocks it uses.
func (s *Scheduler) PrefixCaching() bool { return s.kv.caching }

// AsyncPredictions reports whether predictions run beside the forward
// pass, known one step late (drivers price them at nothing).
func (s *Scheduler) AsyncPredictions() bool { return s.cfg.AsyncPredictions }

// NumBlocks is the KV cache's capacity in blocks.
func (s *Scheduler) NumBlocks() int { return s.cfg.NumBlocks }

// FreeBlocks is the number of unallocated KV blocks.
func (s *Scheduler) FreeBlocks() int { return s.kv.free }

// Running and Waiting are the queue lengths.
func (s *Scheduler) Running() int { return len(s.running) }
func (s *Scheduler) Waiting() int { return s.waiting.Len() }

// Idle reports whether no request is running or waiting.
func (s *Scheduler) Idle() bool { return len(s.running) == 0 && s.waiting.Len() == 0 }

func (s *Scheduler) blocksFor(tokens int) int {
	return (tokens + s.cfg.BlockSize - 1) / s.cfg.BlockSize
}

// Add submits a request that arrived at now. A request that can never be
// served (longer than the model's context or the whole KV cache) is
// rejected at once and its record is ready in TakeFinished.
func (s *Scheduler) Add(r Request, now float64) {
	q := s.newSeq(r)
	q.serial = uint64(s.nextOrder)
	if s.kv.caching {
		q.shared = s.kv.sharedBlocks(q)
	}
	q.arrived = s.step
	s.nextOrder++
	total := r.PromptTokens + r.OutputTokens
	switch {
	case total > s.cfg.MaxModelLen:
		s.reject(q, fmt.Sprintf("prompt+output %d tokens > max_model_len %d", total, s.cfg.MaxModelLen))
		return
	case s.blocksFor(total) > s.cfg.NumBlocks:
		s.reject(q, fmt.Sprintf("needs %d KV blocks, the cache holds %d", s.blocksFor(total), s.cfg.NumBlocks))
		return
	}
	s.clock = now
	if s.pol.Predictive() {
		if s.cfg.LazyPredictions && !s.queued(1) {
			// It goes in at the next step whatever it is predicted to be.
			q.lazy = true
			s.stats.PredictionsSkipped++
		} else {
			s.want(q, now)
		}
	}
	s.enqueue(q, false)
}

// queued reports whether, with extra more requests waiting, more would
// wait than the batch has free places: then the queue's order decides who
// goes first, and predictions matter. (Under memory pressure order matters
// with free places too; lazy predictions do not see that.)
func (s *Scheduler) queued(extra int) bool {
	return s.waiting.Len()+extra > s.cfg.MaxSeqs-len(s.running)
}

// rankLazy asks for the predictions of the waiting requests whose
// prediction was deferred, now that they must be ranked against others.
func (s *Scheduler) rankLazy() {
	for _, q := range s.lazyWaiting {
		if q.lazy && q.state == stWaiting {
			s.want(q, s.clock)
		}
	}
	clear(s.lazyWaiting)
	s.lazyWaiting = s.lazyWaiting[:0]
}

func (s *Scheduler) reject(q *Seq, why string) {
	q.state = stRejected
	q.rec.rejected = why
	s.stats.Rejected++
	s.finished = append(s.finished, q.record())
}

// enqueue puts q in the waiting queue; front puts it ahead of every other
// request of equal policy key (vLLM's place for preempted requests).
func (s *Scheduler) enqueue(q *Seq, front bool) {
	if front {
		s.frontOrder--
		q.order = s.frontOrder
	}
	q.state = stWaiting
	q.waitSince = s.step
	if s.cfg.LazyPredictions && s.pol.Predictive() {
		if q.lazy {
			s.lazyWaiting = append(s.lazyWaiting, q)
		}
		if len(s.lazyWaiting) > 0 && s.queued(1) {
			// A queue forms: its order now matters.
			if q.lazy {
				s.want(q, s.clock)
			}
			s.rankLazy()
		}
	}
	s.waiting.Push(q)
	if s.cfg.Guard.SlowdownCap > 0 && q.promoted == 0 {
		switch {
		case !math.IsInf(q.Initial, 0):
			s.timeCap(q)
		case q.asked:
			q.capLater = true // its first prediction is asked for: the cap starts from it
		}
	}
	if s.cfg.Guard.AgingSteps > 0 {
		s.aging = append(s.aging, agingEntry{q, s.step})
	}
}

// timeCap sets the step at which the slowdown cap promotes waiting q.
func (s *Scheduler) timeCap(q *Seq) {
	l := math.Max(q.Initial, 1)
	rem := math.Max(l-float64(q.Generated), 1)
	q.capEpoch++
	heap.Push(&s.capped, capEntry{at: q.arrived + int64(math.Ceil(s.cfg.Guard.SlowdownCap*l-rem)), q: q, epoch: q.capEpoch})
}

// Ask is a prediction the core wants: the remaining output tokens of
// Request once it has generated Generated tokens (the predictor reads its
// prompt and that much output, at most PredictorInputCap tokens).
type Ask struct {
	Request   *Request // the core's copy: read it, do not change it
	Generated int

	seq       *Seq
	at        float64 // when it was asked
	prev      float64 // the prediction it replaces
	remaining int     // the truth, for the predictor's accuracy
}

// want asks for q's prediction at now.
func (s *Scheduler) want(q *Seq, now float64) {
	q.lastPred = q.Generated
	q.lazy = false
	if s.cfg.AsyncPredictions {
		s.asking = append(s.asking, q)
	} else {
		q.asked = true
	}
	s.pendingPred++
	s.pendingPredTokens += min(q.Tokens(), PredictorInputCap)
	s.stats.Predictions++
	s.asks = append(s.asks, Ask{Request: &q.Request, Generated: q.Generated, seq: q, at: now, prev: q.Predicted, remaining: q.Remaining()})
}

// Asks lists the predictions the core wants and has not been told, in the
// order it asked for them. The slice is the core's: it is valid until the
// next call to Answer, Add, Next, Schedule or Complete.
func (s *Scheduler) Asks() []Ask { return s.asks }

// Answer gives the predicted remaining output tokens for every ask Asks
// lists, in its order. A value that is NaN or negative is a failed
// prediction, which counts as +Inf (the patch then serves that request
// first come, first served). Answers with AsyncPredictions set are known
// one step late (see Config); others at once.
func (s *Scheduler) Answer(remaining []float64) {
	if len(remaining) != len(s.asks) {
		panic(fmt.Sprintf("policies: %d answers to %d asks", len(remaining), len(s.asks)))
	}
	for i := range s.asks {
		a := &s.asks[i]
		q, p := a.seq, remaining[i]
		if math.IsNaN(p) || p < 0 {
			p = math.Inf(1)
		}
		if s.cfg.AsyncPredictions {
			q.next = p
		} else {
			q.asked = false
			s.know(q, p)
			if q.state == stWaiting {
				s.waiting.Fix(q)
			}
			if q.capLater {
				q.capLater = false
				if q.state == stWaiting && q.promoted == 0 && !math.IsInf(q.Initial, 0) {
					s.timeCap(q)
				}
			}
		}
		s.stats.Errors.Add(p, a.remaining)
		if s.KeepHistory {
			q.rec.predictions = append(q.rec.predictions, Prediction{At: a.at, Generated: a.Generated, Predicted: p, Actual: a.remaining})
		}
		if s.ReportPredictions {
			s.made = append(s.made, PredictionMade{ID: q.ID, Index: q.Index, At: a.at, Generated: a.Generated, Predicted: p,
				Previous: a.prev, First: a.Generated == 0 && math.IsInf(a.prev, 1)})
		}
	}
	clear(s.asks)
	s.asks = s.asks[:0]
}

// PredictionMade is one prediction the core made: of request ID (Index)
// at now, after Generated tokens; Previous is the one it replaces (+Inf
// before the first), First whether it is the request's first.
type PredictionMade struct {
	ID        string
	Index     int
	At        float64
	Generated int
	Predicted float64
	Previous  float64
	First     bool
}

// TakePredictions returns the predictions made since the last call, with
// ReportPredictions set, and forgets them.
func (s *Scheduler) TakePredictions() []PredictionMade {
	out := s.made
	s.made = nil
	return out
}

// know makes p q's prediction: the one the core ranks it by.
func (s *Scheduler) know(q *Seq, p float64) {
	q.Predicted = p
	if !q.initSet {
		q.initSet = true
		q.Initial = p + float64(s.generated(q)) // the total it implies
	}
}

// answer makes known the asynchronous predictions asked for before the
// last step, and moves those asked since to wait one step.
func (s *Scheduler) answer() {
	for _, q := range s.answered {
		if q.state == stWaiting || q.state == stRunning {
			s.know(q, q.next)
			if q.state == stWaiting {
				s.waiting.Fix(q)
			}
		}
	}
	clear(s.answered)
	s.answered, s.asking = s.asking, s.answered[:0]
}

// alloc gives running request q blocks for tokens more tokens, reporting
// false when the cache is short.
func (s *Scheduler) alloc(q *Seq, tokens int) bool {
	upTo := q.Computed + tokens
	if upTo <= q.blocks*s.cfg.BlockSize {
		// The blocks q holds suffice (most decodes): at most a block
		// filled to cache.
		if s.kv.caching && q.hashed < q.shared && upTo >= (int(q.hashed)+1)*s.cfg.BlockSize {
			s.kv.cache(q, upTo)
		}
		return true
	}
	if s.kv.need(q, upTo, nil) > s.kv.free {
		return false
	}
	s.kv.grow(q, upTo, nil)
	return true
}

// admit gives waiting request q its blocks for this step: with prefix
// caching, a request holding no blocks first takes its cached prefix
// (DESIGN.md rule 8), and computes the rest, capped by the threshold and budget.
// When the cache is short even after freeing paused requests, it changes
// nothing and reports false.
func (s *Scheduler) admit(q *Seq, budget int) (int, bool) {
	base := q.Computed // a paused request kept its blocks
	var hits []int32
	fresh := s.kv.caching && q.blocks == 0
	if fresh {
		base = s.kv.lookup(q)
		hits = s.kv.hits
	}
	ask := s.chunk(q.Tokens()-base, budget)
	for s.kv.need(q, base+ask, hits) > s.kv.free {
		if !s.freePaused(q) {
			return 0, false
		}
	}
	if fresh {
		q.Computed = base
		q.rec.cachedTokens += int32(base)
		s.stats.PrefixQueried += int64(q.Tokens())
		s.stats.PrefixHit += int64(base)
	}
	s.kv.grow(q, base+ask, hits)
	return ask, true
}

// freeBlocks gives back q's blocks to be readmitted later, upTo being
// the tokens its last allocation covered (its computed tokens, and the
// step's when it was scheduled in the step being built).
func (s *Scheduler) freeBlocks(q *Seq, upTo int) {
	if s.kv.caching {
		s.kv.keep(q, upTo)
	}
	s.kv.release(q, false)
	q.Computed = 0
}

// Next is the step a driver runs at now: Schedule, repeated while it
// builds an empty step but work remains. An empty step with requests
// running follows a running pass that stopped at a request preempting
// itself (DESIGN.md rule 3); with shared prefix blocks this can happen
// several times in a row, since freeing a request whose blocks others
// hold frees nothing. Each repetition preempts a running request, and
// with none running the head of the queue is admitted, so Next returns an
// empty batch only when the core is Idle.
//
// While the core waits for answers to its asks, Next returns a batch
// marked Wait at once: answer (see Asks) and call it again.
func (s *Scheduler) Next(now float64) *Batch {
	b := s.Schedule(now)
	for n := len(s.running); b.Empty() && !b.Wait && !s.Idle() && n >= 0; n-- {
		b = s.Schedule(now)
	}
	return b
}

// Schedule builds one step at time now, as vLLM's scheduler does: it may
// be empty with work remaining (see Next, which drivers call), or marked
// Wait while it needs answers (see Asks). The batch is valid until the
// next call.
func (s *Scheduler) Schedule(now float64) *Batch {
	if len(s.asks) > 0 {
		return &s.wait // every ask is answered before a step is built
	}
	s.clock = now
	if s.step == 0 && s.SumsOnly {
		s.kv.count() // no block table is read: unnamed blocks are counted
	}
	b := &s.batch
	budget := s.cfg.MaxBatchedTokens
	preempted := false
	i := 0
	if s.resume.on {
		// The step stopped to ask for predictions: go on where it stopped.
		s.resume.on = false
		i, budget, preempted = s.resume.i, s.resume.budget, s.resume.preempted
	} else {
		lazy := s.cfg.LazyPredictions && len(s.lazyWaiting) > 0 && s.queued(0) // the batch filled up around them
		if lazy && !s.cfg.AsyncPredictions {
			if s.rankLazy(); len(s.asks) > 0 {
				return &s.wait
			}
		}
		s.step++
		if s.cfg.AsyncPredictions {
			s.answer()
			if lazy {
				s.rankLazy()
			}
		}
		b.reset(s.step)
		b.Predictions, b.PredictionTokens = s.pendingPred, s.pendingPredTokens
		s.pendingPred, s.pendingPredTokens = 0, 0
		if s.cfg.Guard.AgingSteps > 0 {
			s.age()
		}
		if s.cfg.Guard.SlowdownCap > 0 {
			s.capSlowdown()
		}
		if s.pol.Rerank() == RerankPause {
			s.displace()
		}
	}

	if s.cfg.Slots && i == 0 {
		s.slotOrder() // decodes first, then prompts in slot order (DESIGN.md rule 20)
	}
	if i == 0 {
		// The steady head of the running list is scheduled first, the
		// others as usual after it (DESIGN.md rule 21).
		if p, stop, ok := s.steadyPass(budget); ok {
			preempted = p
			i, budget = s.steady.n, budget-s.steady.n
			if stop {
				i = len(s.running)
			}
		} else {
			s.settle()
		}
	}
	// Running requests first, in running-list order (DESIGN.md rule 2).
	for ; i < len(s.running) && budget > 0; i++ {
		q := s.running[i]
		ask := s.ask(q, budget)
		if ask <= 0 {
			continue
		}
		scheduled := true
		for !s.alloc(q, ask) {
			if s.freePaused(nil) {
				continue
			}
			if s.wantVictims() {
				// Victims are chosen by predictions not yet made: stop
				// until they are answered, and go on from this request.
				s.resume.on, s.resume.i, s.resume.budget, s.resume.preempted = true, i, budget, preempted
				return &s.wait
			}
			vi := s.victim()
			v := s.running[vi]
			preempted = true
			took := 0 // v's tokens in this step, whose blocks it took
			switch {
			case v.inBatch:
				took = b.drop(v)
			case v.steady:
				took = s.dropSteady(v)
			}
			budget += took
			s.preempt(vi, took)
			if vi < i {
				i--
			}
			if v == q {
				scheduled = false
				break
			}
			ask = s.ask(q, budget) // the budget may have grown back
		}
		if !scheduled {
			break
		}
		s.place(q, ask, now)
		budget -= ask
	}

	// Then waiting requests, only if nothing was preempted (DESIGN.md rule 5).
	for !preempted && budget > 0 && len(s.running) < s.cfg.MaxSeqs && s.waiting.Len() > 0 {
		q := s.waiting.Peek()
		ask, ok := s.admit(q, budget)
		if !ok {
			break // head-of-line: admission stops for this step
		}
		s.waiting.Pop()
		s.unpause(q)
		if s.cfg.Slots {
			s.takeSlot(q)
		}
		q.state = stRunning
		s.running = append(s.running, q)
		s.place(q, ask, now)
		budget -= ask
	}
	if s.waiting.Len() == 0 && len(s.lazyWaiting) > 0 {
		clear(s.lazyWaiting) // all admitted unpredicted: no order to keep
		s.lazyWaiting = s.lazyWaiting[:0]
	}
	if s.cfg.Slots {
		b.KVCells = int64(b.Tokens())
		for _, c := range s.slotCells {
			b.KVCells += c
		}
	}
	s.stats.Steps++
	return b
}

// slotOrder puts the running requests in llama.cpp's batch order: those
// decoding first, then the others (prompts) by slot.
func (s *Scheduler) slotOrder() {
	decoding := func(q *Seq) bool { return q.Generated > 0 && q.Computed == q.Tokens()-1 }
	slices.SortStableFunc(s.running, func(a, b *Seq) int {
		da, db := decoding(a), decoding(b)
		switch {
		case da && !db:
			return -1
		case db && !da:
			return 1
		case da:
			return 0
		}
		return int(a.slot - b.slot)
	})
}

// takeSlot gives admitted q the free slot least recently used (the
// lowest such), whose kept cells its prompt replaces.
func (s *Scheduler) takeSlot(q *Seq) {
	best := -1
	for i, busy := range s.slotBusy {
		if !busy && (best < 0 || s.slotUsed[i] < s.slotUsed[best]) {
			best = i
		}
	}
	q.slot = int32(best)
	s.slotBusy[best] = true
	s.slotCells[best] = 0
}

// leaveSlot frees q's slot at the end of the step; its cells stay.
func (s *Scheduler) leaveSlot(q *Seq) {
	s.slotBusy[q.slot] = false
	s.slotUsed[q.slot] = s.step
}

// ask is how many tokens q computes this step, within budget.
func (s *Scheduler) ask(q *Seq, budget int) int { return s.chunk(q.Tokens()-q.Computed, budget) }

// chunk is how many of left tokens a request computes in one step: at
// most long_prefill_token_threshold (when set) and the budget.
func (s *Scheduler) chunk(left, budget int) int {
	if t := s.cfg.LongPrefillThreshold; t > 0 && left > t {
		left = t
	}
	return min(left, budget)
}

func (s *Scheduler) place(q *Seq, tokens int, now float64) {
	q.inBatch = true
	if q.rec.firstScheduled < 0 {
		q.rec.firstScheduled = now
	}
	s.batch.add(q, tokens)
}

// wantVictims asks for the predictions of the running requests admitted
// unpredicted, which victims are chosen among (lazy predictions), and
// reports whether it asked for any. Asynchronous asks do not stop a step:
// the unpredicted then rank as +Inf, as the patch's failed predictions do.
func (s *Scheduler) wantVictims() bool {
	if !s.cfg.LazyPredictions || !s.pol.Predictive() {
		return false
	}
	n := len(s.asks)
	for _, q := range s.running {
		if q.lazy {
			s.want(q, s.clock)
		}
	}
	return !s.cfg.AsyncPredictions && len(s.asks) > n
}

// victim picks the running request to preempt, honouring the guard:
// promoted requests and, with a preempt limit, those past it are spared
// while another candidate exists.
func (s *Scheduler) victim() int {
	vi := s.pol.Victim(s.running)
	if !s.protected(s.running[vi]) {
		return vi
	}
	cands := make([]*Seq, 0, len(s.running))
	idx := make([]int, 0, len(s.running))
	for i, q := range s.running {
		if !s.protected(q) {
			cands = append(cands, q)
			idx = append(idx, i)
		}
	}
	if len(cands) == 0 {
		return vi
	}
	return idx[s.pol.Victim(cands)]
}

func (s *Scheduler) protected(q *Seq) bool {
	if q.promoted != 0 {
		return true
	}
	lim := s.cfg.Guard.PreemptLimit
	return lim > 0 && !math.IsInf(q.Initial, 0) && float64(s.generated(q)) >= lim*q.Initial
}

// preempt evicts running[i] by recomputation (DESIGN.md rule 4): its blocks are
// freed and it goes to the front of the waiting queue.
func (s *Scheduler) preempt(i, took int) {
	q := s.running[i]
	s.running = append(s.running[:i], s.running[i+1:]...)
	q.inBatch = false
	s.freeBlocks(q, q.Computed+took)
	q.Preemptions++
	s.stats.Preemptions++
	s.batch.Preempted++
	s.enqueue(q, true)
}

// displace is the ELIS paper's re-ranking: a running request that just
// crossed a window boundary is paused, keeping its KV, when a waiting
// request now ranks better and the batch is full.
func (s *Scheduler) displace() {
	bounds := s.bounds // in running order: the order Complete met them
	s.bounds = s.bounds[:0]
	defer clear(bounds)
	for _, q := range bounds {
		if !q.boundary || q.state != stRunning {
			continue
		}
		q.boundary = false
		if len(s.running) < s.cfg.MaxSeqs || s.waiting.Len() == 0 || s.protected(q) || !s.pol.Less(s.waiting.Peek(), q) {
			continue
		}
		if w := s.waiting.Peek(); s.cfg.DisplaceMargin > 0 || s.cfg.DisplaceRatio > 0 {
			lead := q.Predicted - w.Predicted
			if !(lead > s.cfg.DisplaceMargin && lead > s.cfg.DisplaceRatio*q.Predicted) {
				continue // within the hysteresis band: noise, not a better job
			}
		}
		i := s.runningIndex(q)
		if q.steady {
			s.leaveSteady(q)
		}
		s.running = append(s.running[:i], s.running[i+1:]...)
		// A pause is a preemption that keeps the KV cache; it does not stop
		// admission, since admitting the better request is its point.
		q.Preemptions++
		s.stats.Preemptions++
		q.paused = true
		s.paused = append(s.paused, q)
		s.enqueue(q, false)
	}
}

// freePaused frees the KV blocks of the paused request that ranks worst,
// other than keep; it reports false when there is none.
func (s *Scheduler) freePaused(keep *Seq) bool {
	worst := -1
	for i, q := range s.paused {
		if q == keep {
			continue
		}
		if worst < 0 || s.pol.Less(s.paused[worst], q) {
			worst = i
		}
	}
	if worst < 0 {
		return false
	}
	q := s.paused[worst]
	s.paused = append(s.paused[:worst], s.paused[worst+1:]...)
	q.paused = false
	s.freeBlocks(q, q.Computed)
	return true
}

func (s *Scheduler) unpause(q *Seq) {
	if !q.paused {
		return
	}
	q.paused = false
	for i, p := range s.paused {
		if p == q {
			s.paused = append(s.paused[:i], s.paused[i+1:]...)
			return
		}
	}
}

// capSlowdown promotes for good the waiting requests whose projected
// slowdown reached the cap.
func (s *Scheduler) capSlowdown() {
	for len(s.capped) > 0 && s.capped[0].at <= s.step {
		e := heap.Pop(&s.capped).(capEntry)
		q := e.q
		if q.state != stWaiting || q.capEpoch != e.epoch || q.promoted != 0 {
			continue
		}
		q.promoted = capPromoted + s.step // after the aging guard's, in order of promotion
		s.waiting.Fix(q)
	}
}

// capPromoted marks a promotion that never ends.
const capPromoted = 1 << 50

type capEntry struct {
	at    int64
	q     *Seq
	epoch int32
}

// capHeap is a min-heap of deadlines.
type capHeap []capEntry

func (h capHeap) Len() int           { return len(h) }
func (h capHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h capHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *capHeap) Push(x any)        { *h = append(*h, x.(capEntry)) }
func (h *capHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = capEntry{}
	*h = old[:len(old)-1]
	return e
}

// age runs the starvation guard's promotions and demotions.
func (s *Scheduler) age() {
	g := s.cfg.Guard
	kept := s.promoted[:0]
	for _, q := range s.promoted {
		if q.promoted > s.step {
			kept = append(kept, q)
			continue
		}
		q.promoted = 0
		if q.state == stWaiting {
			s.waiting.Fix(q)
			q.waitSince = s.step
			s.aging = append(s.aging, agingEntry{q, s.step})
		}
	}
	s.promoted = kept
	n := 0
	for ; n < len(s.aging) && s.aging[n].since <= s.step-int64(g.AgingSteps); n++ {
		e := s.aging[n]
		q := e.s
		if q.state != stWaiting || q.waitSince != e.since || q.promoted != 0 {
			continue
		}
		q.promoted = s.step + int64(g.PromoteSteps)
		s.waiting.Fix(q)
		s.promoted = append(s.promoted, q)
	}
	s.aging = append(s.aging[:0], s.aging[n:]...)
}

// Complete tells the core that the last batch ended at now: every item
// computed its tokens and each request whose known sequence is now fully
// computed emitted one output token.
func (s *Scheduler) Complete(now float64) {
	prev := s.completed
	s.completed = now
	s.steady.inStep = false
	done := false
	k := s.cfg.PredictionInterval
	// Nothing joins or leaves the queues before the end: whether requests
	// queue stays what it is now.
	queued := s.queued(0)
	runGap, runN := 0.0, 0 // the current run of equal gaps, for OnGap
	if s.batch.Lazy > 0 {
		// The steady requests come first in the step, one gap for all.
		runGap, runN, done = s.steadyComplete(now, prev, queued)
	}
	for _, it := range s.batch.Items {
		q := it.Seq
		q.inBatch = false
		if s.kv.caching && !it.Decode {
			q.rec.prefillTokens += int32(it.Tokens)
		}
		q.Computed += it.Tokens
		if s.cfg.Slots {
			s.slotCells[q.slot] = int64(q.Computed)
		}
		if q.Computed < q.Tokens() {
			continue // a prefill chunk: no token yet
		}
		q.Generated++
		if q.rec.firstToken < 0 {
			q.rec.firstToken = now
		} else {
			gap := now - q.lastToken
			q.rec.maxGap = max(q.rec.maxGap, gap)
			if runN > 0 && gap == runGap {
				runN++
			} else {
				if runN > 0 && s.OnGap != nil {
					s.OnGap(runGap, runN)
				}
				runGap, runN = gap, 1
			}
		}
		q.lastToken = now
		if q.Generated >= q.OutputTokens {
			s.finish(q, now)
			done = true
			continue
		}
		if s.pol.Predictive() && q.Generated-q.lastPred >= k && s.window(q, now, queued) {
			done = true
		}
	}
	if runN > 0 && s.OnGap != nil {
		s.OnGap(runGap, runN)
	}
	if done {
		s.dropEnded()
	}
	if s.steadyOn() {
		s.joinSteady()
	}
}

// window is running q's prediction window at now, queued whether
// requests queue: it predicts (DESIGN.md rules 11-14, 17) and reports
// whether q leaves the running list (resubmission).
func (s *Scheduler) window(q *Seq, now float64, queued bool) bool {
	mode := s.pol.Rerank()
	if s.cfg.LazyPredictions && mode != RerankResubmit && !queued {
		// Nothing waits: no order can change; the next window predicts
		// if something does.
		q.lastPred = q.Generated
		s.stats.PredictionsSkipped++
		return false
	}
	s.want(q, now)
	switch mode {
	case RerankResubmit:
		q.state = stResubmit // leaves running; re-enqueued by dropEnded
		return true
	case RerankPause:
		q.boundary = true // displace looks at it in the next step
		s.bounds = append(s.bounds, q)
	}
	return false
}

// finish ends running q, which made its last token at now.
func (s *Scheduler) finish(q *Seq, now float64) {
	q.state = stFinished
	q.rec.finish = now
	if s.cfg.Slots {
		s.leaveSlot(q)
	}
	s.kv.release(q, true)
	s.kv.forget(q)
	s.stats.Finished++
	s.finished = append(s.finished, q.record())
	if s.reuses() && len(s.ended) < maxEnded {
		s.ended = append(s.ended, q)
	}
}

// maxEnded bounds the finished Seqs kept for reuse: a light load reuses
// them as fast as they end, and an overloaded run's waiting requests
// stay fresh ones, laid out in the order admission walks them.
const maxEnded = 1024

// reuses reports whether Add may give a new request a finished one's Seq:
// a fresh one costs the first touch of its memory (in a light-load run of
// 100k requests, a tenth of the simulator's time). Only where nothing but
// the running list and the queue holds a request while it runs (a core
// whose driver reads sums only, whose policy reads no prediction, with no
// guard, aging or slot) and a stale entry of the steady set's is told by
// its epoch, which a reused Seq keeps moving on.
func (s *Scheduler) reuses() bool {
	return s.SumsOnly && !s.pol.Predictive() && s.cfg.Guard == (Guard{}) && !s.cfg.Slots
}

// seqSlab is how many Seqs a FIFO core allocates at once.
const seqSlab = 256

// newSeq is a new request's Seq, a finished one's when the core reuses
// them and one is there (while few wait: see maxEnded).
func (s *Scheduler) newSeq(r Request) *Seq {
	k := len(s.ended)
	if k == 0 || s.waiting.Len() > maxEnded {
		if !s.waiting.fifo {
			return newSeq(r, s.nextOrder)
		}
		// In queue order requests allocated together finish about
		// together: a slab of them is one allocation, freed about at once
		// (a million requests' allocations were 7% of an FCFS run). Other
		// orders finish them scattered, and a slab would live as long as
		// its last.
		if len(s.slab) == 0 {
			s.slab = make([]Seq, seqSlab)
		}
		q := &s.slab[0]
		s.slab = s.slab[1:]
		return newSeqAt(q, r, s.nextOrder)
	}
	q := s.ended[k-1]
	s.ended[k-1] = nil
	s.ended = s.ended[:k-1]
	epoch := q.sEpoch
	newSeqAt(q, r, s.nextOrder)
	q.sEpoch = epoch + 1
	return q
}

// dropEnded takes the requests that finished or left for resubmission
// out of the running list and re-enqueues the resubmitted, in running
// order: the steady ones first (they lead the list), then the others. The
// list stays whole until all are re-enqueued, as each enqueue reads its
// length.
func (s *Scheduler) dropEnded() {
	n := s.steadyResubmit()
	kept := s.running[:n]
	for _, q := range s.running[n:] {
		switch {
		case q.state == stRunning:
			kept = append(kept, q)
		case q.state == stResubmit:
			// ELIS resubmission: the window's text joins the prompt of a new
			// request, whose KV is rebuilt by a prefill.
			s.freeBlocks(q, q.Computed)
			s.enqueue(q, false)
		}
	}
	clear(s.running[len(kept):])
	s.running = kept
	s.dropSteadyGone()
}

// Abort drops the request with the driver's index, wherever it is (its
// client went away, as vLLM aborts a request): its blocks are freed (those
// others may share stay cached) and its record, marked aborted, is ready
// in TakeFinished.
// It reports whether the request was still in the core.
func (s *Scheduler) Abort(index int, now float64) bool {
	s.settle()
	var q *Seq
	for i, r := range s.running {
		if r.Index == index {
			q = r
			if r.inBatch {
				s.batch.drop(r)
				r.inBatch = false
			}
			s.running = append(s.running[:i], s.running[i+1:]...)
			break
		}
	}
	if q == nil {
		for r := range s.waiting.All() {
			if r.Index == index {
				q = r
				break
			}
		}
		if q != nil {
			s.waiting.Remove(q)
		}
	}
	if q == nil {
		return false
	}
	if q.paused {
		s.unpause(q)
	}
	if s.cfg.Slots && q.state == stRunning {
		s.leaveSlot(q)
	}
	s.kv.release(q, true)
	s.kv.forget(q)
	q.Computed = 0
	q.state = stFinished
	q.rec.rejected = "aborted"
	q.rec.finish = -1
	s.stats.Aborted++
	s.finished = append(s.finished, q.record())
	return true
}

// TakeFinished returns the records of requests that finished or were
// rejected since the last call.
func (s *Scheduler) TakeFinished() []Record {
	out := s.finished
	s.finished = nil
	return out
}

// AppendFinished is TakeFinished appending to dst: the core keeps its
// list's memory, so a driver that reuses dst (the simulator, a million
// records) allocates nothing a step.
func (s *Scheduler) AppendFinished(dst []Record) []Record {
	dst = append(dst, s.finished...)
	clear(s.finished)
	s.finished = s.finished[:0]
	return dst
}

// CheckInvariants verifies the core's accounting; tests and the
// simulator's --check mode call it after every step.
func (s *Scheduler) CheckInvariants() error {
	if err := s.checkSteady(); err != nil {
		return fmt.Errorf("step %d: %w", s.step, err)
	}
	for _, q := range s.ended {
		if q.state != stFinished {
			return fmt.Errorf("step %d: request %s kept for reuse in state %d", s.step, q.ID, q.state)
		}
	}
	var holders []*Seq
	for _, q := range s.running {
		if q.state != stRunning {
			return fmt.Errorf("step %d: request %s in the running list in state %d", s.step, q.ID, q.state)
		}
		if q.steady {
			q.blocks = s.blocksOf(q) // written out for the pool's check
		}
		if c := s.computed(q); q.blocks < s.blocksFor(c) {
			return fmt.Errorf("step %d: request %s has %d computed tokens in %d blocks", s.step, q.ID, c, q.blocks)
		}
		holders = append(holders, q)
	}
	if err := s.waiting.check(); err != nil {
		return fmt.Errorf("step %d: %w", s.step, err)
	}
	for q := range s.waiting.All() {
		if q.blocks != 0 && !q.paused {
			return fmt.Errorf("step %d: waiting request %s holds %d blocks without being paused", s.step, q.ID, q.blocks)
		}
		holders = append(holders, q)
	}
	if err := s.kv.check(holders); err != nil {
		return fmt.Errorf("step %d: %w", s.step, err)
	}
	if len(s.running) > s.cfg.MaxSeqs {
		return fmt.Errorf("step %d: %d running > max_num_seqs %d", s.step, len(s.running), s.cfg.MaxSeqs)
	}
	if n := s.batch.Tokens(); n > s.cfg.MaxBatchedTokens {
		return fmt.Errorf("step %d: %d tokens > budget %d", s.step, n, s.cfg.MaxBatchedTokens)
	}
	if n := s.batch.Seqs(); n > s.cfg.MaxSeqs {
		return fmt.Errorf("step %d: %d sequences in the step > max_num_seqs %d", s.step, n, s.cfg.MaxSeqs)
	}
	return nil
}
