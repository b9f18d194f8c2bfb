package policies

import (
	"cmp"
	"fmt"
	"iter"
	"math"
	"slices"
)

// waitQueue is the waiting queue, in the policy's order: a binary heap,
// or, where the order is the queue position alone (FCFS without guards),
// two sorted runs. It is written out rather than built on container/heap
// to avoid interface calls on the simulator's hot path.
//
// The FIFO form exists for scale: at a million requests the waiting queue
// of an overloaded FCFS run holds hundreds of thousands, and each pop from
// a heap that size walks twenty levels of scattered requests (most of the
// admission's cost). In queue order a new arrival always goes last and a
// preempted request always first (its order is below every other), so the
// order is kept by appending: arrivals to items, front insertions to
// front, whose last element is the next out.
//
// The keyed form exists for scale too: ordered by predicted remainder
// (ISRTF, SRPT), a heap of hundreds of thousands compared two scattered
// requests through the policy at every level; keyed (keyedQueue), each
// request's key is kept beside it, compared in place, and the requests
// are bucketed by prediction. A request's key is read when it is pushed
// and when it is fixed, which the core does whenever it changes a waiting
// request's key.
//
// A heap finds a request by its queue slot, a small number the request
// holds while queued (freed slots are reused): pos maps slots to heap
// indices, and slots heap indices back. A sift moves requests level by
// level, and each move must say where the request went: written into the
// request itself, that was a cache miss at every level at hundreds of
// thousands queued; written into pos, it lands in a table of a few
// megabytes that mostly stays in cache.
type waitQueue struct {
	items      []*Seq // the heap; FIFO: arrivals, ascending order, items[0] next
	front      []*Seq // FIFO only: descending order, the last next
	less       func(a, b *Seq) bool
	fifo       bool
	keyed      bool       // by predicted remainder: basic's order with byPredicted
	kq         keyedQueue // keyed only
	slots      []int32    // heaps: slots[i] is items[i]'s queue slot
	queueSlots            // heaps: pos[slot] is the slot's index in items
}

// queueSlots hands out the queue slots a heap finds its requests by: pos
// maps each to where its request is (an index the heap gives it meaning
// of); freed slots are handed out again first, so pos stays as small as
// the queue's peak.
type queueSlots struct {
	pos  []int32
	free []int32
}

// takeSlot is a slot not held.
func (t *queueSlots) takeSlot() int32 {
	if n := len(t.free); n > 0 {
		slot := t.free[n-1]
		t.free = t.free[:n-1]
		return slot
	}
	t.pos = append(t.pos, 0)
	return int32(len(t.pos) - 1)
}

// giveSlot frees slot.
func (t *queueSlots) giveSlot(slot int32) { t.free = append(t.free, slot) }

// waitKey is what a keyed heap orders a request by, as basic.Less does
// with byPredicted: promotion, prediction, arrival, queue order. The two
// floats are kept as integers that order as cmp.Compare orders them.
type waitKey struct {
	promoted      int64
	pred, arrival uint64
	order         int64
}

func keyOf(s *Seq) waitKey {
	return waitKey{promoted: s.promoted, pred: floatOrder(s.Predicted), arrival: floatOrder(s.Arrival), order: s.order}
}

// floatOrder maps v to an integer that orders as cmp.Compare orders
// floats: NaN first, then the numbers, -0 equal to +0.
func floatOrder(v float64) uint64 {
	switch {
	case v != v:
		return 0
	case v == 0:
		v = 0 // +0
	}
	b := math.Float64bits(v)
	if b>>63 != 0 {
		return ^b // negative: the larger its magnitude, the smaller
	}
	return b | 1<<63
}

func (a *waitKey) less(b *waitKey) bool {
	if pa, pb := a.promoted != 0, b.promoted != 0; pa != pb {
		return pa
	} else if pa && a.promoted != b.promoted {
		return a.promoted < b.promoted
	}
	if a.pred != b.pred {
		return a.pred < b.pred
	}
	if a.arrival != b.arrival {
		return a.arrival < b.arrival
	}
	return a.order < b.order
}

func (q *waitQueue) Len() int {
	if q.keyed {
		return q.kq.Len()
	}
	return len(q.items) + len(q.front)
}

func (q *waitQueue) Peek() *Seq {
	if q.keyed {
		return q.kq.Peek()
	}
	if n := len(q.front); n > 0 {
		return q.front[n-1]
	}
	return q.items[0]
}

func (q *waitQueue) Push(s *Seq) {
	switch {
	case q.fifo:
		q.pushFIFO(s)
		return
	case q.keyed:
		q.kq.Push(s)
		return
	}
	slot := q.takeSlot()
	s.queueSlot = slot
	i := len(q.items)
	q.pos[slot] = int32(i)
	q.items = append(q.items, s)
	q.slots = append(q.slots, slot)
	q.up(i)
}

// at is the heap index of s, which must be queued in a heap.
func (q *waitQueue) at(s *Seq) int { return int(q.pos[s.queueSlot]) }

