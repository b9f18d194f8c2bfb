package policies

// Steady decodes: a core whose step costs per event, not per running
// request (DESIGN.md rule 21). A running request that made a token in the
// last step and holds exactly the blocks its tokens fill decodes the same
// way at every step until an event touches it: a block that fills (its
// identity is cached) or starts (one is taken), its last token, its
// prediction window, a preemption. The steady head of the running list
// keeps its token counts as offsets of one counter; its block events come
// from buckets by block phase, its windows from buckets by window phase
// and its finishes from a ring of buckets by step, all in running order,
// and the step's sums from two running totals. A step visits the requests with an event, and
// the others (prompts being computed) as before. What needs the
// per-request pass (an abort, a victim choice that asks) first writes
// every steady request out (settle), so the per-request core stays the
// reference.
//
// Only a driver that reads a batch's sums may ask for it
// (Scheduler.SumsOnly): a steady request computes its token without an
// Item in Batch.Items (Batch.Lazy counts them).

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
)

type steadySet struct {
	// n: running[:n] are steady, in running order (their keys increase).
	n int
	// dec counts the steady steps completed since the set began: a steady
	// request has computed base+dec tokens.
	dec int64
	// phase is -dec mod BlockSize: the bucket of the members that start
	// a block at step dec (it follows dec, sparing a step two divisions).
	phase   int64
	sumBase int64 // of the members' bases
	nextKey int64
	// buckets holds the members by base mod BlockSize, in running order:
	// at step dec, those with (base+dec) mod BlockSize = 0 start a block
	// and those one short of it fill one. Members that left are skipped
	// (their epoch moved on) and dropped when their bucket is next walked,
	// or once they are most of it.
	buckets [][]steadyRef
	live    []int // by bucket: its members still in the set (the rest are skipped)
	// compact has bit gi set when bucket gi may be mostly members that
	// left (compactBucket's test), so a stretch walks only those.
	compact []uint64
	fills   [][]steadyRef // the members whose output blocks others may share (sessions), alike
	nFills  int           // the fills' entries, stale ones included
	ends    endRing       // members by the dec at which they finish
	due     []endEntry    // scratch: the members a step finishes
	// windows holds the members by the phase of their prediction windows
	// (every PredictionInterval steps: at dec = phase mod the interval),
	// in running order, as buckets holds them by block phase.
	windows [][]steadyRef
	gaps    []gapMark // (dec, gap) with gaps decreasing: the largest gap since a dec
	// inStep: a step scheduled the set and has not completed.
	inStep bool
	// gone are the members that finished or left for resubmission in the
	// step Complete ends, still in the running list until dropEnded.
	gone []*Seq
}

type steadyRef struct {
	q     *Seq
	key   int64 // q.sKey: running order without a visit to q
	epoch uint32
}

type gapMark struct {
	dec int64
	gap float64
}

// steadyOn reports whether the core keeps steady decodes: its driver
// reads sums only, and the running list keeps its order from step to
// step (llama.cpp's slots sort it at every step).
func (s *Scheduler) steadyOn() bool {
	return s.SumsOnly && !s.cfg.Slots
}

// computed and generated are q's tokens, steady or not.
func (s *Scheduler) computed(q *Seq) int {
	if q.steady {
		return int(q.sBase + s.steady.dec)
	}
	return q.Computed
}

func (s *Scheduler) generated(q *Seq) int {
	if q.steady {
		return int(q.sBase+s.steady.dec) - q.PromptTokens + 1
	}
	return q.Generated
}

// blocksOf is the number of blocks q holds, steady or not. A steady
// request's blocks are counted as they start (Stretch, startBlocks) but
// its own count is written out only when it is visited or leaves the set:
// until then it holds the blocks its tokens fill, the step's token
// included while a step is built.
func (s *Scheduler) blocksOf(q *Seq) int {
	if !q.steady {
		return q.blocks
	}
	c := s.computed(q)
	if s.steady.inStep {
		c++
	}
	return max(q.blocks, s.blocksFor(c))
}

// runningIndex is q's index in the running list.
func (s *Scheduler) runningIndex(q *Seq) int {
	if q.steady {
		return sort.Search(s.steady.n, func(i int) bool { return s.running[i].sKey >= q.sKey })
	}
	return s.steady.n + slices.Index(s.running[s.steady.n:], q) // the others follow the set
}

