package policies

// Macro-steps: between events (an arrival that could be admitted, a
// request finishing, a prediction window, a preemption) a step changes
// nothing but each running request's token count, and its price depends
// only on the batch's sums. Stretch says how many such steps lie ahead;
// Advance takes them at once, touching only the requests whose KV blocks
// fill or grow on the way (one in BlockSize a step), so a simulated run
// costs per event, not per token. What Advance leaves behind is, bit for
// bit, what as many calls of Next and Complete would: the stepping core
// stays the reference (DESIGN.md rule 21).

// Stretch reports how many of the next steps are certain to be the same
// pure decode step of the running requests whatever their times: each
// running request computes one token and none finishes, reaches a
// prediction window or is preempted, and nothing waiting is admitted.
// Every running request made a token in the step Complete ended last, so
// the first step's gap is its length, as every later one's. b is
// the first such step, for pricing; step j (from 0) differs from it only
// in DecodeContext, larger by j*DecodeSeqs. With steps < 1 there is no
// stretch (b is nil). A driver that gives the core no input meanwhile may
// take any number of them up to steps with Advance; the step that ends the
// stretch is then built as usual by Next.
func (s *Scheduler) Stretch() (steps int, b *Batch) {
	n := len(s.running)
	if n == 0 || s.steadyOn() || s.cfg.Slots || len(s.asks) > 0 || s.resume.on || s.pendingPred > 0 ||
		len(s.asking) > 0 || len(s.answered) > 0 || n > s.cfg.MaxBatchedTokens {
		return 0, nil
	}
	// Cached blocks the head of the queue counts on, which the stretch
	// may not evict (see headStaysOut).
	var keep []int32
	if s.waiting.Len() > 0 {
		// Something waits: no guard may reorder it from step to step, and
		// it may not be admitted: the batch is full, or its head cannot
		// have its blocks (DESIGN.md rule 5's head of line).
		if s.cfg.Guard.AgingSteps > 0 || s.cfg.Guard.SlowdownCap > 0 || len(s.lazyWaiting) > 0 {
			return 0, nil
		}
		if n < s.cfg.MaxSeqs {
			var ok bool
			if keep, ok = s.headStaysOut(s.cfg.MaxBatchedTokens - n); !ok {
				return 0, nil
			}
		}
	}
	if s.cfg.Guard.AgingSteps > 0 && (len(s.promoted) > 0 || len(s.aging) > 0) {
		return 0, nil
	}
	bs := s.cfg.BlockSize
	steps = 1 << 30
	// With lazy predictions and nothing queued, a window only notes that
	// it passed (the prediction is skipped): Advance does that in bulk.
	// Otherwise a window is an event that ends the stretch.
	windows := s.pol.Predictive() && !s.skipsWindows()
	// One pass: check each request, bound the stretch, count the block
	// phases and build the first step.
	if cap(s.phases) < bs {
		s.phases = make([]int, bs)
	}
	s.phases = s.phases[:bs]
	clear(s.phases)
	b = &s.batch
	b.reset(s.step + 1)
	for _, q := range s.running {
		// Each made its last token in the step that just ended: its gaps
		// are the steps' lengths.
		if q.Generated == 0 || q.Computed != q.Tokens()-1 || q.lastToken != s.completed || q.boundary || q.state != stRunning {
			return 0, nil
		}
		if s.kv.caching && int(q.hashed) != min(q.Computed/bs, len(q.table)) {
			return 0, nil
		}
		steps = min(steps, q.OutputTokens-q.Generated-1) // the step it finishes in is not part of it
		if windows {
			steps = min(steps, s.cfg.PredictionInterval-(q.Generated-q.lastPred)-1) // nor its next window's
		}
		s.phases[s.room(q)%bs]++
		b.add(q, 1)
	}
	if steps < 1 {
		return 0, nil
	}
	// Blocks: a request grows a block at the steps where its next token
	// starts one (phases[p] at steps j with (j-1) mod bs == p); the
	// stretch ends before the step that would find too few free.
	// The same limit for the blocks taken from the free queue's head, if
	// one the head of the waiting queue would reuse is among them.
	limit := s.kv.free
	if len(keep) > 0 {
		walk := s.stretchTakes(steps, limit) // the queue's head the stretch may take
		if walk < 0 {
			walk = limit
		}
		limit = s.kv.queuedBefore(keep, walk)
	}
	if taken := s.stretchTakes(steps, limit); taken < 0 {
		steps = -taken - 1
	}
	if steps < 1 {
		return 0, nil
	}
	return steps, b
}

