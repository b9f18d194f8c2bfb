package engine

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/synth"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
)

// seqState is what a worker keeps per request beyond the core's view: its
// token ids (synthetic prompt, then generated) and its physical KV blocks.
type seqState struct {
	seq     *policies.Seq // the core's request, once it has been scheduled
	tokens  []int32
	table   []int32 // with prefix caching off: the worker's own mapping
	session uint64
}

// Config is one engine replica: a core and what executes its steps.
type Config struct {
	ID   int
	Core *policies.Scheduler
	// Exec runs every step as a forward pass; its cache must have the
	// core's blocks. Without one, each step lasts what Coster prices it
	// at, on the wall clock, and emits placeholder tokens.
	Exec   gpu.Executor
	Coster cost.StepCoster
	// Net, when set, is the predictor network, run at every step that
	// follows predictions, batched over them, for its cost. PredCost
	// prices those calls instead when there is no network (the cost
	// model's engine).
	Net      gpu.PredictorNet
	PredCost predictor.Cost
	// Predictor answers the core's asks for predictions (a predictive
	// policy's core needs one): a lookup, so answering cannot stall a
	// step; Net, when set, is what the predictor's calls cost.
	Predictor policies.Predictor
	// SyncPredictions makes (or prices) the calls one request at a time,
	// as the vLLM patch makes them (predictor.Cost.StepSeconds), rather
	// than one batched call a step.
	SyncPredictions bool
	Vocab           int // the served model's vocabulary, for synthetic prompts
	Seed            uint64
	Start           time.Time // time 0 of the core's clock
	// OnToken, when set, is called in the worker's goroutine with each
	// token a request generates (its index, the token, how many it has).
	OnToken func(index int, token int32, generated int)
	// AfterStep, when set, is called in the worker's goroutine after each
	// step and after requests join or leave: where a driver reads the
	// core's queues for its metrics.
	AfterStep func(core *policies.Scheduler)
}

// Worker is one engine replica on the wall clock: a core, an executor
// and the mapping of the core's blocks onto the executor's.
type Worker struct {
	Config
	free    []int32
	answers []float64
	seqs    map[int]*seqState // by request index
	live    []*seqState       // those holding physical blocks, in a fixed order
	steps   []gpu.SeqStep
	next    []int32
	// shared: the core caches prefixes, so its block tables are physical.
	shared bool
	early  map[int]bool // aborts that came before their requests
	// busy: the loop went from the last step straight to this one, so this
	// step starts at the last one's deadline, not when the worker got to
	// it (the work between steps is inside a GPU's step time too).
	busy     bool
	deadline time.Time
	// passes counts Run's loop passes: a test's proof that an idle worker
	// blocks rather than polls.
	passes atomic.Int64
}

// New returns a worker for cfg.
func New(cfg Config) (*Worker, error) {
	if cfg.Exec == nil && cfg.Coster == nil {
		return nil, fmt.Errorf("worker %d: neither an executor nor a cost model", cfg.ID)
	}
	if cfg.Vocab < 1 {
		cfg.Vocab = 32000
	}
	if cfg.Core.Predictive() && cfg.Predictor == nil {
		return nil, fmt.Errorf("worker %d: the policy reads predictions and there is no predictor", cfg.ID)
	}
	w := &Worker{Config: cfg, seqs: map[int]*seqState{}, shared: cfg.Core.PrefixCaching()}
	if cfg.Exec != nil {
		for b := cfg.Exec.NumBlocks() - 1; b >= 0; b-- {
			w.free = append(w.free, int32(b))
		}
	}
	return w, nil
}

func (w *Worker) now() float64 { return time.Since(w.Start).Seconds() }

// Submission is a request handed to a worker, with its prompt's token ids
// when the client sent them (nil: synthetic).
type Submission struct {
	Req    policies.Request
	Prompt []int32
}

// Add submits a request. Without token ids its prompt is synthetic (a
// trace has lengths, and random-weight models do not care which tokens):
// tokens a request's content names (hash ids, a session's stream) are
// drawn from that name, so requests the prefix cache deems equal are equal.
func (w *Worker) Add(sub Submission) {
	w.add(sub)
	if i := sub.Req.Index; w.early[i] {
		delete(w.early, i)
		w.Core.Abort(i, w.now())
	}
}

