package policies

import (
	"cmp"
	"fmt"
	"sort"
	"strings"
)

// Rerank says what happens when a running request crosses a prediction
// window (every K generated tokens) under a predictive policy.
type Rerank uint8

const (
	// RerankNone: predictions update, but running requests are never
	// re-ranked; only the waiting queue is ordered. The public vLLM ISRTF
	// patch behaves this way.
	RerankNone Rerank = iota
	// RerankPause: the ELIS paper. At a window boundary a running request
	// is re-ranked against the waiting ones; if a waiting request now ranks
	// better and the batch is full, the running one is paused: it returns to
	// the waiting queue keeping its KV blocks while memory allows.
	RerankPause
	// RerankResubmit: ELIS's worker as built on vLLM 0.5.0. Every window
	// ends the request; it comes back as a new request whose prompt is the
	// prompt plus the text so far, so its KV cache is rebuilt by a prefill.
	RerankResubmit
)

var rerankNames = map[string]Rerank{"patch": RerankNone, "paper": RerankPause, "resubmit": RerankResubmit}

// ParseRerank reads an ISRTF mode name: paper, resubmit or patch.
func ParseRerank(s string) (Rerank, error) {
	r, ok := rerankNames[s]
	if !ok {
		return 0, fmt.Errorf("ISRTF mode %q: valid modes are paper, resubmit, patch", s)
	}
	return r, nil
}

func (r Rerank) String() string {
	for n, v := range rerankNames {
		if v == r {
			return n
		}
	}
	return "?"
}

// Policy orders the waiting queue and picks preemption victims.
type Policy interface {
	Name() string
	// Less reports whether a is served before b from the waiting queue.
	Less(a, b *Seq) bool
	// Victim returns the index in running of the request to preempt when
	// memory runs out. running is in running-list order and not empty.
	Victim(running []*Seq) int
	// Predictive reports whether the policy uses predicted remaining tokens,
	// so the core calls the predictor at admission and every window.
	Predictive() bool
	// Rerank says how running requests are treated at window boundaries.
	Rerank() Rerank
	// Traits say what the policy is, for the core and the drivers to ask
	// instead of comparing names.
	Traits() Traits
}

// Traits are what a policy is, beyond how it orders.
type Traits struct {
	// Predictive: it orders by predicted remaining tokens, so the core
	// calls the predictor at admission and every window.
	Predictive bool
	// Oracle: its predictions are the truth (a bound, not a system), so a
	// driver gives it a perfect predictor whose calls cost nothing.
	Oracle bool
	// FIFO: it orders the waiting queue by queue position alone, so the
	// core may keep the queue as a queue instead of a heap.
	FIFO bool
}

// basic is the policy all the built-in ones are made of.
type basic struct {
	name       string
	key        func(a, b *Seq) int // 0 when tied: ties fall back to queue order
	victim     func(running []*Seq) int
	predictive bool
	oracle     bool
	rerank     Rerank
	// byPredicted: key is byPredicted, so a waiting queue may keep the
	// keys beside the requests (waitQueue's keyed form).
	byPredicted bool
}

func (p *basic) Name() string              { return p.name }
func (p *basic) Victim(running []*Seq) int { return p.victim(running) }
func (p *basic) Predictive() bool          { return p.predictive }
func (p *basic) Rerank() Rerank            { return p.rerank }
func (p *basic) Traits() Traits {
	return Traits{Predictive: p.predictive, Oracle: p.oracle, FIFO: p.key == nil}
}
func (p *basic) Less(a, b *Seq) bool {
	// The starvation guard's promoted requests come first, earliest
	// promoted first.
	if pa, pb := a.promoted != 0, b.promoted != 0; pa != pb {
		return pa
	} else if pa && a.promoted != b.promoted {
		return a.promoted < b.promoted
	}
	if p.key != nil {
		if c := p.key(a, b); c != 0 {
			return c < 0
		}
	}
	return a.order < b.order
}

// lastVictim is vLLM's FCFS rule: preempt the last request of the running
// list.
func lastVictim(running []*Seq) int { return len(running) - 1 }