// headStaysOut reports whether the head of the waiting queue is certain
// not to be admitted in a stretch, budget tokens left after the decodes,
// as long as the stretch evicts none of keep, the cached blocks the head
// would reuse. The head cannot have its blocks now, and a stretch only
// lowers the free blocks, until it evicts such a block: with its prompt
// chunked, fewer hits can mean fewer blocks for this step. So the stretch
// may take only the free blocks queued before the first of keep. A head
// whose prompt continues a session might find blocks made by a running
// turn's output, and paused requests would be freed for it: neither is
// certain.
func (s *Scheduler) headStaysOut(budget int) (keep []int32, ok bool) {
	if budget <= 0 {
		return nil, true // admission is not even tried
	}
	q := s.waiting.Peek()
	if len(s.paused) > 0 || (q.Content != nil && q.Content.Session != 0) {
		return nil, false
	}
	base := q.Computed
	if s.kv.caching && q.blocks == 0 {
		base = s.kv.lookup(q)
		keep = s.kv.hits // valid until the next lookup
	}
	return keep, s.kv.need(q, base+s.chunk(q.Tokens()-base, budget), keep) > s.kv.free
}

// stretchTakes counts the blocks the first steps of a stretch take, at
// most limit: when step j would take more it returns -j.
func (s *Scheduler) stretchTakes(steps, limit int) int {
	bs, taken := s.cfg.BlockSize, 0
	for j := 1; j <= steps; j++ {
		if taken += s.phases[(j-1)%bs]; taken > limit {
			return -j
		}
	}
	return taken
}

// skipsWindows reports whether a window that passes in a stretch skips
// its prediction (Complete's lazy rule), as it does while nothing is
// queued: in a stretch the queue cannot change.
func (s *Scheduler) skipsWindows() bool {
	return s.pol.Predictive() && s.cfg.LazyPredictions && s.pol.Rerank() != RerankResubmit && !s.queued(0)
}

// room is how many more tokens q's blocks hold.
func (s *Scheduler) room(q *Seq) int { return q.blocks*s.cfg.BlockSize - q.Computed }

// Advance takes the first len(ends) steps of the stretch Stretch reported
// (at most that many), step j ending at ends[j]: the same blocks are
// taken and cached in the same order, and each request ends with the
// tokens, times and records as many calls of Next and Complete would
// leave. OnGap is not called: every running request's gap at step j is
// ends[j] less the end before it, and the driver reports them where its
// clock puts them (a simulator with several engines interleaves them with
// the others' steps, so that sums of gaps add in the same order).
func (s *Scheduler) Advance(ends []float64) {
	m := len(ends)
	if m == 0 {
		return
	}
	bs := s.cfg.BlockSize
	n := len(s.running)
	// The requests with a block event (one filling: cached; one starting:
	// grown) at each step, in running order: by room, a block fills at
	// the steps j = room (mod bs) and one starts at j = room+1 (mod bs).
	if cap(s.byRoom) < bs {
		s.byRoom = make([][]int32, bs)
	}
	s.byRoom = s.byRoom[:bs]
	for i := range s.byRoom {
		s.byRoom[i] = s.byRoom[i][:0]
	}
	if cap(s.computed0) < n {
		s.computed0 = make([]int, n)
	}
	c0 := s.computed0[:n]
	for i, q := range s.running {
		c0[i] = q.Computed
		r := s.room(q) % bs
		s.byRoom[r] = append(s.byRoom[r], int32(i))
	}
	prev := s.running[0].lastToken
	maxGap := 0.0
	for j := 1; j <= m; j++ {
		s.step++
		s.stats.Steps++
		// At step j a request computes the token at c0+j-1, filling its
		// blocks to upTo = c0+j: a block fills (and is named) when upTo is
		// a multiple of bs, j = room (mod bs), and one starts the step
		// after. The two lists merge in running order, as Schedule visits.
		fill, grow := s.byRoom[j%bs], s.byRoom[(j-1)%bs]
		if !s.kv.caching {
			fill = nil // nothing to name
		}
		a, g := 0, 0
		for a < len(fill) || g < len(grow) {
			var i int32
			if g >= len(grow) || (a < len(fill) && fill[a] < grow[g]) {
				i, a = fill[a], a+1
			} else {
				i, g = grow[g], g+1
			}
			q := s.running[i]
			q.Computed = c0[i] + j - 1
			s.alloc(q, 1) // Stretch counted the blocks: it cannot fail
		}
		maxGap = max(maxGap, ends[j-1]-prev)
		prev = ends[j-1]
	}
	if m > 1 {
		s.clock = ends[m-2] // the last step's start, as Next(now) leaves it
	}
	skips := s.skipsWindows()
	k := s.cfg.PredictionInterval
	for i, q := range s.running {
		if skips {
			// Windows at steps d, d+k, ...: each skipped, the last noted.
			if d := k - (q.Generated - q.lastPred); d <= m {
				c := 1 + (m-d)/k
				q.lastPred = q.Generated + d + (c-1)*k
				s.stats.PredictionsSkipped += int64(c)
			}
		}
		q.Computed = c0[i] + m
		q.Generated += m
		q.rec.Generated = q.Generated
		q.rec.MaxGap = max(q.rec.MaxGap, maxGap)
		q.lastToken = prev
	}
}
