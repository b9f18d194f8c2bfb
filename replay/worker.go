package replay

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/policies"
)

// seqState is what a worker keeps per request beyond the core's view: its
// token ids (synthetic prompt, then generated) and its physical KV blocks.
type seqState struct {
	seq    *policies.Seq // the core's request, once it has been scheduled
	tokens []int32
	table  []int32
}

// worker is one engine replica: a core, an executor and the mapping of the
// core's block counts onto the executor's physical blocks.
type worker struct {
	id    int
	core  *policies.Scheduler
	exec  gpu.Executor
	net   gpu.PredictorNet // run for its cost at prediction points; nil: none
	vocab int
	seed  uint64
	free  []int32
	seqs  map[int]*seqState // by request index
	live  []*seqState       // those holding physical blocks, in a fixed order
	start time.Time
	steps []gpu.SeqStep
	next  []int32
}

func newWorker(id int, core *policies.Scheduler, exec gpu.Executor, vocab int, seed uint64, start time.Time) *worker {
	w := &worker{id: id, core: core, exec: exec, vocab: vocab, seed: seed, seqs: map[int]*seqState{}, start: start}
	for b := exec.NumBlocks() - 1; b >= 0; b-- {
		w.free = append(w.free, int32(b))
	}
	return w
}

func (w *worker) now() float64 { return time.Since(w.start).Seconds() }

// add gives a new request its synthetic prompt (the trace has lengths, and
// random-weight models do not care which tokens) and submits it.
func (w *worker) add(r policies.Request) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(r.Index)))
	p := make([]int32, r.PromptTokens, r.PromptTokens+r.OutputTokens)
	for i := range p {
		p[i] = int32(rng.IntN(w.vocab))
	}
	w.seqs[r.Index] = &seqState{tokens: p}
	w.core.Add(r, w.now())
}

// step runs one scheduler step on the executor; it reports false when the
// core had nothing to run.
func (w *worker) step() (bool, error) {
	b := w.core.Schedule(w.now())
	if b.Empty() && !w.core.Idle() {
		// The running pass stopped at a request that preempted itself
		// (vLLM's rule 3): the next pass schedules the others.
		b = w.core.Schedule(w.now())
	}
	w.syncBlocks(b)
	if b.Empty() {
		return false, nil
	}
	if b.Predictions > 0 && w.net != nil {
		if err := w.runPredictor(b.Predictions, b.PredictionTokens); err != nil {
			return false, err
		}
	}
	w.steps = w.steps[:0]
	for _, it := range b.Items {
		st := w.seqs[it.Seq.Index]
		end := it.Context + it.Tokens
		if end > len(st.tokens) {
			return false, fmt.Errorf("worker %d: request %s asks for tokens %d..%d of %d", w.id, it.Seq.ID, it.Context, end, len(st.tokens))
		}
		w.steps = append(w.steps, gpu.SeqStep{Tokens: st.tokens[it.Context:end], Pos: it.Context, BlockTable: st.table, Sample: end == len(st.tokens)})
	}
	if cap(w.next) < len(w.steps) {
		w.next = make([]int32, len(w.steps))
	}
	next := w.next[:len(w.steps)]
	if err := w.exec.Step(w.steps, next); err != nil {
		return false, fmt.Errorf("worker %d: %w", w.id, err)
	}
	for i, it := range b.Items {
		if next[i] >= 0 {
			st := w.seqs[it.Seq.Index]
			st.tokens = append(st.tokens, next[i])
		}
	}
	w.core.Complete(w.now())
	return true, nil
}

// syncBlocks maps the core's block counts onto physical blocks: requests
// that lost their blocks (preempted, paused out of memory, resubmitted,
// finished) give them back, then the scheduled ones grow their tables.
func (w *worker) syncBlocks(b *policies.Batch) {
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
func (w *worker) finished(index int) { delete(w.seqs, index) }

// runPredictor runs the predictor network on calls sequences totalling
// tokens tokens (each at most 512), for its cost.
func (w *worker) runPredictor(calls, tokens int) error {
	cfg := w.net.Config()
	n := min(max(tokens/calls, 2), cfg.MaxPositions)
	ids := make([][]int32, calls)
	for i := range ids {
		ids[i] = make([]int32, n)
		for j := range ids[i] {
			ids[i][j] = int32((i*7919 + j*104729) % cfg.Vocab)
		}
	}
	_, err := w.net.Predict(ids, nil)
	return err
}
