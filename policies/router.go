package policies

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Load is what a router knows of one engine replica.
type Load struct {
	Jobs   int     // unfinished requests routed to it
	Tokens int     // their prompt and output tokens
	Work   float64 // predicted output tokens routed to it and not finished
}

// Router picks the replica a new request goes to; every driver uses the
// same routers, through a Dispatcher.
type Router interface {
	Route(r *Request, loads []Load) int
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
	// prefix-affinity: the replica that was sent most of the request's
	// prefix, unless it is much busier than the least loaded.
	"prefix-affinity": func() Router { return newPrefixAffinity() },
}

// RouterNames lists the built-in routers, sorted.
func RouterNames() []string { return slices.Sorted(maps.Keys(Routers)) }

// DefaultRouter is ELIS's router, what a driver uses when none is named.
const DefaultRouter = "least-loaded"

// NewRouter returns the named router ("" for DefaultRouter).
func NewRouter(name string) (Router, error) {
	if name == "" {
		name = DefaultRouter
	}
	f, ok := Routers[name]
	if !ok {
		return nil, fmt.Errorf("unknown router %q (valid: %s)", name, strings.Join(RouterNames(), ", "))
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

func (leastLoaded) Route(_ *Request, loads []Load) int {
	return argmin(loads, func(l Load) float64 { return float64(l.Jobs) })
}
func (leastLoaded) NeedsWork() bool { return false }

type roundRobin struct{ next int }

func (r *roundRobin) Route(_ *Request, loads []Load) int {
	i := r.next % len(loads)
	r.next++
	return i
}
func (*roundRobin) NeedsWork() bool { return false }

type leastWork struct{}

func (leastWork) Route(_ *Request, loads []Load) int {
	return argmin(loads, func(l Load) float64 { return l.Work })
}
func (leastWork) NeedsWork() bool { return true }

// prefixAffinity routes a request to the replica it sent the longest
// prefix of the request's content to, among replicas whose unfinished
// jobs are within a quarter (and at least 4 jobs) of the least loaded's;
// without a match, to the least loaded. It remembers where it sent each
// prefix rather than asking the engines what they hold (llm-d calls this
// an estimated prefix scorer), so it works the same for the simulator,
// replay and a fleet of real servers; an engine may have evicted what the
// router believes it holds.
type prefixAffinity struct {
	owner map[uint64]int // chained prefix key -> the replica last sent it
	keys  []uint64
	match []int
}

// affinityMemory bounds the router's memory of prefixes; past it, it
// forgets them all and starts again.
const affinityMemory = 1 << 21

func newPrefixAffinity() *prefixAffinity { return &prefixAffinity{owner: map[uint64]int{}} }

func (*prefixAffinity) NeedsWork() bool { return false }

// prefixKeys are r's content names, chained so that each names the
// whole prefix up to it: one per hash id, or the session's name.
func prefixKeys(r *Request, dst []uint64) []uint64 {
	dst = dst[:0]
	if r.Content == nil {
		return dst
	}
	if r.Content.Session != 0 {
		return append(dst, mix(r.Content.Session, seedSession))
	}
	h := uint64(seedChain)
	for _, id := range r.Content.Hashes {
		h = mix(h, id)
		dst = append(dst, h)
	}
	return dst
}

func (p *prefixAffinity) Route(r *Request, loads []Load) int {
	least := argmin(loads, func(l Load) float64 { return float64(l.Jobs) })
	p.keys = prefixKeys(r, p.keys)
	if len(p.keys) == 0 {
		return least
	}
	if cap(p.match) < len(loads) {
		p.match = make([]int, len(loads))
	}
	match := p.match[:len(loads)]
	clear(match)
	for i, k := range p.keys {
		if w, ok := p.owner[k]; ok && w < len(loads) {
			match[w] = i + 1 // chained: owning key i means holding keys 0..i
		}
	}
	bound := loads[least].Jobs + max(4, loads[least].Jobs/4)
	best := least
	for w, l := range loads {
		if l.Jobs <= bound && (match[w] > match[best] || match[w] == match[best] && l.Jobs < loads[best].Jobs) {
			best = w
		}
	}
	if len(p.owner)+len(p.keys) > affinityMemory {
		clear(p.owner)
	}
	for _, k := range p.keys {
		p.owner[k] = best
	}
	return best
}
