package policies

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
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
				queued = slices.DeleteFunc(queued, func(s *Seq) bool { return s == p })
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
	a, b := &Seq{order: order, queueSlot: -1}, &Seq{order: order, queueSlot: -1}
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

// odd are the floats whose order cmp.Compare defines with care.
var odd = []float64{math.Inf(1), math.Inf(-1), math.NaN(), math.Copysign(0, -1), 0, -3, -math.SmallestNonzeroFloat64,
	math.SmallestNonzeroFloat64, math.MaxFloat64, -math.MaxFloat64}

// floatOrder orders floats as cmp.Compare does.
func TestFloatOrderIsCmpCompare(t *testing.T) {
	for _, a := range odd {
		for _, b := range odd {
			if got, want := cmp.Compare(floatOrder(a), floatOrder(b)), cmp.Compare(a, b); got != want {
				t.Fatalf("%v against %v: %d, cmp.Compare %d", a, b, got, want)
			}
		}
	}
}

// The keyed queue gives the order of a heap that asks the policy: random
// pushes, pops, removals, and new predictions and promotions (fixed),
// with ties in predictions, arrivals and promotions, against ISRTF's Less.
func TestKeyedQueueMatchesThePolicy(t *testing.T) {
	pol, err := New("isrtf", RerankPause)
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 2))
		plain := waitQueue{less: pol.Less}
		keyed := waitQueue{less: pol.Less, keyed: true}
		twins := map[*Seq]*Seq{}
		var queued []*Seq
		order := int64(0)
		draw := func(s *Seq) {
			switch rng.IntN(8) {
			case 0, 1:
				s.Predicted = odd[rng.IntN(len(odd))]
			case 2:
				s.Predicted = 100 + rng.Float64() // one bucket
			case 3:
				s.Predicted = rng.ExpFloat64() * 300 // many
			default:
				s.Predicted = float64(rng.IntN(6)) * 10 // ties
			}
			s.promoted = 0
			if rng.IntN(4) == 0 {
				s.promoted = int64(rng.IntN(3) + 1)
			}
		}
		for step := range 300 {
			switch op := rng.IntN(10); {
			case op < 4:
				order++
				a := &Seq{order: order, queueSlot: -1}
				a.Arrival = float64(rng.IntN(5))
				if rng.IntN(6) == 0 {
					a.Arrival = odd[rng.IntN(len(odd))]
				}
				draw(a)
				b := *a
				twins[a] = &b
				plain.Push(a)
				keyed.Push(&b)
				queued = append(queued, a)
			case op < 5 && len(queued) > 0:
				i := rng.IntN(len(queued))
				s := queued[i]
				plain.Remove(s)
				keyed.Remove(twins[s])
				queued = append(queued[:i], queued[i+1:]...)
			case op < 7 && len(queued) > 0:
				s := queued[rng.IntN(len(queued))]
				draw(s)
				twins[s].Predicted, twins[s].promoted = s.Predicted, s.promoted
				plain.Fix(s)
				keyed.Fix(twins[s])
			case plain.Len() > 0:
				p, k := plain.Pop(), keyed.Pop()
				if k != twins[p] {
					t.Fatalf("seed %d step %d: popped order %d, the policy's heap %d", seed, step, k.order, p.order)
				}
				queued = slices.DeleteFunc(queued, func(s *Seq) bool { return s == p })
			}
			if plain.Len() != keyed.Len() {
				t.Fatalf("seed %d step %d: %d queued, the policy's heap %d", seed, step, keyed.Len(), plain.Len())
			}
			if err := keyed.check(); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			if err := plain.check(); err != nil {
				t.Fatalf("seed %d step %d: the policy's heap: %v", seed, step, err)
			}
		}
	}
}
