package policies

// waitQueue is the waiting queue: a binary heap ordered by the policy.
// It is written out rather than built on container/heap to avoid interface
// calls on the simulator's hot path.
type waitQueue struct {
	items []*Seq
	less  func(a, b *Seq) bool
}

func (q *waitQueue) Len() int             { return len(q.items) }
func (q *waitQueue) Peek() *Seq           { return q.items[0] }
func (q *waitQueue) lessAt(i, j int) bool { return q.less(q.items[i], q.items[j]) }

func (q *waitQueue) swap(i, j int) {
	q.items[i], q.items[j] = q.items[j], q.items[i]
	q.items[i].heapIdx = i
	q.items[j].heapIdx = j
}

func (q *waitQueue) Push(s *Seq) {
	s.heapIdx = len(q.items)
	q.items = append(q.items, s)
	q.up(s.heapIdx)
}

func (q *waitQueue) Pop() *Seq { return q.Remove(0) }

func (q *waitQueue) Remove(i int) *Seq {
	n := len(q.items) - 1
	s := q.items[i]
	if i != n {
		q.swap(i, n)
	}
	q.items[n] = nil
	q.items = q.items[:n]
	if i != n {
		if !q.down(i) {
			q.up(i)
		}
	}
	s.heapIdx = -1
	return s
}

// Fix restores order after the key of the item at i changed.
func (q *waitQueue) Fix(i int) {
	if !q.down(i) {
		q.up(i)
	}
}

func (q *waitQueue) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !q.lessAt(j, i) {
			break
		}
		q.swap(i, j)
		j = i
	}
}

func (q *waitQueue) down(i0 int) bool {
	i, n := i0, len(q.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && q.lessAt(r, l) {
			j = r
		}
		if !q.lessAt(j, i) {
			break
		}
		q.swap(i, j)
		i = j
	}
	return i > i0
}
