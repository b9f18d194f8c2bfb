package policies

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Load is what a router knows of one engine replica.
type Load struct {
	Jobs int     // unfinished requests routed to it
	Work float64 // predicted output tokens routed to it and not finished
}

// Router picks the replica a new request goes to; the simulator and replay
// use the same routers.
type Router interface {
	Route(loads []Load) int
	// NeedsWork reports whether Route reads Load.Work, so callers predict
	// each request's output when it arrives.
	NeedsWork() bool
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
		return nil, fmt.Errorf("unknown router %q (valid: %s)", name, strings.Join(slices.Sorted(maps.Keys(Routers)), ", "))
	}
	return f(), nil
}

// argmin returns the first replica with the smallest key.
func argmin(loads []Load, key func(Load) float64) int {
	best := 0
	for i, l := range loads {
		if key(l) < key(loads[best]) {
			best = i
		}
	}
	return best
}

type leastLoaded struct{}

func (leastLoaded) Route(loads []Load) int {
	return argmin(loads, func(l Load) float64 { return float64(l.Jobs) })
}
func (leastLoaded) NeedsWork() bool { return false }

type roundRobin struct{ next int }

func (r *roundRobin) Route(loads []Load) int {
	i := r.next % len(loads)
	r.next++
	return i
}
func (*roundRobin) NeedsWork() bool { return false }

type leastWork struct{}

func (leastWork) Route(loads []Load) int {
	return argmin(loads, func(l Load) float64 { return l.Work })
}
func (leastWork) NeedsWork() bool { return true }
