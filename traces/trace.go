package traces

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
)

// Version is the native trace format version this package writes and reads.
const Version = 1

// Prediction is a recorded prediction of a request's remaining output tokens,
// made after Generated output tokens existed.
type Prediction struct {
	Generated int     `json:"generated"`
	Remaining float64 `json:"remaining"`
}

// Request is one request of a trace.
type Request struct {
	ID           string  `json:"id"`
	Arrival      float64 `json:"arrival_s"`
	PromptTokens int     `json:"prompt_tokens"`
	OutputTokens int     `json:"output_tokens"`
	Prompt       string  `json:"prompt,omitempty"`
	// Output is the answer's text, when the trace knows it (sharegpt and
	// elis-train imports): what predict trace feeds the network as the
	// text generated so far.
	Output      string       `json:"output,omitempty"`
	Priority    int          `json:"priority,omitempty"`
	Predictions []Prediction `json:"predictions,omitempty"`
	// HashIDs name the prompt's blocks of HashBlock tokens from its start
	// (Mooncake's hash_ids): requests whose first k ids are equal have
	// equal first k*HashBlock tokens, which a prefix cache shares. The
	// last id may name a partial block.
	HashIDs   []uint64 `json:"hash_ids,omitempty"`
	HashBlock int      `json:"hash_block,omitempty"`
	// Session names a conversation: its requests' prompts and outputs are
	// prefixes of one token stream (each turn's prompt holds the history).
	Session string `json:"session,omitempty"`
}

// Trace is a named list of requests in arrival order.
type Trace struct {
	Name     string
	Requests []Request
}

// Bounds of what a trace may hold: beyond them a number describes no
// serving workload (a year of arrivals; more tokens than any model's
// context), and accepting it only yields meaningless runs.
const (
	MaxArrival = 365 * 24 * 3600.0 // seconds
	MaxTokens  = 10_000_000        // per prompt and per output
)

// Validate reports the first field of r that a run could not use.
func (r *Request) Validate() error {
	switch {
	case r.ID == "":
		return errors.New(`field "id": must not be empty`)
	case math.IsNaN(r.Arrival) || math.IsInf(r.Arrival, 0) || r.Arrival < 0 || r.Arrival > MaxArrival:
		return fmt.Errorf(`field "arrival_s": %v, want a time from 0 to %g s (a year)`, r.Arrival, MaxArrival)
	case r.PromptTokens < 1 || r.PromptTokens > MaxTokens:
		return fmt.Errorf(`field "prompt_tokens": %d, want 1 to %d`, r.PromptTokens, MaxTokens)
	case r.OutputTokens < 1 || r.OutputTokens > MaxTokens:
		return fmt.Errorf(`field "output_tokens": %d, want 1 to %d`, r.OutputTokens, MaxTokens)
	}
	switch {
	case len(r.HashIDs) > 0 && (r.HashBlock < 1 || r.HashBlock > MaxTokens):
		return fmt.Errorf(`field "hash_block": %d, want the tokens each of "hash_ids" names (1 to %d; Mooncake's is 512)`, r.HashBlock, MaxTokens)
	case len(r.HashIDs) == 0 && r.HashBlock != 0:
		return errors.New(`field "hash_block" without "hash_ids"`)
	case len(r.HashIDs) > (r.PromptTokens+r.HashBlock-1)/max(r.HashBlock, 1):
		return fmt.Errorf(`field "hash_ids": %d ids of %d tokens name more than the %d prompt tokens`, len(r.HashIDs), r.HashBlock, r.PromptTokens)
	case len(r.HashIDs) > 0 && r.Session != "":
		return errors.New(`fields "hash_ids" and "session" both name the content; give one`)
	}
	for i, p := range r.Predictions {
		if p.Generated < 0 || math.IsNaN(p.Remaining) || p.Remaining < 0 {
			return fmt.Errorf(`field "predictions[%d]": want generated >= 0 and remaining >= 0, got %+v`, i, p)
		}
		if i > 0 && p.Generated < r.Predictions[i-1].Generated {
			return fmt.Errorf(`field "predictions[%d]": generated %d goes backwards`, i, p.Generated)
		}
	}
	return nil
}

// SessionKey is a 64-bit name of r's session (FNV-1a of it), 0 without
// one: what a prefix cache keys a conversation's stream by.
func (r *Request) SessionKey() uint64 {
	if r.Session == "" {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(r.Session))
	return max(h.Sum64(), 1)
}

// SortByArrival orders the requests by arrival time, keeping the order of
// equal times.
func (t *Trace) SortByArrival() {
	less := func(i, j int) bool { return t.Requests[i].Arrival < t.Requests[j].Arrival }
	if sort.SliceIsSorted(t.Requests, less) {
		return // most traces are written in order: a stable sort would keep it
	}
	sort.SliceStable(t.Requests, less)
}

// Duration is the time from the first arrival to the last.
func (t *Trace) Duration() float64 {
	if len(t.Requests) == 0 {
		return 0
	}
	return t.Requests[len(t.Requests)-1].Arrival - t.Requests[0].Arrival
}

// Rate is the mean arrival rate, requests over Duration (0 when every
// request arrives at once).
func (t *Trace) Rate() float64 {
	if d := t.Duration(); d > 0 {
		return float64(len(t.Requests)) / d
	}
	return 0
}

// Window keeps the requests arriving in [from, to) seconds after the first
// arrival (to <= 0 means no end), shifts them so the first kept one arrives
// at 0, scales all times by scale (> 0; 0.5 halves the gaps), and keeps at
// most max requests (max <= 0 means all). It is how importers cut traces.
func (t *Trace) Window(from, to, scale float64, max int) {
	if len(t.Requests) == 0 {
		return
	}
	if scale <= 0 {
		scale = 1
	}
	base := t.Requests[0].Arrival
	out := t.Requests[:0]
	var first = math.NaN()
	for _, r := range t.Requests {
		rel := r.Arrival - base
		if rel < from || (to > 0 && rel >= to) {
			continue
		}
		if max > 0 && len(out) >= max {
			break
		}
		if math.IsNaN(first) {
			first = rel
		}
		r.Arrival = (rel - first) * scale
		out = append(out, r)
	}
	t.Requests = out
}