func (w *Worker) add(sub Submission) {
	r := sub.Req
	if sub.Prompt != nil {
		p := make([]int32, len(sub.Prompt), outputRoom(len(sub.Prompt), r.OutputTokens))
		copy(p, sub.Prompt)
		w.seqs[r.Index] = &seqState{tokens: p, session: sessionOf(r.Content)}
		w.Core.Add(r, w.now())
		return
	}
	p := w.tokens().Prompt(make([]int32, 0, outputRoom(r.PromptTokens, r.OutputTokens)), r.Index, r.Content, r.PromptTokens)
	w.seqs[r.Index] = &seqState{tokens: p, session: sessionOf(r.Content)}
	w.Core.Add(r, w.now())
}

// outputRoom is the capacity of a request's token slice: its prompt and
// room for the first outputs. A request's output limit (a chat's default
// is the whole context) says how many tokens it may generate, not how many
// it will: memory follows the tokens generated.
func outputRoom(prompt, output int) int { return prompt + min(output, 256) }

func sessionOf(c *policies.Content) uint64 {
	if c == nil {
		return 0
	}
	return c.Session
}

// tokens draws the worker's synthetic token ids.
func (w *Worker) tokens() synth.Tokens { return synth.Tokens{Seed: w.Seed, Vocab: w.Vocab} }

// Step runs one scheduler step; it reports false when the core had
// nothing to run.
func (w *Worker) Step() (bool, error) {
	t0 := time.Now()
	b := w.schedule()
	w.syncBlocks(b)
	if b.Empty() {
		return false, nil
	}
	if w.Exec == nil {
		return true, w.timedStep(b, t0)
	}
	if b.Predictions > 0 && w.Net != nil {
		calls := []int{b.Predictions} // one batched call
		if w.SyncPredictions {
			calls = make([]int, b.Predictions) // one call a request
			for i := range calls {
				calls[i] = 1
			}
		}
		for _, n := range calls {
			if err := w.runPredictor(n, b.PredictionTokens*n/b.Predictions); err != nil {
				return false, err
			}
		}
	}
	w.steps = w.steps[:0]
	for _, it := range b.Items {
		st := w.seqs[it.Seq.Index]
		end := it.Context + it.Tokens
		if end > len(st.tokens) {
			return false, fmt.Errorf("worker %d: request %s asks for tokens %d..%d of %d", w.ID, it.Seq.ID, it.Context, end, len(st.tokens))
		}
		table := st.table
		if w.shared {
			table = it.Seq.BlockTable()
		}
		w.steps = append(w.steps, gpu.SeqStep{Tokens: st.tokens[it.Context:end], Pos: it.Context, BlockTable: table, Sample: end == len(st.tokens)})
	}
	if cap(w.next) < len(w.steps) {
		w.next = make([]int32, len(w.steps))
	}
	next := w.next[:len(w.steps)]
	if err := w.Exec.Step(w.steps, next); err != nil {
		return false, fmt.Errorf("worker %d: %w", w.ID, err)
	}
	w.emit(b, next)
	return true, nil
}

// schedule asks the core for its next step, answering its asks for
// predictions: those of arrivals and of the last step first, then any a
// step stops for, then the asynchronous ones of the step itself (beside
// it: the answers are lookups).
func (w *Worker) schedule() *policies.Batch {
	for {
		w.answer()
		if b := w.Core.Next(w.now()); !b.Wait {
			w.answer()
			return b
		}
	}
}

func (w *Worker) answer() {
	if w.Predictor != nil {
		w.answers = policies.AnswerAll(w.Core, w.Predictor, w.answers)
	}
}

