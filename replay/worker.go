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
	seq     *policies.Seq // the core's request, once it has been scheduled
	tokens  []int32
	table   []int32 // with prefix caching off: the worker's own mapping
	session uint64
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
	// shared: the core caches prefixes, so its block tables are physical.
	shared bool
}

func newWorker(id int, core *policies.Scheduler, exec gpu.Executor, vocab int, seed uint64, start time.Time) *worker {
	w := &worker{id: id, core: core, exec: exec, vocab: vocab, seed: seed, seqs: map[int]*seqState{}, start: start, shared: core.PrefixCaching()}
	for b := exec.NumBlocks() - 1; b >= 0; b-- {
		w.free = append(w.free, int32(b))
	}
	return w
}

func (w *worker) now() float64 { return time.Since(w.start).Seconds() }

// add gives a new request its synthetic prompt (the trace has lengths, and
// random-weight models do not care which tokens) and submits it. Tokens a
// request's content names (hash ids, a session's stream) are drawn from
// that name, so requests the prefix cache deems equal are equal.
func (w *worker) add(r policies.Request) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(r.Index)))
	p := make([]int32, r.PromptTokens, r.PromptTokens+r.OutputTokens)
	c := r.Content
	chain := uint64(0)
	for i := range p {
		switch {
		case c.Session != 0:
			p[i] = w.streamToken(c.Session, i)
		case c.HashBlock > 0 && i < len(c.Hashes)*c.HashBlock:
			if i%c.HashBlock == 0 {
				chain = splitmix(chain ^ splitmix(c.Hashes[i/c.HashBlock]))
			}
			p[i] = int32(splitmix(chain^uint64(i)) % uint64(w.vocab))
		default:
			p[i] = int32(rng.IntN(w.vocab))
		}
	}
	w.seqs[r.Index] = &seqState{tokens: p, session: c.Session}
	w.core.Add(r, w.now())
}

// streamToken is token i of a session's stream. A session's outputs are
// forced to it as well, so a later turn, whose prompt holds them, finds in
// the cache the very tokens it would compute.
func (w *worker) streamToken(session uint64, i int) int32 {
	return int32(splitmix(session^splitmix(w.seed+uint64(i))) % uint64(w.vocab))
}

// splitmix is the splitmix64 finaliser: a well-mixed 64-bit hash.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// step runs one scheduler step on the executor; it reports false when the
// core had nothing to run.
func (w *worker) step() (bool, error) {
	b := w.core.Next(w.now())
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
	if err := w.exec.Step(w.steps, next); err != nil {
		return false, fmt.Errorf("worker %d: %w", w.id, err)
	}
	for i, it := range b.Items {
		if next[i] >= 0 {
			st := w.seqs[it.Seq.Index]
			if st.session != 0 {
				next[i] = w.streamToken(st.session, len(st.tokens))
			}
			st.tokens = append(st.tokens, next[i])
		}
	}
	w.core.Complete(w.now())
	return true, nil
}

// syncBlocks maps the core's block counts onto physical blocks: requests
// that lost their blocks (preempted, paused out of memory, resubmitted,
// finished) give them back, then the scheduled ones grow their tables.
// With prefix caching the core's block ids are the physical blocks, shared
// between requests, and there is nothing to map.
func (w *worker) syncBlocks(b *policies.Batch) {
	if w.shared {
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