// pushFIFO inserts s in order, keeping every order in front below every
// order in items. In each case the scheduler makes (a new arrival, a
// preempted request put first) s goes at the end of its run; any other is
// placed by search, so the order holds whatever the caller does.
func (q *waitQueue) pushFIFO(s *Seq) {
	toFront := len(q.items) > 0 && s.order < q.items[0].order ||
		len(q.items) == 0 && len(q.front) > 0 && s.order < q.front[0].order
	run, by := &q.items, cmpOrder
	if toFront {
		run, by = &q.front, func(a, b *Seq) int { return cmpOrder(b, a) } // descending
	}
	r := *run
	if n := len(r); n == 0 || by(r[n-1], s) < 0 {
		*run = append(r, s) // the usual case, without searching a long queue
		return
	}
	i, _ := slices.BinarySearchFunc(r, s, by)
	*run = slices.Insert(r, i, s)
}

func cmpOrder(a, b *Seq) int { return cmp.Compare(a.order, b.order) }

func (q *waitQueue) Pop() *Seq {
	if q.keyed {
		return q.kq.Pop()
	}
	if q.fifo {
		if n := len(q.front); n > 0 {
			s := q.front[n-1]
			q.front[n-1] = nil
			q.front = q.front[:n-1]
			return s
		}
		s := q.items[0]
		q.items[0] = nil
		if len(q.items) == 1 {
			q.items = q.items[:0] // drained: the next push reuses the room
		} else {
			q.items = q.items[1:] // append reallocates, dropping the spent prefix
		}
		return s
	}
	return q.removeAt(0)
}

// Remove takes s, which must be queued, out of the queue.
func (q *waitQueue) Remove(s *Seq) {
	if q.keyed {
		q.kq.Remove(s)
		return
	}
	if !q.fifo {
		q.removeAt(q.at(s))
		return
	}
	if i := slices.Index(q.front, s); i >= 0 {
		q.front = slices.Delete(q.front, i, i+1)
	} else if i := slices.Index(q.items, s); i >= 0 {
		q.items = slices.Delete(q.items, i, i+1)
	}
}

func (q *waitQueue) removeAt(i int) *Seq {
	n := len(q.items) - 1
	s := q.items[i]
	q.giveSlot(q.slots[i])
	if i != n {
		q.move(n, i)
	}
	q.items[n] = nil
	q.items = q.items[:n]
	q.slots = q.slots[:n]
	if i != n {
		if !q.down(i) {
			q.up(i)
		}
	}
	s.queueSlot = -1
	return s
}

// Fix restores order after s's key changed.
func (q *waitQueue) Fix(s *Seq) {
	switch {
	case q.fifo:
		q.Remove(s)
		q.pushFIFO(s)
		return
	case q.keyed:
		q.kq.Fix(s)
		return
	}
	i := q.at(s)
	if !q.down(i) {
		q.up(i)
	}
}

// All yields the queued requests, in no particular order.
func (q *waitQueue) All() iter.Seq[*Seq] {
	if q.keyed {
		return q.kq.All()
	}
	return func(yield func(*Seq) bool) {
		for _, run := range [][]*Seq{q.front, q.items} {
			for _, s := range run {
				if !yield(s) {
					return
				}
			}
		}
	}
}

// The heap is 4-ary, and a sift moves a hole rather than swapping: at
// hundreds of thousands queued, half the levels of a binary heap, and
// one write of a request's position a level rather than two.
const arity = 4

// put places s, with queue slot slot, at i.
func (q *waitQueue) put(i int, s *Seq, slot int32) {
	q.items[i] = s
	q.slots[i] = slot
	q.pos[slot] = int32(i)
}

// move moves the request at from to to.
func (q *waitQueue) move(from, to int) {
	q.items[to] = q.items[from]
	slot := q.slots[from]
	q.slots[to] = slot
	q.pos[slot] = int32(to)
}

func (q *waitQueue) up(j int) {
	s, slot := q.items[j], q.slots[j]
	for j > 0 {
		i := (j - 1) / arity
		if !q.less(s, q.items[i]) {
			break
		}
		q.move(i, j)
		j = i
	}
	q.put(j, s, slot)
}

func (q *waitQueue) down(i0 int) bool {
	s, slot := q.items[i0], q.slots[i0]
	i, n := i0, len(q.items)
	for {
		c := arity*i + 1
		if c >= n {
			break
		}
		m := c
		for x := c + 1; x < min(c+arity, n); x++ {
			if q.less(q.items[x], q.items[m]) {
				m = x
			}
		}
		if !q.less(q.items[m], s) {
			break
		}
		q.move(m, i)
		i = m
	}
	q.put(i, s, slot)
	return i > i0
}

// check verifies a heap's or the keyed queue's structure: the order, and
// each request's queue slot saying where it is.
func (q *waitQueue) check() error {
	switch {
	case q.keyed:
		return q.kq.check()
	case q.fifo:
		return nil
	}
	for i, s := range q.items {
		switch {
		case s.queueSlot != q.slots[i] || q.pos[s.queueSlot] != int32(i):
			return fmt.Errorf("waiting request %s at heap index %d holds queue slot %d, which says index %d", s.ID, i, s.queueSlot, q.pos[s.queueSlot])
		case i > 0 && q.less(s, q.items[(i-1)/arity]):
			return fmt.Errorf("waiting request %s is out of heap order", s.ID)
		}
	}
	return nil
}
