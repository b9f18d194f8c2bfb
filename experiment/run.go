package experiment

import (
	"fmt"
	"sync"
)

// Stats count what Run did.
type Stats struct {
	Ran, Cached int
}

// Run runs the cells store does not have yet, parallel at a time, and
// puts each record as its cell finishes; done, when set, is called after
// each cell (run or found). Memory is what parallel runs hold, not the
// grid's: records go to the store, not back to the caller. The first
// error stops the sweep after the cells in flight; what finished stays.
func Run(store Store, cells []Cell, parallel int, run func(*Cell) (*Record, error), done func()) (Stats, error) {
	var st Stats
	var todo []*Cell
	for i := range cells {
		if store.Has(cells[i].Key) {
			st.Cached++
			if done != nil {
				done()
			}
			continue
		}
		todo = append(todo, &cells[i])
	}
	parallel = max(1, min(parallel, len(todo)))
	next := make(chan *Cell)
	var mu sync.Mutex
	var first error
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return first != nil }
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				if failed() {
					continue // drain: no new cell starts after an error
				}
				r, err := run(c)
				if err == nil {
					r.Key = c.Key
					err = store.Put(r)
				}
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("cell %s (%s, %gx, seed %d): %w", c.Key, c.Label(), c.Load, c.Seed, err)
				}
				if err == nil {
					st.Ran++
				}
				if done != nil {
					done()
				}
				mu.Unlock()
			}
		}()
	}
	for _, c := range todo {
		if failed() {
			break
		}
		next <- c
	}
	close(next)
	wg.Wait()
	return st, first
}

// Missing lists the cells none of stores has.
func Missing(stores []Store, cells []Cell) []*Cell {
	var out []*Cell
	for i := range cells {
		found := false
		for _, s := range stores {
			if s.Has(cells[i].Key) {
				found = true
				break
			}
		}
		if !found {
			out = append(out, &cells[i])
		}
	}
	return out
}

// Gather reads the records of cells, in the grid's order, from the first
// of stores that has each, and hands each to each: one record is held at a
// time, so a report of a large grid keeps only what it takes from them.
// Cells none has are skipped (see Missing).
func Gather(stores []Store, cells []Cell, each func(*Record) error) error {
	for i := range cells {
		for _, s := range stores {
			r, ok, err := s.Get(cells[i].Key)
			if err != nil {
				return err
			}
			if ok {
				if err := each(r); err != nil {
					return err
				}
				break
			}
		}
	}
	return nil
}
