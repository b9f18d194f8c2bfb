package policies

// Dispatcher routes requests over engine replicas and keeps each
// replica's load: what every driver -- the simulator, replay, serve,
// bench -- needs, written once. Route picks a replica with the Router and
// counts the request as started there; Done counts it gone (finished,
// rejected or aborted). Load holds, per replica, the requests, their
// tokens and their predicted output tokens still owed.
//
// A lone replica is not routed: every request goes to it without asking
// the router (or the predictor), and no request's share of its load is
// kept, so its Load stays zero. Nothing can read a choice there is not,
// and a million-request run would otherwise write a record per request
// and read it back in the order they finish, a cache miss each.
//
// Like the scheduler core, a Dispatcher is not safe for concurrent use:
// a driver whose goroutines share one calls it under its own lock.
type Dispatcher struct {
	router Router
	lone   bool // one replica: nothing is routed or kept
	loads  []Load
	// pred estimates a request's output tokens when the router reads
	// Load.Work (least-predicted-work).
	pred   Predictor
	reads  bool
	dense  []routed // by request index, when the driver knows how many
	sparse map[int]routed
}

// routed is where a request went and what it added to that replica.
type routed struct {
	replica int32
	live    bool
	tokens  int
	work    float64
}

// NewDispatcher routes over replicas with router. requests, when the
// driver knows it (a trace's length), sizes the bookkeeping for request
// indexes 0 to requests-1; 0 keeps it by index in a map instead (a
// server). pred, read when the router reads Load.Work, estimates a
// request's output tokens at its arrival; nil takes its OutputTokens (a
// client's max_tokens).
func NewDispatcher(router Router, replicas, requests int, pred Predictor) *Dispatcher {
	d := &Dispatcher{router: router, loads: make([]Load, replicas), pred: pred, reads: router.NeedsWork()}
	if replicas == 1 {
		d.lone = true
		return d
	}
	if requests > 0 {
		d.dense = make([]routed, requests)
	} else {
		d.sparse = map[int]routed{}
	}
	return d
}

// Route picks r's replica and counts r as started there.
func (d *Dispatcher) Route(r *Request) int {
	if d.lone {
		return 0
	}
	rt := routed{live: true, tokens: r.PromptTokens + r.OutputTokens}
	switch {
	case d.reads && d.pred != nil:
		rt.work = d.pred.Predict(r, 0)
	case d.reads:
		rt.work = float64(r.OutputTokens)
	}
	w := d.router.Route(r, d.loads)
	rt.replica = int32(w)
	l := &d.loads[w]
	l.Jobs++
	l.Tokens += rt.tokens
	l.Work += rt.work
	if d.dense != nil {
		d.dense[r.Index] = rt
	} else {
		d.sparse[r.Index] = rt
	}
	return w
}

// Done counts request index gone from its replica; a request not routed,
// or already done, changes nothing.
func (d *Dispatcher) Done(index int) {
	if d.lone {
		return
	}
	var rt routed
	if d.dense != nil {
		if index < 0 || index >= len(d.dense) || !d.dense[index].live {
			return
		}
		rt = d.dense[index]
		d.dense[index].live = false
	} else {
		var ok bool
		if rt, ok = d.sparse[index]; !ok {
			return
		}
		delete(d.sparse, index)
	}
	l := &d.loads[rt.replica]
	l.Jobs--
	l.Tokens -= rt.tokens
	l.Work -= rt.work
}

// Replica is where request index was routed, while it has not been Done
// (a lone replica's requests: always there).
func (d *Dispatcher) Replica(index int) (int, bool) {
	if d.lone {
		return 0, true
	}
	if d.dense != nil {
		if index < 0 || index >= len(d.dense) || !d.dense[index].live {
			return 0, false
		}
		return int(d.dense[index].replica), true
	}
	rt, ok := d.sparse[index]
	return int(rt.replica), ok
}

// Loads are the replicas' loads now (the Dispatcher's own: read them, do
// not keep them).
func (d *Dispatcher) Loads() []Load { return d.loads }