// checkSteady verifies the steady set: it is the head of the running
// list, in running order; its members hold exactly the blocks their
// tokens fill, named as far as they are full; its total is their bases'.
func (s *Scheduler) checkSteady() error {
	f := &s.steady
	var sum int64
	for i, q := range s.running {
		if q.steady != (i < f.n) {
			return fmt.Errorf("request %s at %d of the running list: steady %v, the set's head is %d long", q.ID, i, q.steady, f.n)
		}
		if !q.steady {
			continue
		}
		if i > 0 && s.running[i-1].sKey >= q.sKey {
			return fmt.Errorf("steady request %s out of running order", q.ID)
		}
		c := s.computed(q)
		if f.inStep {
			c++ // its blocks hold the token the step computes
		}
		if b := s.blocksOf(q); b != s.blocksFor(c) || q.blocks > b || !s.namedUpTo(q, c) {
			return fmt.Errorf("steady request %s: %d tokens computed, %d blocks held (%d counted), %d named", q.ID, c, b, q.blocks, q.hashed)
		}
		sum += q.sBase
	}
	if sum != f.sumBase {
		return fmt.Errorf("steady bases sum to %d, the set counts %d", sum, f.sumBase)
	}
	if bs := int64(s.cfg.BlockSize); f.phase != ((-f.dec%bs)+bs)%bs {
		return fmt.Errorf("steady step %d: block phase %d", f.dec, f.phase)
	}
	members := 0
	for gi, bucket := range f.buckets {
		n := 0
		for _, r := range bucket {
			if r.epoch == r.q.sEpoch {
				n++
			}
		}
		if n != f.live[gi] {
			return fmt.Errorf("steady bucket %d holds %d members, counts %d", gi, n, f.live[gi])
		}
		members += n
	}
	if members != f.n { // Advance counts a round of buckets as the set
		return fmt.Errorf("steady buckets hold %d members, the set %d", members, f.n)
	}
	fills := 0
	for _, r := range f.fills {
		fills += len(r)
	}
	if fills != f.nFills {
		return fmt.Errorf("steady fills hold %d entries, the set counts %d", fills, f.nFills)
	}
	for gi, bucket := range f.buckets {
		if len(bucket) > 2*f.live[gi]+staleCompact-1 && f.compact[gi>>6]&(1<<(gi&63)) == 0 {
			return fmt.Errorf("steady bucket %d is mostly members that left, and not marked for compaction", gi)
		}
	}
	return nil
}

// steadyable reports whether running q can join the steady set after the
// step that ended last.
func (s *Scheduler) steadyable(q *Seq) bool {
	return q.state == stRunning && q.Generated > 0 && q.Generated < q.OutputTokens && q.Computed == q.Tokens()-1 &&
		q.lastToken == s.completed && q.blocks == s.blocksFor(q.Computed) && s.namedUpTo(q, q.Computed)
}

// namedUpTo reports whether q's blocks that others may share are named as
// far as c tokens fill them: its later ones are then named at the steps
// that fill them (fill events, kept for requests whose output others may
// share: a session's).
func (s *Scheduler) namedUpTo(q *Seq, c int) bool {
	if !s.kv.caching {
		return true
	}
	full := c / s.cfg.BlockSize
	if q.shared == math.MaxInt32 {
		return int(q.hashed) == full
	}
	return int(q.hashed) >= min(full, int(q.shared))
}

