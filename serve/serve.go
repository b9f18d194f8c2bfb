package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/elis-sim/elis-sim/engine"
	"github.com/elis-sim/elis-sim/policies"
)

// Config is a server: its model's name and limits, and the engine
// replicas behind it.
type Config struct {
	Model       string // the name clients ask for
	MaxModelLen int
	// NewWorker builds replica i. The server sets its OnToken and
	// AfterStep; the worker's core decides everything else.
	NewWorker func(i int) (engine.Config, error)
	Workers   int
	Router    string
	// Predictor, when the router reads predicted work
	// (least-predicted-work), estimates each request's output; without
	// one, its max_tokens is the estimate.
	Predictor policies.Predictor
	// Tokens counts the tokens of a text prompt (a tokenizer, or words).
	Tokens func(text string) (int, error)
	// Vocab bounds the token ids a prompt may hold (0: any): a served
	// model's embedding has that many rows.
	Vocab int
	// Records, when set, gets every request's record as it ends.
	Records func(policies.Record)
	// APIKey, when set, is the bearer token every /v1 request must carry
	// (vLLM's --api-key); /health and /metrics stay open, as in vLLM.
	APIKey string
	Limits Limits
	// PredictionLog, when set, gets the ISRTF fork's [ELIS] line for
	// every prediction the engines' cores make (WritePredictionLines).
	PredictionLog io.Writer
}

// Limits bound what clients can hold of the server: time to send a
// request, time a stalled reader may pin a stream, bytes of a body,
// connections. Zero fields take DefaultLimits' values.
type Limits struct {
	// ReadHeaderTimeout is how long a connection may take to send a
	// request's headers (a slow-header client is cut off after it).
	ReadHeaderTimeout time.Duration
	// ReadTimeout is how long a request's body may take to arrive.
	ReadTimeout time.Duration
	// WriteTimeout is how long one write of an answer may block: a client
	// that stops reading its stream loses it after this, and its request
	// is aborted.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends nothing.
	IdleTimeout time.Duration
	// MaxRequestBytes bounds a request body (413 beyond it).
	MaxRequestBytes int64
	// MaxConns bounds open connections. At the bound a new connection
	// takes the place of the oldest one that has no request under way
	// (a slow-header or idle client); when every one is busy, new ones
	// wait in the kernel's accept queue, holding no descriptor of ours.
	MaxConns int
	// MaxConnsPerClient bounds one client address's open connections:
	// beyond it a connection is answered 429 and closed.
	MaxConnsPerClient int
}

// DefaultLimits are the limits a server runs with unless told otherwise.
func DefaultLimits() Limits {
	return Limits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second,
		IdleTimeout: 60 * time.Second, MaxRequestBytes: 4 << 20, MaxConns: 4096, MaxConnsPerClient: 1024}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	pick := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	pick(&l.ReadTimeout, d.ReadTimeout)
	pick(&l.WriteTimeout, d.WriteTimeout)
	pick(&l.IdleTimeout, d.IdleTimeout)
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = d.MaxRequestBytes
	}
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxConnsPerClient <= 0 {
		l.MaxConnsPerClient = d.MaxConnsPerClient
	}
	return l
}

// Server is an OpenAI-compatible server on the scheduler core. Its life
// is net/http's: Serve answers on a listener until Shutdown, which stops
// admitting requests (503), lets those in flight finish, then stops the
// engines.
type Server struct {
	cfg     Config
	engines []*replica
	start   time.Time
	metrics *metrics
	mux     *http.ServeMux

	mu       sync.Mutex
	dispatch *policies.Dispatcher
	reqs     map[int]*pending
	next     int
	closing  bool
	hs       *http.Server
	conns    int // open connections of Serve's
	states   map[net.Conn]http.ConnState
	inflight sync.WaitGroup // handlers holding a submitted request

	logMu       sync.Mutex // engines write the prediction log in turn
	engineCtx   context.Context
	stopEngines context.CancelFunc
	running     sync.WaitGroup // engine goroutines
	closeInbox  sync.Once
}

