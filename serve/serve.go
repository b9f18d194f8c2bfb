package serve

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
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
	// Tokens counts the tokens of a text prompt (a tokenizer, or words).
	Tokens func(text string) (int, error)
	// Vocab bounds the token ids a prompt may hold (0: any): a served
	// model's embedding has that many rows.
	Vocab int
	// Records, when set, gets every request's record as it ends.
	Records func(policies.Record)
}

// Server is an OpenAI-compatible server on the scheduler core.
type Server struct {
	cfg     Config
	workers []*engine.Worker
	inbox   []chan engine.Submission
	aborts  []chan int
	router  policies.Router
	start   time.Time
	metrics *metrics
	mux     *http.ServeMux

	mu    sync.Mutex
	loads []policies.Load
	reqs  map[int]*pending
	next  int

	wg   sync.WaitGroup
	errc chan error
}

// pending is a request in flight: the worker's goroutine sends its tokens
// and its record; the handler's goroutine reads them.
type pending struct {
	id     string
	index  int
	worker int
	prompt int
	output int
	tokens chan int32
	done   chan policies.Record
}

// New builds the replicas and starts their loops; Close stops them.
func New(cfg Config) (*Server, error) {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	router, err := policies.NewRouter(cfg.Router)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, router: router, start: time.Now(), reqs: map[int]*pending{},
		loads: make([]policies.Load, cfg.Workers), errc: make(chan error, cfg.Workers)}
	s.metrics = newMetrics(cfg.Model)
	for i := 0; i < cfg.Workers; i++ {
		ec, err := cfg.NewWorker(i)
		if err != nil {
			return nil, err
		}
		ec.ID, ec.Start = i, s.start
		ec.OnToken = s.onToken
		last := policies.Stats{}
		ec.AfterStep = func(core *policies.Scheduler) {
			s.metrics.observeCore(i, core, &last)
		}
		w, err := engine.New(ec)
		if err != nil {
			return nil, err
		}
		s.workers = append(s.workers, w)
		s.inbox = append(s.inbox, make(chan engine.Submission, 1024))
		s.aborts = append(s.aborts, make(chan int, 1024))
	}
	for i, w := range s.workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := w.Run(context.Background(), s.inbox[i], s.aborts[i], s.finished); err != nil {
				s.errc <- fmt.Errorf("engine %d: %w", i, err)
			}
		}()
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v1/completions", s.completions)
	s.mux.HandleFunc("POST /v1/chat/completions", s.chat)
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return s, nil
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops accepting work for the engines and waits for them to finish
// what they hold; call it after the HTTP server has shut down.
func (s *Server) Close() error {
	for _, ch := range s.inbox {
		close(ch)
	}
	s.wg.Wait()
	select {
	case err := <-s.errc:
		return err
	default:
		return nil
	}
}

// Err reports an engine that failed (nil while all serve).
func (s *Server) Err() error {
	select {
	case err := <-s.errc:
		s.errc <- err
		return err
	default:
		return nil
	}
}

func (s *Server) now() float64 { return time.Since(s.start).Seconds() }

// submit routes a request to a replica and hands it over.
func (s *Server) submit(kind string, ids []int32, promptTokens, output, priority int) *pending {
	s.mu.Lock()
	idx := s.next
	s.next++
	p := &pending{id: fmt.Sprintf("%s-%d", kind, idx), index: idx, prompt: promptTokens, output: output,
		tokens: make(chan int32, output+1), done: make(chan policies.Record, 1)}
	req := policies.Request{ID: p.id, Index: idx, Arrival: s.now(), PromptTokens: promptTokens, OutputTokens: output, Priority: priority,
		Content: contentOf(ids)}
	p.worker = s.router.Route(&req, s.loads)
	s.loads[p.worker].Jobs++
	s.reqs[idx] = p
	s.mu.Unlock()
	s.inbox[p.worker] <- engine.Submission{Req: req, Prompt: ids}
	return p
}

// onToken runs in a worker's goroutine for every generated token.
func (s *Server) onToken(index int, tok int32, _ int) {
	s.mu.Lock()
	p := s.reqs[index]
	s.mu.Unlock()
	if p != nil {
		p.tokens <- tok // buffered for every token: never blocks the engine
	}
}

// finished runs in a worker's goroutine with the records of requests that
// ended.
func (s *Server) finished(recs []policies.Record) {
	for _, r := range recs {
		s.mu.Lock()
		p := s.reqs[r.Index]
		delete(s.reqs, r.Index)
		if p != nil {
			s.loads[p.worker].Jobs--
		}
		s.mu.Unlock()
		s.metrics.observeRecord(&r)
		if s.cfg.Records != nil {
			s.cfg.Records(r)
		}
		if p != nil {
			p.done <- r
		}
	}
}

// abort tells p's engine that its client left.
func (s *Server) abort(p *pending) {
	s.aborts[p.worker] <- p.index
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
		return 0, &apiError{Message: fmt.Sprintf("The model `%s` does not exist.", p.Model), Type: "NotFoundError", Code: http.StatusNotFound}
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

func badRequest(err error) *apiError {
	return &apiError{Message: err.Error(), Type: "BadRequestError", Code: http.StatusBadRequest}
}

func writeError(w http.ResponseWriter, e *apiError) {
	e.Object = "error"
	writeJSON(w, e.Code, e)
}

// decode reads a JSON body into v, answering 400 itself when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
	if err == nil {
		err = jsonUnmarshal(body, v)
	}
	if err != nil {
		writeError(w, badRequest(fmt.Errorf("malformed JSON body: %w", err)))
		return false
	}
	return true
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req CompletionRequest
	if !decode(w, r, &req) {
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
	if !decode(w, r, &req) {
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
	p := s.submit(kind, pr.ids, n, out, params.Priority)
	st := &stream{kind: kind, id: p.id, model: s.cfg.Model, created: time.Now().Unix()}
	var toks []int32
	take := func(tok int32) {
		if params.Stream {
			st.token(w, tok)
		} else {
			toks = append(toks, tok)
		}
	}
	var rec *policies.Record
	for rec == nil {
		select {
		case tok := <-p.tokens:
			take(tok)
		case rc := <-p.done:
			rec = &rc
		case <-r.Context().Done():
			s.abort(p)
			return
		}
	}
	for len(p.tokens) > 0 { // tokens the engine sent just before the record
		take(<-p.tokens)
	}
	if rec.Rejected != "" && !st.begun {
		writeError(w, badRequest(fmt.Errorf("the engine cannot serve this request: %s", rec.Rejected)))
		return
	}
	u := usage{PromptTokens: n, CompletionTokens: rec.Generated, TotalTokens: n + rec.Generated}
	if params.Stream {
		st.end(w, params.StreamOptions != nil && params.StreamOptions.IncludeUsage, u)
		return
	}
	writeJSON(w, http.StatusOK, st.whole(toks, u))
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