// joinSteady adds to the steady set the running requests after it that
// can join, up to the first that cannot (the set stays a prefix of the
// running list).
func (s *Scheduler) joinSteady() {
	f := &s.steady
	bs := int64(s.cfg.BlockSize)
	if len(f.buckets) == 0 {
		f.buckets, f.fills, f.live = make([][]steadyRef, bs), make([][]steadyRef, bs), make([]int, bs)
		f.compact = make([]uint64, (bs+63)/64)
	}
	for f.n < len(s.running) {
		q := s.running[f.n]
		if !s.steadyable(q) {
			return
		}
		q.steady = true
		q.sBase = int64(q.Computed) - f.dec
		q.sFrom = f.dec
		q.sKey = f.nextKey
		f.nextKey++
		r := s.bucketOf(q)
		f.buckets[r] = append(f.buckets[r], steadyRef{q, q.sKey, q.sEpoch})
		f.live[r]++
		if s.kv.caching && q.shared == math.MaxInt32 {
			f.fills[r] = append(f.fills[r], steadyRef{q, q.sKey, q.sEpoch})
			f.nFills++
		}
		f.ends.push(endEntry{at: f.dec + int64(q.OutputTokens-q.Generated), key: q.sKey, q: q, epoch: q.sEpoch}, f.dec)
		if s.pol.Predictive() {
			k := int64(s.cfg.PredictionInterval)
			if len(f.windows) == 0 {
				f.windows = make([][]steadyRef, k)
			}
			w := (f.dec + k - int64(q.Generated-q.lastPred)) % k
			f.windows[w] = append(f.windows[w], steadyRef{q, q.sKey, q.sEpoch})
		}
		f.sumBase += q.sBase
		f.n++
	}
}

// settle writes out every steady request's fields and empties the set:
// the core is then what stepping leaves.
func (s *Scheduler) settle() {
	f := &s.steady
	if f.n == 0 && len(f.gaps) == 0 {
		return
	}
	for _, q := range s.running[:f.n] {
		s.materialize(q)
		q.steady = false
		q.sEpoch++
	}
	clear(f.live)
	clear(f.compact)
	for i := range f.buckets {
		clear(f.buckets[i])
		f.buckets[i] = f.buckets[i][:0]
		clear(f.fills[i])
		f.fills[i] = f.fills[i][:0]
	}
	f.nFills = 0
	f.ends.reset()
	for i := range f.windows {
		clear(f.windows[i])
		f.windows[i] = f.windows[i][:0]
	}
	f.gaps = f.gaps[:0]
	f.n, f.dec, f.phase, f.sumBase = 0, 0, 0, 0
}

// materialize writes out steady q's tokens, last token time and largest
// gap; q stays in the set.
func (s *Scheduler) materialize(q *Seq) {
	f := &s.steady
	q.blocks = s.blocksOf(q)
	q.Computed = int(q.sBase + f.dec)
	q.Generated = q.Computed - q.PromptTokens + 1
	if f.dec > q.sFrom {
		q.lastToken = s.completed
		// The first mark after q joined holds the largest gap since.
		i := sort.Search(len(f.gaps), func(i int) bool { return f.gaps[i].dec > q.sFrom })
		q.rec.maxGap = max(q.rec.maxGap, f.gaps[i].gap)
	}
}

