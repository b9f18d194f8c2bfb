package policies

import (
	"math/rand/v2"
	"testing"
)

// The FIFO queue gives the heap's order: random pushes (arrivals, front
// insertions, and orders the scheduler never makes), pops, removals and
// fixes, step by step against a heap ordered by the same key.
func TestFIFOQueueMatchesTheHeap(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		heap := waitQueue{less: func(a, b *Seq) bool { return a.order < b.order }}
		fifo := waitQueue{fifo: true}
		twins := map[*Seq]*Seq{}
		var queued []*Seq // the heap's members
		next, front := int64(0), int64(0)
		for step := range 300 {
			switch op := rng.IntN(10); {
			case op < 4: // an arrival
				next++
				push(&heap, &fifo, twins, &queued, next)
			case op < 6: // a preempted request, put first
				front--
				push(&heap, &fifo, twins, &queued, front)
			case op < 7: // an order the scheduler never makes
				push(&heap, &fifo, twins, &queued, rng.Int64N(2*next+3)-next-1)
			case op < 8 && len(queued) > 0: // an abort
				i := rng.IntN(len(queued))
				s := queued[i]
				heap.Remove(s)
				fifo.Remove(twins[s])
				queued = append(queued[:i], queued[i+1:]...)
			case op < 9 && len(queued) > 0: // a new key
				s := queued[rng.IntN(len(queued))]
				o := rng.Int64N(2*next+3) - next - 1
				if taken(queued, o) {
					break
				}
				s.order, twins[s].order = o, o
				heap.Fix(s)
				fifo.Fix(twins[s])
			case heap.Len() > 0:
				if p, f := heap.Peek(), fifo.Peek(); f.order != p.order {
					t.Fatalf("seed %d step %d: peek %d, heap %d", seed, step, f.order, p.order)
				}
				p, f := heap.Pop(), fifo.Pop()
				if f != twins[p] {
					t.Fatalf("seed %d step %d: popped order %d, heap %d", seed, step, f.order, p.order)
				}
				for i, s := range queued {
					if s == p {
						queued = append(queued[:i], queued[i+1:]...)
						break
					}
				}
			}
			if heap.Len() != fifo.Len() {
				t.Fatalf("seed %d step %d: %d queued, heap %d", seed, step, fifo.Len(), heap.Len())
			}
		}
	}
}

func push(heap, fifo *waitQueue, twins map[*Seq]*Seq, queued *[]*Seq, order int64) {
	if taken(*queued, order) {
		return
	}
	a, b := &Seq{order: order, heapIdx: -1}, &Seq{order: order, heapIdx: -1}
	twins[a] = b
	heap.Push(a)
	fifo.Push(b)
	*queued = append(*queued, a)
}

// taken reports whether a queued request has order: orders are unique in
// the scheduler, so the test makes none twice.
func taken(queued []*Seq, order int64) bool {
	for _, s := range queued {
		if s.order == order {
			return true
		}
	}
	return false
}
