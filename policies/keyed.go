package policies

import (
	"fmt"
	"iter"
	"math/bits"
)

// keyedQueue is the waiting queue of a policy that orders by predicted
// remainder (waitQueue's keyed form): buckets by the prediction's leading
// bits, each a small heap by the whole key, plus one heap of the requests
// the starvation guard promoted, which go before every other.
//
// It exists for scale. An overloaded ISRTF run queues hundreds of
// thousands, and one heap of them walks ten levels of a 32-megabyte array
// at every admission, nearly every level a cache miss (a tenth of the
// run). Buckets keep the same order, since a bucket's predictions are all
// below the next one's, and admissions take from the lowest bucket, whose
// heap of a few hundred stays in cache.
type keyedQueue struct {
	promoted keyHeap
	pages    []*bucketPage // buckets by bucketOf, a page of them made when first used
	used     []int32       // the buckets made
	full     []uint64      // bit b set: bucket b holds requests
	lo       int           // no bucket below lo holds requests
	n        int
	// By queue slot: its heap, and its index there (pos).
	heapOf []int32 // a bucket, or promotedHeap
	queueSlots
}

// bucketBits is how many leading bits of a prediction's order (sign,
// exponent, six bits of mantissa) pick its bucket: 64 buckets an octave.
const bucketBits = 18

const promotedHeap = -1

// A page of buckets: 512 of the 2^18, so that a scheduler makes 4 kB
// tables for the buckets its predictions use rather than 2 MB for all.
const pageBits = 9

type bucketPage [1 << pageBits]*keyHeap

// bucket is bucket b, made when new.
func (q *keyedQueue) bucket(b int) *keyHeap {
	if q.pages == nil {
		q.pages = make([]*bucketPage, 1<<(bucketBits-pageBits))
		q.full = make([]uint64, 1<<bucketBits/64)
		q.lo = 1 << bucketBits
	}
	p := q.pages[b>>pageBits]
	if p == nil {
		p = new(bucketPage)
		q.pages[b>>pageBits] = p
	}
	h := p[b&(1<<pageBits-1)]
	if h == nil {
		h = &keyHeap{}
		p[b&(1<<pageBits-1)] = h
		q.used = append(q.used, int32(b))
	}
	return h
}

// bucketOf is the bucket of a key that is not promoted: it keeps the
// keys' order, as floatOrder does.
func bucketOf(k *waitKey) int { return int(k.pred >> (64 - bucketBits)) }

// keyHeap is a 4-ary min-heap of requests by key; keys[i] and slots[i] are
// items[i]'s. A sift moves a hole rather than swapping.
type keyHeap struct {
	items []*Seq
	keys  []waitKey
	slots []int32
}

func (q *keyedQueue) Len() int { return q.n }

func (q *keyedQueue) heap(h int32) *keyHeap {
	if h == promotedHeap {
		return &q.promoted
	}
	return q.pages[h>>pageBits][h&(1<<pageBits-1)]
}

// first is the heap holding the first request, nil when none is queued.
func (q *keyedQueue) first() (*keyHeap, int32) {
	if len(q.promoted.items) > 0 {
		return &q.promoted, promotedHeap
	}
	for w := q.lo >> 6; w < len(q.full); w++ {
		x := q.full[w]
		if w == q.lo>>6 {
			x &= ^uint64(0) << (q.lo & 63)
		}
		if x != 0 {
			q.lo = w<<6 + bits.TrailingZeros64(x)
			return q.heap(int32(q.lo)), int32(q.lo)
		}
	}
	return nil, 0
}

func (q *keyedQueue) Peek() *Seq {
	h, _ := q.first()
	return h.items[0]
}

func (q *keyedQueue) Push(s *Seq) {
	slot := q.takeSlot()
	if int(slot) == len(q.heapOf) {
		q.heapOf = append(q.heapOf, 0)
	}
	s.queueSlot = slot
	q.insert(s, keyOf(s), slot)
	q.n++
}

// insert puts s, with key k and queue slot slot, in its heap.
func (q *keyedQueue) insert(s *Seq, k waitKey, slot int32) {
	h, at := &q.promoted, int32(promotedHeap)
	if k.promoted == 0 {
		b := bucketOf(&k)
		h, at = q.bucket(b), int32(b)
		q.full[b>>6] |= 1 << (b & 63)
		q.lo = min(q.lo, b)
	}
	q.heapOf[slot] = at
	h.push(s, k, slot, q.pos)
}

func (q *keyedQueue) Pop() *Seq {
	h, at := q.first()
	return q.take(h, at, 0)
}

// take removes the request at index i of heap h (numbered at).
func (q *keyedQueue) take(h *keyHeap, at int32, i int) *Seq {
	s, slot := h.removeAt(i, q.pos)
	if at != promotedHeap && len(h.items) == 0 {
		q.full[at>>6] &^= 1 << (at & 63)
	}
	q.giveSlot(slot)
	s.queueSlot = -1
	q.n--
	return s
}

// Remove takes s, which must be queued, out of the queue.
func (q *keyedQueue) Remove(s *Seq) {
	at := q.heapOf[s.queueSlot]
	q.take(q.heap(at), at, int(q.pos[s.queueSlot]))
}