// steadyPass schedules the steady head of the running list as the
// per-request pass would (DESIGN.md rules 2 and 3): in running order it
// takes and names the blocks their tokens start and fill, preempting
// where the cache is short, and adds them to the batch's sums. It reports
// whether anything was preempted and whether the pass ends here (a
// request preempted itself: nothing after it runs this step); the others
// follow as usual. Without a steady head to schedule it reports ok false.
func (s *Scheduler) steadyPass(budget int) (preempted, stop, ok bool) {
	f := &s.steady
	if f.n == 0 || f.n > budget {
		return false, false, false
	}
	gi := f.phase     // start a block: (base+dec) mod bs = 0
	fi := s.below(gi) // fill one: (base+dec+1) mod bs = 0
	grow := f.buckets[gi]
	if s.cfg.LazyPredictions && s.pol.Predictive() && s.mayPreempt(gi, budget) && s.lazyRunning() {
		// Its victims would be chosen by predictions not yet made, which
		// stops the step midway: the per-request pass does that.
		return false, false, false
	}
	var fill []steadyRef
	if s.kv.caching && fi != gi {
		fill = f.fills[fi]
	}
	g, a := 0, 0
	// Where no block can run short, the blocks started are taken in one go,
	// unless a member fills a block others may share: naming it and taking
	// a block (which may evict a free one of the same name) do not commute,
	// so the two go in running order, as the per-request pass has them.
	// (With blocks of one token the members that start a block fill it: the
	// fill bucket is the start one.)
	names := s.kv.caching && len(f.fills[fi]) > 0
	if f.live[gi] <= s.kv.free && !names {
		s.startBlocks(gi)
		grow = nil // done
	}
	// Merge the two buckets in running order, dropping members that left.
	keptG, keptF := grow[:0], fill[:0]
	for (g < len(grow) || a < len(fill)) && !stop {
		var r steadyRef
		if a >= len(fill) || (g < len(grow) && grow[g].key < fill[a].key) {
			r, g = grow[g], g+1
			if r.epoch != r.q.sEpoch {
				continue
			}
			keptG = append(keptG, r)
		} else {
			r, a = fill[a], a+1
			if r.epoch != r.q.sEpoch {
				continue
			}
			keptF = append(keptF, r)
		}
		q := r.q
		q.blocks = s.blocksOf(q)
		q.Computed = int(q.sBase + f.dec) // the token it computes now
		for !s.alloc(q, 1) {
			if s.freePaused(nil) {
				continue
			}
			vi := s.victim()
			v := s.running[vi]
			preempted = true
			took := 0
			if v.steady {
				if v.sKey < q.sKey {
					took = 1 // the pass is past it: its token is in the step
				}
				s.leaveSteady(v)
			}
			s.preempt(vi, took)
			if v == q {
				// It and every request after it miss this step: the
				// steady ones after it leave the set as they are.
				for _, w := range s.running[vi:f.n] {
					s.leaveSteady(w)
				}
				f.n = vi
				stop = true
				break
			}
		}
	}
	// Keep what was not visited.
	keptG = append(keptG, grow[g:]...)
	keptF = append(keptF, fill[a:]...)
	if grow != nil {
		clear(grow[len(keptG):])
		f.buckets[gi] = keptG
	}
	if fill != nil {
		clear(fill[len(keptF):])
		f.nFills -= len(fill) - len(keptF)
		f.fills[fi] = keptF
	}
	f.inStep = true
	b := &s.batch
	b.Lazy = f.n
	b.DecodeSeqs += f.n
	b.DecodeContext += f.sumBase + int64(f.n)*f.dec
	return preempted, stop, true
}

// startBlocks takes from the pool the blocks the members of bucket gi
// start at this step, in one go (a steady pool counts unnamed blocks), when
// the pool holds as many and no member names a block others may share in
// the step: their own counts are written when they are visited
// (blocksOf). The bucket drops the members that left when they are most of
// it.
func (s *Scheduler) startBlocks(gi int64) {
	f := &s.steady
	s.kv.takeUnnamed(f.live[gi])
	s.compactBucket(gi)
}

// staleCompact is the fewest entries of members that left for which a
// bucket is compacted.
const staleCompact = 9

// compactBucket drops the members that left bucket gi when they are most
// of it (and at least staleCompact).
func (s *Scheduler) compactBucket(gi int64) {
	f := &s.steady
	if grow := f.buckets[gi]; len(grow) > 2*f.live[gi]+staleCompact-1 {
		kept := grow[:0]
		for _, r := range grow {
			if r.epoch == r.q.sEpoch {
				kept = append(kept, r)
			}
		}
		clear(grow[len(kept):])
		f.buckets[gi] = kept
	}
	f.compact[gi>>6] &^= 1 << (gi & 63)
}

// mayPreempt reports whether a step could run short of blocks: the
// blocks the steady requests start (those of bucket gi) and the others'
// asks, with budget tokens, need more than are free.
func (s *Scheduler) mayPreempt(gi int64, budget int) bool {
	f := &s.steady
	need := f.live[gi]
	left := budget - f.n
	for _, q := range s.running[f.n:] {
		if left <= 0 {
			break
		}
		ask := s.ask(q, left)
		if ask <= 0 {
			continue
		}
		if up := q.Computed + ask; up > q.blocks*s.cfg.BlockSize {
			need += s.kv.need(q, up, nil)
		}
		left -= ask
	}
	return need > s.kv.free
}

// lazyRunning reports whether a running request was admitted without a
// prediction (LazyPredictions), for which a victim choice would ask.
func (s *Scheduler) lazyRunning() bool {
	return slices.ContainsFunc(s.running, func(q *Seq) bool { return q.lazy })
}