// replica is one engine and the channels to it.
type replica struct {
	w      *engine.Worker
	inbox  chan engine.Submission
	aborts chan int
	down   chan struct{} // closed when the engine failed
	err    error         // why; written before down closes
}

func (e *replica) failed() error {
	select {
	case <-e.down:
		return e.err
	default:
		return nil
	}
}

// New builds the replicas and starts their loops; Shutdown stops them.
func New(cfg Config) (*Server, error) {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	cfg.Limits = cfg.Limits.withDefaults()
	router, err := policies.NewRouter(cfg.Router)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, start: time.Now(), reqs: map[int]*pending{}, states: map[net.Conn]http.ConnState{},
		dispatch: policies.NewDispatcher(router, cfg.Workers, 0, cfg.Predictor)}
	s.engineCtx, s.stopEngines = context.WithCancel(context.Background())
	s.metrics = newMetrics(cfg.Model)
	for i := 0; i < cfg.Workers; i++ {
		ec, err := cfg.NewWorker(i)
		if err != nil {
			return nil, err
		}
		ec.ID, ec.Start = i, s.start
		ec.OnToken = s.onToken
		last := policies.Stats{}
		if cfg.PredictionLog != nil {
			ec.Core.ReportPredictions = true
		}
		ec.AfterStep = func(core *policies.Scheduler) {
			s.metrics.observeCore(i, core, &last)
			if made := core.TakePredictions(); len(made) > 0 {
				s.logMu.Lock()
				WritePredictionLines(cfg.PredictionLog, made)
				s.logMu.Unlock()
			}
		}
		w, err := engine.New(ec)
		if err != nil {
			return nil, err
		}
		s.engines = append(s.engines, &replica{w: w, inbox: make(chan engine.Submission, 1024),
			aborts: make(chan int, 1024), down: make(chan struct{})})
	}
	for i, e := range s.engines {
		s.running.Add(1)
		go func() {
			defer s.running.Done()
			err := e.w.Run(s.engineCtx, e.inbox, e.aborts, func(recs []policies.Record) { s.finished(i, recs) })
			if err != nil {
				s.fail(i, fmt.Errorf("engine %d: %w", i, err))
			}
		}()
	}
	s.mux = http.NewServeMux()
	v1 := func(h http.HandlerFunc) http.Handler { return s.authorized(h) }
	s.mux.Handle("POST /v1/completions", v1(s.completions))
	s.mux.Handle("POST /v1/chat/completions", v1(s.chat))
	s.mux.Handle("GET /v1/models", v1(s.models))
	s.mux.HandleFunc("GET /health", s.health)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	for path, allow := range map[string]string{"/v1/completions": "POST", "/v1/chat/completions": "POST",
		"/v1/models": "GET, HEAD", "/health": "GET, HEAD", "/metrics": "GET, HEAD"} {
		s.mux.Handle(path, methodNotAllowed(allow))
	}
	s.mux.HandleFunc("/", notFound)
	return s, nil
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Serve answers on ln until Shutdown or Close, with the server's limits:
// header, body, write and idle timeouts, and the connection bounds. Like
// http.Server's, it returns http.ErrServerClosed once Shutdown has begun;
// Shutdown's return says when the server is done.
func (s *Server) Serve(ln net.Listener) error {
	l := s.cfg.Limits
	lim := limitListener(ln, l.MaxConns, l.MaxConnsPerClient)
	hs := &http.Server{Handler: s, ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout,
		MaxHeaderBytes: 64 << 10, ConnState: func(c net.Conn, st http.ConnState) { lim.connState(c, st); s.connState(c, st) }}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.hs = hs
	s.mu.Unlock()
	return hs.Serve(lim)
}

// connState follows Serve's connections: how many are open, and in which
// state each is.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		s.conns++
	case http.StateClosed, http.StateHijacked:
		s.conns--
		delete(s.states, c)
		return
	}
	s.states[c] = st
}

