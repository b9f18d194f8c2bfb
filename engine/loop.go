package engine

import (
	"context"
	"fmt"

	"github.com/elis-sim/elis-sim/policies"
)

// Run serves the worker's inbox until it is closed and every request is
// done, or ctx is cancelled (what it holds is then abandoned); done gets
// the records of requests that finished, were rejected or aborted. aborts
// (nil for none) names requests whose clients left: the core drops them
// and frees their blocks. While the core is idle Run blocks: an idle
// engine costs no CPU, whatever ctx is (context.Background included).
func (w *Worker) Run(ctx context.Context, in <-chan Submission, aborts <-chan int, done func([]policies.Record)) error {
	collect := func() {
		recs := w.Core.TakeFinished()
		for _, r := range recs {
			w.finished(r.Index)
		}
		if len(recs) > 0 {
			done(recs)
		}
		if w.AfterStep != nil {
			w.AfterStep(w.Core)
		}
	}
	for {
		w.passes.Add(1)
		// Take every request that has arrived, and every abort.
		for in != nil || aborts != nil {
			var got bool
			if in, aborts, got = w.receive(in, aborts, nil, false); !got {
				break
			}
		}
		collect()
		if ctx.Err() != nil {
			return nil
		}
		if w.Core.Idle() {
			w.busy = false
			if in == nil {
				return nil
			}
			// Nothing to run: wait for an arrival, an abort or the end.
			in, aborts, _ = w.receive(in, aborts, ctx.Done(), true)
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		ran, err := w.Step()
		w.busy = ran
		if err != nil {
			return err
		}
		if !ran {
			return fmt.Errorf("worker %d stalled with %d running and %d waiting", w.ID, w.Core.Running(), w.Core.Waiting())
		}
		collect()
	}
}

// receive takes one arrival or abort into the core. Without block it
// reports false when none is ready; with block it waits until one comes
// or wait is closed (a nil wait, as a context that is never cancelled
// gives, waits for an arrival or an abort alone). A closed channel comes
// back nil.
func (w *Worker) receive(in <-chan Submission, aborts <-chan int, wait <-chan struct{}, block bool) (<-chan Submission, <-chan int, bool) {
	var r Submission
	var i int
	var fromIn, ok bool
	if !block {
		select {
		case r, ok = <-in:
			fromIn = true
		case i, ok = <-aborts:
		default:
			return in, aborts, false
		}
	} else {
		select {
		case r, ok = <-in:
			fromIn = true
		case i, ok = <-aborts:
		case <-wait:
			return in, aborts, false
		}
	}
	switch {
	case fromIn && !ok:
		return nil, aborts, true
	case fromIn:
		w.Add(r)
	case !ok:
		return in, nil, true
	default:
		w.abort(i)
	}
	return in, aborts, true
}

// abort drops request i from the core; an abort that overtook its request
// (they come on different channels) waits for it.
func (w *Worker) abort(i int) {
	if _, known := w.seqs[i]; known {
		w.Core.Abort(i, w.now()) // false: it finished meanwhile
		return
	}
	if w.early == nil {
		w.early = map[int]bool{}
	}
	w.early[i] = true
}