// leaveSteady writes out steady q and takes it out of the set, which it
// must leave a prefix of the running list (q is then preempted, or the
// set's tail). Its bucket and heap entries go stale.
func (s *Scheduler) leaveSteady(q *Seq) {
	f := &s.steady
	s.materialize(q)
	gi := s.bucketOf(q)
	f.live[gi]--
	if len(f.buckets[gi]) > 2*f.live[gi]+staleCompact-1 {
		f.compact[gi>>6] |= 1 << (gi & 63)
	}
	q.steady = false
	q.sEpoch++
	f.n--
	f.sumBase -= q.sBase
}

// dropSteady takes steady q, scheduled in the step being built, out of
// the set and the step (a victim the per-request pass chose), returning
// its token to the budget as Batch.drop does.
func (s *Scheduler) dropSteady(q *Seq) int {
	b := &s.batch
	b.Lazy--
	b.DecodeSeqs--
	b.DecodeContext -= q.sBase + s.steady.dec
	s.leaveSteady(q)
	return 1
}

// steadyComplete ends a step's steady requests at now, prev being when
// the step before ended (every one's last token), queued whether requests
// queue: it moves the counter, notes the step's gap, ends those that made
// their last token and runs the windows reached, each in running order.
// It returns the gap, how many made a token, and whether any leaves the
// running list (dropEnded takes them out).
func (s *Scheduler) steadyComplete(now, prev float64, queued bool) (gap float64, n int, gone bool) {
	f := &s.steady
	n = s.batch.Lazy
	gap = now - prev
	s.steadyStep(gap)
	f.due = f.ends.takeDue(f.dec, f.due[:0])
	for _, e := range f.due {
		q := e.q
		if e.epoch != q.sEpoch {
			continue // it left the set
		}
		s.leaveSteady(q)
		f.gone = append(f.gone, q)
		s.finish(q, now)
	}
	// A window changes nothing a finish reads, nor the reverse: the
	// windows run after the finishes, in running order among themselves.
	if len(f.windows) > 0 {
		w := f.dec % int64(len(f.windows))
		due := f.windows[w]
		kept := due[:0]
		for _, r := range due {
			q := r.q
			if r.epoch != q.sEpoch {
				continue // it left the set
			}
			s.materialize(q)
			if s.window(q, now, queued) {
				s.leaveSteady(q) // resubmitted
				f.gone = append(f.gone, q)
				continue
			}
			kept = append(kept, r) // its next window is an interval away
		}
		clear(due[len(kept):])
		f.windows[w] = kept
	}
	return gap, n, len(f.gone) > 0
}

// bucketOf is steady q's bucket by block phase: its base mod BlockSize.
func (s *Scheduler) bucketOf(q *Seq) int64 {
	bs := int64(s.cfg.BlockSize)
	return ((q.sBase % bs) + bs) % bs
}

// below is the bucket before gi, by block phase (the one starting blocks
// a step later).
func (s *Scheduler) below(gi int64) int64 {
	if gi == 0 {
		return int64(s.cfg.BlockSize) - 1
	}
	return gi - 1
}

// steadyStep moves the counter on by a step whose gap was gap, keeping
// the marks of the largest gaps.
func (s *Scheduler) steadyStep(gap float64) {
	f := &s.steady
	f.dec++
	f.phase = s.below(f.phase)
	f.gaps = markGap(f.gaps, f.dec, gap, s.firstFrom())
}

// firstFrom is when the steady set's first member joined (the earliest of
// all), or the least counter with none.
func (s *Scheduler) firstFrom() int64 {
	if s.steady.n == 0 {
		return math.MinInt64
	}
	return s.running[0].sFrom
}

// markGap is marks, the largest gaps since each step (each mark's gap is
// larger than every later one's), after step dec's gap: the marks it
// outdoes go, and so do those no member reads (before from but the last).
func markGap(marks []gapMark, dec int64, gap float64, from int64) []gapMark {
	for len(marks) > 0 && marks[len(marks)-1].gap <= gap {
		marks = marks[:len(marks)-1]
	}
	marks = append(marks, gapMark{dec, gap})
	for len(marks) > 1 && marks[0].dec <= from {
		marks = marks[1:]
	}
	return marks
}