// priorityVictim is vLLM's PRIORITY rule: the running request with the
// largest (priority, arrival), i.e. the least urgent.
func priorityVictim(running []*Seq) int {
	best := 0
	for i, s := range running[1:] {
		b := running[best]
		if s.Priority > b.Priority || (s.Priority == b.Priority && s.Arrival > b.Arrival) {
			best = i + 1
		}
	}
	return best
}

// predictedVictim preempts the running request with the most predicted
// remaining work: the one SRTF would serve last.
func predictedVictim(running []*Seq) int {
	best := 0
	for i, s := range running[1:] {
		if s.Predicted > running[best].Predicted {
			best = i + 1
		}
	}
	return best
}

func byArrival(a, b *Seq) int { return cmp.Compare(a.Arrival, b.Arrival) }

// registry holds every policy by name: the built-in ones register below,
// and a new one registers itself the same way from its own file.
var registry = map[string]func(mode Rerank) Policy{}

// Register makes a policy known by name to New, Names, the CLI and the
// sweep specs; make builds it for an ISRTF mode (which a policy that
// re-ranks nothing ignores). Registering a name twice panics: it is a
// program's mistake, found at start-up.
func Register(name string, make func(mode Rerank) Policy) {
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("policies: %q registered twice", name))
	}
	registry[name] = make
}

// Names lists the registered policy names, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New returns the named policy for mode (which applies to the policies
// that re-rank by prediction: isrtf, and srpt-oracle, ISRTF with a perfect
// predictor).
func New(name string, mode Rerank) (Policy, error) {
	make, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown policy %q (valid: %s)", name, strings.Join(Names(), ", "))
	}
	return make(mode), nil
}

// TraitsOf are the named policy's Traits (false: no such policy).
func TraitsOf(name string) (Traits, bool) {
	p, err := New(name, RerankPause)
	if err != nil {
		return Traits{}, false
	}
	return p.Traits(), true
}

func init() {
	// FCFS keeps queue order: arrivals at the back, preempted requests at
	// the front (the core gives them a front position).
	Register("fcfs", func(Rerank) Policy { return &basic{name: "fcfs", victim: lastVictim} })
	Register("priority", func(Rerank) Policy {
		return &basic{name: "priority", victim: priorityVictim, key: func(a, b *Seq) int {
			if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
				return c
			}
			return byArrival(a, b)
		}}
	})
	Register("sjf", func(Rerank) Policy {
		return &basic{name: "sjf", victim: lastVictim, key: func(a, b *Seq) int { return cmp.Compare(a.PromptTokens, b.PromptTokens) }}
	})
	Register("sjf-oracle", func(Rerank) Policy {
		return &basic{name: "sjf-oracle", victim: lastVictim, key: func(a, b *Seq) int { return cmp.Compare(a.OutputTokens, b.OutputTokens) }}
	})
	// srpt-oracle is ISRTF told the truth: the driver gives it an oracle
	// predictor with no call cost.
	Register("srpt-oracle", func(mode Rerank) Policy {
		return &basic{name: "srpt-oracle", victim: srtfVictim(mode), predictive: true, oracle: true, rerank: mode, key: byPredicted, byPredicted: true}
	})
	Register("isrtf", func(mode Rerank) Policy {
		return &basic{name: "isrtf", victim: srtfVictim(mode), predictive: true, rerank: mode, key: byPredicted, byPredicted: true}
	})
}

func byPredicted(a, b *Seq) int {
	if c := cmp.Compare(a.Predicted, b.Predicted); c != 0 {
		return c
	}
	return byArrival(a, b)
}

// srtfVictim: the patch keeps vLLM's FCFS victim; the ELIS modes preempt the
// request with the most predicted work left.
func srtfVictim(mode Rerank) func([]*Seq) int {
	if mode == RerankNone {
		return lastVictim
	}
	return predictedVictim
}

// Reranks reports whether the named policy orders by predicted remaining
// tokens and so has an ISRTF mode (paper, resubmit, patch) that shapes
// its runs; false for an unknown name.
func Reranks(name string) bool {
	t, _ := TraitsOf(name)
	return t.Predictive
}