// timedStep is a step of the cost model's engine: from t0, when the step
// began to be scheduled (or the last step's end when the worker is busy),
// it lasts what the model prices it at (plus the predictor calls before
// it), so scheduling and streaming are inside the step as on a GPU; each
// request that completes its sequence emits a placeholder token.
func (w *Worker) timedStep(b *policies.Batch, t0 time.Time) error {
	d := w.Coster.StepTime(b)
	if b.Predictions > 0 {
		d += w.PredCost.StepSeconds(b.Predictions, b.PredictionTokens, w.SyncPredictions, w.Core.AsyncPredictions())
	}
	if w.busy && w.deadline.Before(t0) {
		t0 = w.deadline
	}
	w.deadline = t0.Add(time.Duration(d * float64(time.Second)))
	if now := time.Now(); now.After(w.deadline) {
		w.deadline = now // overran: the time is lost, not made up later
	}
	time.Sleep(time.Until(w.deadline))
	if cap(w.next) < len(b.Items) {
		w.next = make([]int32, len(b.Items))
	}
	next := w.next[:len(b.Items)]
	for i, it := range b.Items {
		next[i] = -1
		st := w.seqs[it.Seq.Index]
		if it.Context+it.Tokens == len(st.tokens) {
			next[i] = int32(synth.Mix(w.Seed^uint64(it.Seq.Index)<<20^uint64(len(st.tokens))) % uint64(w.Vocab))
		}
	}
	w.emit(b, next)
	return nil
}

// emit appends the step's sampled tokens, tells OnToken, and completes the
// step in the core.
func (w *Worker) emit(b *policies.Batch, next []int32) {
	for i, it := range b.Items {
		if next[i] >= 0 {
			st := w.seqs[it.Seq.Index]
			if st.session != 0 {
				next[i] = w.tokens().Stream(st.session, len(st.tokens))
			}
			st.tokens = append(st.tokens, next[i])
			if w.OnToken != nil {
				w.OnToken(it.Seq.Index, next[i], it.Seq.Generated+1)
			}
		}
	}
	w.Core.Complete(w.now())
}

// syncBlocks maps the core's block counts onto physical blocks: requests
// that lost their blocks (preempted, paused out of memory, resubmitted,
// finished) give them back, then the scheduled ones grow their tables.
// With prefix caching the core's block ids are the physical blocks, shared
// between requests, and there is nothing to map.
func (w *Worker) syncBlocks(b *policies.Batch) {
	if w.shared || w.Exec == nil {
		return
	}
	kept := w.live[:0]
	for _, st := range w.live {
		if st.seq.Blocks() < len(st.table) {
			w.free = append(w.free, st.table[st.seq.Blocks():]...)
			st.table = st.table[:st.seq.Blocks()]
		}
		if len(st.table) > 0 {
			kept = append(kept, st)
		}
	}
	clear(w.live[len(kept):])
	w.live = kept
	for _, it := range b.Items {
		st := w.seqs[it.Seq.Index]
		if st.seq == nil {
			st.seq = it.Seq
		}
		if len(st.table) == 0 && it.Seq.Blocks() > 0 {
			w.live = append(w.live, st)
		}
		for len(st.table) < it.Seq.Blocks() {
			n := len(w.free) - 1
			st.table = append(st.table, w.free[n])
			w.free = w.free[:n]
		}
	}
}

// finished forgets a request the core finished; its blocks go back at the
// next syncBlocks.
func (w *Worker) finished(index int) { delete(w.seqs, index) }

// runPredictor runs the predictor network on calls sequences totalling
// tokens tokens (each at most 512), for its cost.
func (w *Worker) runPredictor(calls, tokens int) error {
	cfg := w.Net.Config()
	n := min(max(tokens/calls, 2), cfg.MaxPositions)
	ids := make([][]int32, calls)
	for i := range ids {
		ids[i] = make([]int32, n)
		for j := range ids[i] {
			ids[i][j] = int32((i*7919 + j*104729) % cfg.Vocab)
		}
	}
	_, err := w.Net.Predict(ids, nil)
	return err
}

// WarmUp runs one small prefill and one decode on exec, so that lazy
// start-up work (kernel loading, library handles, first allocations) is
// done before the clock starts. The blocks it writes are free again after.
func WarmUp(exec gpu.Executor, vocab int) error {
	toks := make([]int32, min(16, exec.BlockSize()*exec.NumBlocks()-1))
	if len(toks) == 0 {
		return nil
	}
	for i := range toks {
		toks[i] = int32(i % vocab)
	}
	table := make([]int32, (len(toks)+exec.BlockSize())/exec.BlockSize())
	for i := range table {
		table[i] = int32(i)
	}
	next := make([]int32, 1)
	if err := exec.Step([]gpu.SeqStep{{Tokens: toks, BlockTable: table, Sample: true}}, next); err != nil {
		return err
	}
	return exec.Step([]gpu.SeqStep{{Tokens: []int32{toks[0]}, Pos: len(toks), BlockTable: table, Sample: true}}, next)
}