// markGaps is markGap after the steps that end at ends in turn (those
// of steps dec+1, dec+2, ...; the one before them ended at prev), their
// gaps written to gaps, found backwards: a gap keeps its mark when it is
// above every later one (markGap drops a mark when a gap at least as
// large comes), an earlier mark when it is above them all, and those no
// member reads go last, as markGap lets them. A stretch's gaps mostly
// grow, so the walk back keeps one: a comparison a step, where markGap
// wrote one.
func (s *Scheduler) markGaps(marks []gapMark, dec int64, prev float64, ends, gaps []float64, from int64) []gapMark {
	k := len(ends)
	if k == 0 {
		return marks
	}
	gaps = gaps[:k]
	gaps[0] = ends[0] - prev
	g := gaps[0]
	if k > 1 {
		g = ends[k-1] - ends[k-2]
		gaps[k-1] = g
	}
	kept := s.markBuf[:0] // backwards
	kept = append(kept, gapMark{dec + int64(k), g})
	mx, nan := g, g != g
	for j := k - 2; j >= 0; j-- {
		if j > 0 {
			g = ends[j] - ends[j-1]
			gaps[j] = g
		} else {
			g = gaps[0]
		}
		if !(g <= mx) { // mostly not: going back, a stretch's gaps shrink
			if g != g {
				nan = true
				continue
			}
			mx = g
			kept = append(kept, gapMark{dec + int64(j) + 1, g})
		}
	}
	s.markBuf = kept
	if nan {
		// A NaN orders with nothing: markGap's own order, step by step.
		for i, g := range gaps {
			marks = markGap(marks, dec+int64(i)+1, g, from)
		}
		return marks
	}
	for len(marks) > 0 && marks[len(marks)-1].gap <= mx {
		marks = marks[:len(marks)-1]
	}
	for i := len(kept) - 1; i >= 0; i-- {
		marks = append(marks, kept[i])
	}
	for len(marks) > 1 && marks[0].dec <= from {
		marks = marks[1:]
	}
	return marks
}

// Stretch is how many steps after the one Next just built are copies of
// it but for their contexts (each decode's one token longer a step), were
// nothing to arrive, at most max: steps of a quiet stretch (DESIGN.md
// rule 22), which Advance runs without building them one by one. It is 0
// unless the core keeps steady decodes, its policy reads no prediction
// and no guard acts, nothing waits or is asked, and the step decodes the
// steady requests alone; the stretch ends with the first step that
// finishes a request, and before one that would start more blocks than
// are free or fill a block others may share.
func (s *Scheduler) Stretch(max int) int {
	f := &s.steady
	b := &s.batch
	if !s.steadyOn() || s.pol.Predictive() || s.cfg.Guard != (Guard{}) || !f.inStep ||
		f.n == 0 || f.n != len(s.running) || b.Lazy != f.n || len(b.Items) > 0 || b.Predictions > 0 ||
		s.waiting.Len() > 0 || len(s.asks) > 0 || s.resume.on || len(s.lazyWaiting) > 0 || s.pendingPred > 0 ||
		len(s.answered) > 0 || len(s.asking) > 0 || len(s.bounds) > 0 || len(f.gone) > 0 {
		return 0
	}
	// Copy j (built at dec+j) must not start blocks beyond the free ones
	// nor fill a shared block, and only the last may finish anyone as it
	// ends (the driver completes that one as any step).
	last := int64(math.MaxInt64)
	if at, ok := f.ends.first(); ok {
		last = at - f.dec - 1 // the first finish's
	}
	if last < 1 || max < 1 {
		return 0
	}
	// Most stretches are short of blocks by far, and fill none that others
	// may share: then nothing but max and the first finish ends them, and
	// no step need be looked at. A run of bs steps starts a block for
	// every member at most once.
	steps := int64(max)
	if last < steps {
		steps = last
	}
	fills := s.kv.caching && f.nFills > 0
	bs := int64(s.cfg.BlockSize)
	if !fills && int64(f.n)*((steps+bs-1)/bs) <= int64(s.kv.free) { // f.n: the buckets' live members
		return int(steps)
	}
	gi := s.below(f.phase) // step 1's bucket; each next one's is one lower
	free := s.kv.free
	k := 0
	for j := int64(1); k < max && j <= last; j++ {
		fi := s.below(gi)
		if s.kv.caching && len(f.fills[fi]) > 0 {
			break
		}
		if free -= f.live[gi]; free < 0 {
			break
		}
		k++
		gi = fi
	}
	return k
}