// Fix restores order after s's key changed: in its heap when it stays in
// it, else by moving it, with its slot, to the new one.
func (q *keyedQueue) Fix(s *Seq) {
	slot := s.queueSlot
	at, k := q.heapOf[slot], keyOf(s)
	to := int32(promotedHeap)
	if k.promoted == 0 {
		to = int32(bucketOf(&k))
	}
	if to == at {
		h := q.heap(at)
		i := int(q.pos[slot])
		h.keys[i] = k
		if !h.down(i, q.pos) {
			h.up(i, q.pos)
		}
		return
	}
	h := q.heap(at)
	h.removeAt(int(q.pos[slot]), q.pos)
	if at != promotedHeap && len(h.items) == 0 {
		q.full[at>>6] &^= 1 << (at & 63)
	}
	q.insert(s, k, slot)
}

// All yields the queued requests, in no particular order.
func (q *keyedQueue) All() iter.Seq[*Seq] {
	return func(yield func(*Seq) bool) {
		for _, s := range q.promoted.items {
			if !yield(s) {
				return
			}
		}
		for w, x := range q.full {
			for ; x != 0; x &= x - 1 {
				for _, s := range q.heap(int32(w<<6 + bits.TrailingZeros64(x))).items {
					if !yield(s) {
						return
					}
				}
			}
		}
	}
}

// check verifies the queue: every request in the heap its key picks, by
// its current key, in heap order, its slot saying where it is, the count
// and the marks of full buckets right.
func (q *keyedQueue) check() error {
	n := len(q.promoted.items)
	if err := q.promoted.check(promotedHeap, q); err != nil {
		return err
	}
	for _, b := range q.used {
		h := q.heap(b)
		if marked := q.full[b>>6]>>(b&63)&1 == 1; marked != (len(h.items) > 0) || marked && int(b) < q.lo {
			return fmt.Errorf("waiting bucket %d holds %d requests, marked %v (lowest %d)", b, len(h.items), marked, q.lo)
		}
		if err := h.check(b, q); err != nil {
			return err
		}
		n += len(h.items)
	}
	if n != q.n {
		return fmt.Errorf("%d requests in the waiting heaps, %d counted", n, q.n)
	}
	return nil
}

func (h *keyHeap) check(at int32, q *keyedQueue) error {
	for i, s := range h.items {
		k := keyOf(s)
		want := int32(promotedHeap)
		if k.promoted == 0 {
			want = int32(bucketOf(&k))
		}
		switch slot := h.slots[i]; {
		case h.keys[i] != k:
			return fmt.Errorf("waiting request %s is queued by key %+v, its key is %+v", s.ID, h.keys[i], k)
		case want != at:
			return fmt.Errorf("waiting request %s is in heap %d, its key's is %d", s.ID, at, want)
		case s.queueSlot != slot || q.heapOf[slot] != at || q.pos[slot] != int32(i):
			return fmt.Errorf("waiting request %s at %d of heap %d holds queue slot %d, which says %d of %d", s.ID, i, at, s.queueSlot, q.pos[slot], q.heapOf[slot])
		case i > 0 && h.keys[i].less(&h.keys[(i-1)/arity]):
			return fmt.Errorf("waiting request %s is out of heap order", s.ID)
		}
	}
	return nil
}

func (h *keyHeap) push(s *Seq, k waitKey, slot int32, pos []int32) {
	h.items = append(h.items, s)
	h.keys = append(h.keys, k)
	h.slots = append(h.slots, slot)
	h.up(len(h.items)-1, pos)
}

// removeAt takes out the request at i, returning it and its slot.
func (h *keyHeap) removeAt(i int, pos []int32) (*Seq, int32) {
	n := len(h.items) - 1
	s, slot := h.items[i], h.slots[i]
	if i != n {
		h.move(n, i, pos)
	}
	h.items[n] = nil
	h.items, h.keys, h.slots = h.items[:n], h.keys[:n], h.slots[:n]
	if i != n && !h.down(i, pos) {
		h.up(i, pos)
	}
	return s, slot
}

func (h *keyHeap) move(from, to int, pos []int32) {
	h.items[to], h.keys[to], h.slots[to] = h.items[from], h.keys[from], h.slots[from]
	pos[h.slots[to]] = int32(to)
}

func (h *keyHeap) up(j int, pos []int32) {
	s, k, slot := h.items[j], h.keys[j], h.slots[j]
	for j > 0 {
		i := (j - 1) / arity
		if !k.less(&h.keys[i]) {
			break
		}
		h.move(i, j, pos)
		j = i
	}
	h.items[j], h.keys[j], h.slots[j] = s, k, slot
	pos[slot] = int32(j)
}

func (h *keyHeap) down(i0 int, pos []int32) bool {
	s, k, slot := h.items[i0], h.keys[i0], h.slots[i0]
	i, n := i0, len(h.items)
	for {
		c := arity*i + 1
		if c >= n {
			break
		}
		m := c
		for x := c + 1; x < min(c+arity, n); x++ {
			if h.keys[x].less(&h.keys[m]) {
				m = x
			}
		}
		if !h.keys[m].less(&k) {
			break
		}
		h.move(m, i, pos)
		i = m
	}
	h.items[i], h.keys[i], h.slots[i] = s, k, slot
	pos[slot] = int32(i)
	return i > i0
}