// Shutdown stops the server gracefully: new requests are answered 503
// (a body still arriving included), requests in flight run to their end,
// then the engines stop. If ctx ends first, what is left is abandoned:
// its clients get a 503 (or an error event in their stream), the engines
// are stopped where they are, and Shutdown returns ctx's error. Otherwise
// it returns the first engine failure, if any.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	hs := s.hs
	s.mu.Unlock()
	var err error
	if hs != nil {
		err = hs.Shutdown(ctx) // closes the listener, waits for handlers
	}
	if err == nil {
		err = waitContext(ctx, &s.inflight) // handlers served without Serve
	}
	if err != nil {
		s.abandon()
		if hs != nil {
			hs.Close()
		}
		s.running.Wait()
		return err
	}
	// No handler holds a request or can submit one: the inboxes close,
	// and the engines finish what they hold (aborted requests) and stop.
	s.closeInbox.Do(func() {
		for _, e := range s.engines {
			close(e.inbox)
		}
	})
	s.running.Wait()
	return s.Err()
}

// Close stops the server at once: connections are closed, requests in
// flight are failed, the engines stop where they are.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	hs := s.hs
	s.mu.Unlock()
	s.abandon()
	if hs != nil {
		hs.Close()
	}
	s.running.Wait()
	return s.Err()
}

// abandon fails every request in flight and stops the engines.
func (s *Server) abandon() {
	s.stopEngines()
	s.mu.Lock()
	defer s.mu.Unlock()
	for idx, p := range s.reqs {
		s.drop(idx, p)
		p.fail(errShuttingDown)
	}
}