// Advance completes the step Next built at ends[0] and each of the
// stretch's next len(ends)-1 copies at its end, then builds the copy
// after them (len(ends) of the Stretch's copies at most), as Next and
// Complete would have step by step. The driver completes that last copy
// as any step (Complete): requests may arrive during it, and it may
// finish some. Nothing may arrive before ends' last.
func (s *Scheduler) Advance(ends []float64) {
	f := &s.steady
	n := f.n
	k := len(ends)
	if k == 0 {
		return
	}
	// Copy j (1..k) is built at phase below^j of the one now: their
	// starting blocks come from the queue's head in one take, which
	// takes the same blocks in the same order as k takes would. The
	// phases come round every BlockSize steps, each round starting a
	// block for every member.
	bs := len(f.live)
	need := (k / bs) * f.n
	gi := f.phase
	for range k % bs {
		gi = s.below(gi)
		need += f.live[gi]
	}
	s.kv.takeUnnamed(need)
	phase := gi // the counter's after k steps
	if slices.ContainsFunc(f.compact, func(bits uint64) bool { return bits != 0 }) {
		gi = f.phase
		for range min(k, bs) {
			if gi = s.below(gi); f.compact[gi>>6]&(1<<(gi&63)) != 0 {
				s.compactBucket(gi)
			}
		}
	}
	// Each step ends in turn: its gap, and the gap marks as steadyStep
	// keeps them (the first member stays the same).
	gaps := slices.Grow(s.gapBuf[:0], k)[:k]
	f.gaps = s.markGaps(f.gaps, f.dec, s.completed, ends, gaps, s.firstFrom())
	f.dec += int64(k)
	s.gapBuf = gaps
	prev := ends[k-1]
	switch {
	case s.OnGaps != nil:
		s.OnGaps(gaps, n)
	case s.OnGap != nil:
		for _, g := range gaps {
			s.OnGap(g, n)
		}
	}
	f.phase = phase
	s.completed = prev
	// The last copy, as Next would have built it.
	s.clock = prev
	s.step += int64(k)
	s.stats.Steps += int64(k)
	b := &s.batch
	b.reset(s.step)
	b.Lazy, b.DecodeSeqs, b.DecodeContext = n, n, f.sumBase+int64(n)*f.dec
	f.inStep = true
}

// steadyResubmit re-enqueues, in running order, the steady requests that
// left for resubmission in the last step, and returns the length of the
// running list's head they and the finished ones shared with the set
// (dropSteadyGone takes them out).
func (s *Scheduler) steadyResubmit() int {
	f := &s.steady
	slices.SortFunc(f.gone, func(a, b *Seq) int { return cmp.Compare(a.sKey, b.sKey) })
	for _, q := range f.gone {
		if q.state == stResubmit {
			s.freeBlocks(q, q.Computed)
			s.enqueue(q, false)
		}
	}
	return f.n + len(f.gone)
}

// dropSteadyGone takes the steady requests that left in the last step out
// of the running list's head, whose keys still increase.
func (s *Scheduler) dropSteadyGone() {
	f := &s.steady
	end := f.n + len(f.gone)
	for j := len(f.gone) - 1; j >= 0; j-- {
		q := f.gone[j]
		i := sort.Search(end, func(i int) bool { return s.running[i].sKey >= q.sKey })
		copy(s.running[i:], s.running[i+1:])
		s.running[len(s.running)-1] = nil
		s.running = s.running[:len(s.running)-1]
		end--
	}
	clear(f.gone)
	f.gone = f.gone[:0]
}

// endRing holds steady requests by the dec at which they finish, then by
// running order: a ring of buckets by dec, each a list, in the order its
// members joined (joinSteady pushes them in key order), through a small
// pool of entries. A member finishes at most its remaining output tokens
// after it joins, so a ring a few thousand long holds them all; a step's
// finishes are one bucket's list, where a heap sifted at every pop (6% of
// an overloaded FCFS run, mostly mispredicted branches), and the lists'
// ends and the pool stay in cache (a bucket a slice missed it at a push).
type endRing struct {
	head, tail []int32  // by at mod their length, a power of two: a bucket's first and last entry, -1 if none
	full       []uint64 // bit i: bucket i holds entries
	pool       []endEntry
	free       int32 // the pool's free entries, linked by next; -1 when none
	lo         int64 // every entry's at is in [lo, lo+len(head))
	n          int
}

