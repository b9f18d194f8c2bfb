package sim

import (
	"sync"

	"github.com/elis-sim/elis-sim/traces"
)

// Job is one run of a batch such as a load sweep.
type Job struct {
	Trace  *traces.Trace
	Config Config
}

// RunAll runs jobs on parallel goroutines (each run is single-threaded
// and deterministic, so results do not depend on parallel) and returns the
// results in job order. done, when set, is called after each run.
func RunAll(jobs []Job, parallel int, done func()) ([]*Result, error) {
	parallel = max(1, min(parallel, len(jobs)))
	results := make([]*Result, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i], errs[i] = Run(jobs[i].Trace, jobs[i].Config)
				if done != nil {
					mu.Lock()
					done()
					mu.Unlock()
				}
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return results, nil
}
