package sim

import (
	"fmt"
	"strings"
)

// Router picks the worker a new request goes to.
type Router interface {
	Route(predictedOutput float64, ws []*worker) int
}

// Routers are the built-in routers by name.
var Routers = map[string]func() Router{
	// least-loaded is ELIS's: the worker with the fewest unfinished jobs.
	"least-loaded": func() Router { return leastLoaded{} },
	"round-robin":  func() Router { return &roundRobin{} },
	// least-predicted-work: the fewest predicted output tokens still owed.
	"least-predicted-work": func() Router { return leastWork{} },
}

// NewRouter returns the named router.
func NewRouter(name string) (Router, error) {
	f, ok := Routers[name]
	if !ok {
		return nil, fmt.Errorf("unknown router %q (valid: %s)", name, strings.Join(keys(Routers), ", "))
	}
	return f(), nil
}

// argmin returns the first worker with the smallest key.
func argmin(ws []*worker, key func(*worker) float64) int {
	best := 0
	for i, w := range ws {
		if key(w) < key(ws[best]) {
			best = i
		}
	}
	return best
}

type leastLoaded struct{}

func (leastLoaded) Route(_ float64, ws []*worker) int {
	return argmin(ws, func(w *worker) float64 { return float64(w.jobs) })
}

type roundRobin struct{ next int }

func (r *roundRobin) Route(_ float64, ws []*worker) int {
	i := r.next % len(ws)
	r.next++
	return i
}

type leastWork struct{}

func (leastWork) Route(_ float64, ws []*worker) int {
	return argmin(ws, func(w *worker) float64 { return w.work })
}
