package traces

import (
	"errors"
	"fmt"
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
	ID           string       `json:"id"`
	Arrival      float64      `json:"arrival_s"`
	PromptTokens int          `json:"prompt_tokens"`
	OutputTokens int          `json:"output_tokens"`
	Prompt       string       `json:"prompt,omitempty"`
	Priority     int          `json:"priority,omitempty"`
	Predictions  []Prediction `json:"predictions,omitempty"`
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

// SortByArrival orders the requests by arrival time, keeping the order of
// equal times.
func (t *Trace) SortByArrival() {
	sort.SliceStable(t.Requests, func(i, j int) bool { return t.Requests[i].Arrival < t.Requests[j].Arrival })
}

// Duration is the time from the first arrival to the last.
func (t *Trace) Duration() float64 {
	if len(t.Requests) == 0 {
		return 0
	}
	return t.Requests[len(t.Requests)-1].Arrival - t.Requests[0].Arrival
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
