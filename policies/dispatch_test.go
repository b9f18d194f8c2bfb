package policies

import "testing"

// The dispatcher's loads follow requests in and out: jobs, tokens and
// predicted work rise on Route and fall on Done, once, whatever order
// requests leave in; least-predicted-work reads the work.
func TestDispatcherKeepsLoads(t *testing.T) {
	for _, requests := range []int{0, 8} { // a server's map, a trace's slice
		r, _ := NewRouter("least-predicted-work")
		d := NewDispatcher(r, 2, requests, nil)
		reqs := []Request{{Index: 0, PromptTokens: 10, OutputTokens: 100}, {Index: 1, PromptTokens: 5, OutputTokens: 10},
			{Index: 2, PromptTokens: 5, OutputTokens: 10}, {Index: 3, PromptTokens: 1, OutputTokens: 50}}
		var got []int
		for i := range reqs {
			got = append(got, d.Route(&reqs[i]))
		}
		// 100 to replica 0; then 10, 10 and 50 to replica 1 (20 < 100, then 70 < 100).
		if want := []int{0, 1, 1, 1}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
			t.Fatalf("routes %v, want %v", got, want)
		}
		l := d.Loads()
		if l[0] != (Load{Jobs: 1, Tokens: 110, Work: 100}) || l[1] != (Load{Jobs: 3, Tokens: 81, Work: 70}) {
			t.Fatalf("loads %+v", l)
		}
		d.Done(2)
		d.Done(2) // twice: counted once
		d.Done(7) // never routed
		if w, ok := d.Replica(3); !ok || w != 1 {
			t.Fatalf("replica of request 3: %d %v", w, ok)
		}
		if _, ok := d.Replica(2); ok {
			t.Fatal("request 2 is done but still has a replica")
		}
		for _, i := range []int{0, 1, 3} {
			d.Done(i)
		}
		if l := d.Loads(); l[0] != (Load{}) || l[1] != (Load{}) {
			t.Fatalf("loads after every request left: %+v", l)
		}
	}
}

// A lone replica takes every request without a word to the router or
// the predictor, and keeps no loads.
func TestLoneReplicaIsNotRouted(t *testing.T) {
	d := NewDispatcher(panicRouter{}, 1, 4, panicPredictor{})
	for i := range 4 {
		if w := d.Route(&Request{Index: i, OutputTokens: 9}); w != 0 {
			t.Fatalf("request %d routed to %d", i, w)
		}
	}
	d.Done(2)
	if l := d.Loads(); l[0] != (Load{}) {
		t.Fatalf("a lone replica's load: %+v", l[0])
	}
}

type panicRouter struct{}

func (panicRouter) Route(*Request, []Load) int { panic("routed") }
func (panicRouter) NeedsWork() bool            { return true }

type panicPredictor struct{}

func (panicPredictor) Predict(*Request, int) float64 { panic("predicted") }