func waitContext(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Err reports the first engine that failed (nil while all serve).
func (s *Server) Err() error {
	for _, e := range s.engines {
		if err := e.failed(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) now() float64 { return time.Since(s.start).Seconds() }

// submit routes a request to a replica and hands it over. It answers 503
// when the server is shutting down or the replica failed, and nil, nil
// when the client left before the replica took the request.
func (s *Server) submit(ctx context.Context, kind string, ids []int32, promptTokens, output, priority int) (*pending, *apiError) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, errShuttingDown
	}
	idx := s.next
	s.next++
	p := &pending{id: fmt.Sprintf("%s-%d", kind, idx), index: idx, prompt: promptTokens, output: output, arrival: s.now(), wake: make(chan struct{}, 1)}
	req := policies.Request{ID: p.id, Index: idx, Arrival: p.arrival, PromptTokens: promptTokens, OutputTokens: output, Priority: priority,
		Content: contentOf(ids)}
	p.worker = s.dispatch.Route(&req)
	e := s.engines[p.worker]
	if err := e.failed(); err != nil {
		s.dispatch.Done(idx)
		s.mu.Unlock()
		return nil, newError(http.StatusServiceUnavailable, "%v", err)
	}
	s.reqs[idx] = p
	s.inflight.Add(1)
	s.mu.Unlock()
	select {
	case e.inbox <- engine.Submission{Req: req, Prompt: ids}:
	case <-e.down: // fail has failed p
	case <-ctx.Done():
		s.mu.Lock()
		if s.reqs[idx] == p {
			s.drop(idx, p)
		}
		s.mu.Unlock()
		s.inflight.Done()
		return nil, nil
	}
	return p, nil
}

// drop forgets request idx; s.mu is held.
func (s *Server) drop(idx int, p *pending) {
	delete(s.reqs, idx)
	s.dispatch.Done(idx)
}

// release is the handler's end of a submitted request.
func (s *Server) release(*pending) { s.inflight.Done() }

// onToken runs in a worker's goroutine for every generated token.
func (s *Server) onToken(index int, tok int32, _ int) {
	s.mu.Lock()
	p := s.reqs[index]
	s.mu.Unlock()
	if p != nil {
		p.push(tok)
	}
}

// finished runs in engine i's goroutine with the records of requests that
// ended.
func (s *Server) finished(i int, recs []policies.Record) {
	for _, r := range recs {
		r.Worker = i
		s.mu.Lock()
		p := s.reqs[r.Index]
		if p != nil {
			s.drop(r.Index, p)
		}
		s.mu.Unlock()
		s.metrics.observeRecord(&r)
		if s.cfg.Records != nil {
			s.cfg.Records(r)
		}
		if p != nil {
			p.finish(r)
		}
	}
}

// fail marks engine i down and fails its requests at once: their clients
// get a 500 (or an error event in their stream), and records say why.
func (s *Server) fail(i int, err error) {
	e := s.engines[i]
	s.mu.Lock()
	e.err = err
	close(e.down)
	var failed []*pending
	for idx, p := range s.reqs {
		if p.worker == i {
			s.drop(idx, p)
			failed = append(failed, p)
		}
	}
	s.mu.Unlock()
	apiErr := newError(http.StatusInternalServerError, "%v", err)
	for _, p := range failed {
		if s.cfg.Records != nil {
			s.cfg.Records(policies.Record{ID: p.id, Index: p.index, Arrival: p.arrival, FirstScheduled: -1, FirstToken: -1, Finish: -1,
				PromptTokens: p.prompt, OutputTokens: p.output, Worker: i, Rejected: err.Error()})
		}
		p.fail(apiErr)
	}
}

// abort tells p's engine that its client left.
func (s *Server) abort(p *pending) {
	e := s.engines[p.worker]
	select {
	case e.aborts <- p.index:
	case <-e.down:
	case <-s.engineCtx.Done():
	}
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	if err := s.Err(); err != nil {
		writeError(w, newError(http.StatusServiceUnavailable, "%v", err))
		return
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		writeError(w, errShuttingDown)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// authorized lets a request through when the server has no API key or the
// request carries it as a bearer token.
func (s *Server) authorized(h http.Handler) http.Handler {
	if s.cfg.APIKey == "" {
		return h
	}
	want := "Bearer " + s.cfg.APIKey
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !constantTimeEqual(r.Header.Get("Authorization"), want) {
			writeError(w, newError(http.StatusUnauthorized, "Unauthorized"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []map[string]any{{
		"id": s.cfg.Model, "object": "model", "created": s.start.Unix(), "owned_by": "elis-sim",
		"root": s.cfg.Model, "max_model_len": s.cfg.MaxModelLen,
	}}})
}

// check validates what both endpoints share and returns the output length.
func (s *Server) check(p *commonParams, promptTokens, defOutput int) (int, *apiError) {
	if p.Model != "" && p.Model != s.cfg.Model {
		return 0, newError(http.StatusNotFound, "The model `%s` does not exist.", p.Model)
	}
	out, err := p.outputTokens(defOutput)
	if err != nil {
		return 0, badRequest(err)
	}
	if promptTokens+out > s.cfg.MaxModelLen {
		return 0, badRequest(fmt.Errorf("This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			s.cfg.MaxModelLen, promptTokens+out, promptTokens, out))
	}
	return out, nil
}

// decode reads a JSON body into v within the body limit and the read
// timeout, answering 400 or 413 itself when it cannot.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(s.cfg.Limits.ReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxRequestBytes))
	rc.SetReadDeadline(time.Time{})
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		writeError(w, bodyError(err))
		return false
	}
	return true
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req CompletionRequest
	if !s.decode(w, r, &req) {
		return
	}
	pr, err := parsePrompt(req.Prompt)
	if err != nil {
		writeError(w, badRequest(err))
		return
	}
	s.serve(w, r, "cmpl", &req.commonParams, pr, 16)
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	var req ChatRequest
	if !s.decode(w, r, &req) {
		return
	}
	text, err := chatText(req.Messages)
	if err != nil {
		writeError(w, badRequest(err))
		return
	}
	s.serve(w, r, "chatcmpl", &req.commonParams, prompt{text: text}, -1)
}

// serve runs one request: defOutput is the output length when the client
// gives none (-1: what remains of the context).
func (s *Server) serve(w http.ResponseWriter, r *http.Request, kind string, params *commonParams, pr prompt, defOutput int) {
	n := len(pr.ids)
	for _, id := range pr.ids {
		if s.cfg.Vocab > 0 && int(id) >= s.cfg.Vocab {
			writeError(w, badRequest(fmt.Errorf(`"prompt": token id %d is outside the model's vocabulary of %d`, id, s.cfg.Vocab)))
			return
		}
	}
	if pr.ids == nil {
		c, err := s.cfg.Tokens(pr.text)
		if err != nil {
			writeError(w, badRequest(fmt.Errorf("counting the prompt's tokens: %w", err)))
			return
		}
		n = max(c, 1)
	}
	if defOutput < 0 {
		defOutput = max(s.cfg.MaxModelLen-n, 1)
	}
	out, apiErr := s.check(params, n, defOutput)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	p, apiErr := s.submit(r.Context(), kind, pr.ids, n, out, params.Priority)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	if p == nil {
		return // the client left
	}
	defer s.release(p)
	st := &stream{kind: kind, id: p.id, model: s.cfg.Model, created: time.Now().Unix(),
		rc: http.NewResponseController(w), writeTimeout: s.cfg.Limits.WriteTimeout}
	var toks, spare []int32
	for {
		select {
		case <-p.wake:
		case <-r.Context().Done():
			s.abort(p)
			return
		}
		got, rec, failed := p.take(spare)
		for _, tok := range got {
			if !params.Stream {
				toks = append(toks, tok)
			} else if err := st.token(w, tok); err != nil {
				s.abort(p) // the client stopped reading
				return
			}
		}
		spare = got[:0]
		switch {
		case failed != nil && st.begun:
			st.fail(w, failed)
			return
		case failed != nil:
			writeError(w, failed)
			return
		case rec == nil:
			continue
		case rec.Rejected != "" && !st.begun:
			writeError(w, badRequest(fmt.Errorf("the engine cannot serve this request: %s", rec.Rejected)))
			return
		}
		u := usage{PromptTokens: n, CompletionTokens: rec.Generated, TotalTokens: n + rec.Generated}
		if params.Stream {
			st.end(w, params.StreamOptions != nil && params.StreamOptions.IncludeUsage, u)
			return
		}
		st.deadline()
		writeJSON(w, http.StatusOK, st.whole(toks, u))
		return
	}
}

// pending is a request in flight: the engine's goroutine adds its tokens
// and then its record (or a failure); the handler's goroutine takes them.
// The tokens not yet taken are all it holds: memory follows the tokens
// generated and not yet written, whatever max_tokens is.
type pending struct {
	id      string
	index   int
	worker  int
	prompt  int
	output  int
	arrival float64

	mu     sync.Mutex
	toks   []int32
	rec    *policies.Record
	err    *apiError
	wake   chan struct{} // holds a signal when there is something to take
	closed bool
}

func (p *pending) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pending) push(tok int32) {
	p.mu.Lock()
	if !p.closed {
		p.toks = append(p.toks, tok)
	}
	p.mu.Unlock()
	p.signal()
}

func (p *pending) finish(r policies.Record) {
	p.mu.Lock()
	if !p.closed {
		p.rec, p.closed = &r, true
	}
	p.mu.Unlock()
	p.signal()
}

func (p *pending) fail(e *apiError) {
	p.mu.Lock()
	if !p.closed {
		p.err, p.closed = e, true
	}
	p.mu.Unlock()
	p.signal()
}

// take returns the tokens added since the last take (spare, emptied, takes
// their place), and the record or failure once there is one.
func (p *pending) take(spare []int32) ([]int32, *policies.Record, *apiError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := p.toks
	p.toks = spare
	return got, p.rec, p.err
}

// hashBlock is the tokens each content hash of a token-id prompt covers:
// vLLM's block size, so every full block the prefix cache could share is
// named.
const hashBlock = 16

// contentOf names a token-id prompt's full blocks by their tokens, as
// vLLM hashes blocks, so that prompts sharing a prefix share cached blocks
// (the core chains the hashes). A text prompt names nothing.
func contentOf(ids []int32) *policies.Content {
	n := len(ids) / hashBlock
	if n == 0 {
		return nil
	}
	h := make([]uint64, n)
	for b := range h {
		f := fnv.New64a()
		for _, id := range ids[b*hashBlock : (b+1)*hashBlock] {
			f.Write([]byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)})
		}
		h[b] = f.Sum64()
	}
	return &policies.Content{Hashes: h, HashBlock: hashBlock}
}