type endEntry struct {
	at, key int64
	q       *Seq
	epoch   uint32 // stale once q left the set
	next    int32  // the next entry in its bucket, or free; -1 at the end
}

// push adds e, which finishes after dec, the set's counter now.
func (r *endRing) push(e endEntry, dec int64) {
	if r.n == 0 {
		r.lo = dec + 1
	}
	for e.at-r.lo >= int64(len(r.head)) {
		r.grow()
	}
	var i int32
	if r.free >= 0 {
		i = r.free
		r.free = r.pool[i].next
	} else {
		i = int32(len(r.pool))
		r.pool = append(r.pool, endEntry{})
	}
	e.next = -1
	r.pool[i] = e
	b := e.at & int64(len(r.head)-1)
	if r.head[b] < 0 {
		r.head[b] = i
		r.full[b>>6] |= 1 << (b & 63)
	} else {
		r.pool[r.tail[b]].next = i
	}
	r.tail[b] = i
	r.n++
}

// grow doubles the ring. Each at in [lo, lo+len) has a bucket of its
// own in either ring, so every list moves whole.
func (r *endRing) grow() {
	oldHead, oldTail := r.head, r.tail
	m := max(1024, 2*len(oldHead))
	r.head, r.tail = make([]int32, m), make([]int32, m)
	for i := range r.head {
		r.head[i], r.tail[i] = -1, -1
	}
	r.full = make([]uint64, m/64)
	if oldHead == nil {
		r.free = -1 // a new ring: its pool is empty
	}
	for b, h := range oldHead {
		if h >= 0 {
			i := r.pool[h].at & int64(m-1)
			r.head[i], r.tail[i] = h, oldTail[b]
			r.full[i>>6] |= 1 << (i & 63)
		}
	}
}

// first is the smallest at of an entry, stale ones included.
func (r *endRing) first() (int64, bool) {
	if r.n == 0 {
		return 0, false
	}
	mask := int64(len(r.head) - 1)
	start := r.lo & mask
	words := len(r.full) // a power of two
	for k := 0; k <= words; k++ {
		w := (int(start>>6) + k) & (words - 1)
		x := r.full[w]
		if k == 0 {
			x &= ^uint64(0) << (start & 63)
		}
		if x != 0 {
			return r.pool[r.head[w<<6+bits.TrailingZeros64(x)]].at, true
		}
	}
	panic("policies: an end ring with entries and no full bucket")
}

// takeDue appends to buf the entries whose at is dec or before, by at
// then key (stale ones included), and drops them.
func (r *endRing) takeDue(dec int64, buf []endEntry) []endEntry {
	if r.lo == dec {
		// The usual step: the counter moved one on from the last, so only
		// dec's bucket can be due, and it holds dec's alone.
		if r.n > 0 {
			buf = r.takeBucket(dec&int64(len(r.head)-1), buf)
		}
		r.lo = dec + 1
		return buf
	}
	for {
		at, ok := r.first()
		if !ok || at > dec {
			break
		}
		buf = r.takeBucket(at&int64(len(r.head)-1), buf)
		r.lo = at + 1
	}
	r.lo = max(r.lo, dec+1)
	return buf
}

// takeBucket appends bucket b's list to buf and frees it.
func (r *endRing) takeBucket(b int64, buf []endEntry) []endEntry {
	for i := r.head[b]; i >= 0; {
		e := &r.pool[i]
		buf = append(buf, *e)
		next := e.next
		e.q, e.next = nil, r.free
		r.free = i
		r.n--
		i = next
	}
	r.head[b], r.tail[b] = -1, -1
	r.full[b>>6] &^= 1 << (b & 63)
	return buf
}

// reset empties the ring, keeping its room.
func (r *endRing) reset() {
	for w, x := range r.full {
		for ; x != 0; x &= x - 1 {
			i := w<<6 + bits.TrailingZeros64(x)
			r.head[i], r.tail[i] = -1, -1
		}
	}
	clear(r.full)
	clear(r.pool)
	r.pool, r.free = r.pool[:0], -1
	r.n, r.lo = 0, 0
}
