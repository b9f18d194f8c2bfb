package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/elis-sim/elis-sim/internal/hist"
	"github.com/elis-sim/elis-sim/internal/synth"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/traces"
)

// Config is one bench run.
type Config struct {
	URLs  []string // servers' base URLs (http://host:8000); several are routed over
	Model string
	// Endpoint is "completions" (/v1/completions, token-id prompts when a
	// request has no text) or "chat" (/v1/chat/completions, text).
	Endpoint string
	// TimeScale multiplies the trace's arrival times (0.5 doubles the rate).
	TimeScale float64
	// FreeLengths lets the model stop on its own; by default output
	// lengths are forced to the trace's (max_tokens = min_tokens,
	// ignore_eos), so runs compare one to one with the simulator.
	FreeLengths bool
	Timeout     time.Duration // per request; 0: none
	// Wait, when > 0, is how long Run waits for every server to answer
	// /v1/models before it sends anything: a server still starting (vLLM
	// loading its weights, a server started a moment before).
	Wait   time.Duration
	APIKey string
	Router string // over URLs: least-loaded (outstanding requests), round-robin, prefix-affinity
	// MetricsInterval scrapes each server's /metrics this often, besides at
	// the start and the end; 0 scrapes only then. NoMetrics skips it all.
	MetricsInterval time.Duration
	NoMetrics       bool
	// Vocab bounds the token ids of synthetic prompts (drawn from 1,000
	// up). 0: the smallest vocabulary the servers report (llama.cpp's
	// /v1/models says it), else 32,000.
	Vocab  int
	Seed   uint64 // of synthetic prompts
	Client *http.Client
	// Progress, when set, is called as requests end (done of total).
	Progress func(done, total int)
	// Warn gets warnings as they happen (the client falling behind).
	Warn io.Writer
}

// Result is what a bench run measured. Records are in trace order, each
// request's times in seconds from the start; a failed request has Finish
// -1 and its error in Rejected, with the HTTP status when there was one.
type Result struct {
	Records []policies.Record
	// Replies are the HTTP side of the same requests, by trace index.
	Replies []Reply
	Gaps    hist.H // inter-token gaps, from the chunks' arrivals
	// Lag is how late each request was sent against its schedule.
	Lag     LagStats
	Metrics []Scrape // per server, in URL order
	Failed  int
	// Retries counts resends of requests that failed on a kept-alive
	// connection the server had closed, before any answer came.
	Retries  int
	Makespan float64
	Sent     int
	// Interrupted: stopped before every request was sent or finished.
	Interrupted bool
}

// Reply is what a request's HTTP exchange showed beyond its record.
type Reply struct {
	Status   int    // the reply's HTTP status (0: none came)
	ServerID string // the server's id for the request, which its log lines name
}

// NotSent is the Rejected of a request an interrupted run never sent (its
// Arrival is -1): reports count it apart from requests that failed.
const NotSent = "not sent: the run stopped first"

// LagStats are the send lags' quantiles, seconds.
type LagStats struct {
	P50, P99, Max float64
}

// Run sends tr's requests open loop: each at its arrival time (times
// TimeScale), whatever the servers are doing. Cancelling stop ends the
// sending and lets requests in flight finish; cancelling abandon cancels
// them too (recorded as failed).
func Run(stop, abandon context.Context, tr *traces.Trace, cfg Config) (*Result, error) {
	if len(cfg.URLs) == 0 {
		return nil, fmt.Errorf("no server URL")
	}
	if err := cfg.waitForServers(stop); err != nil {
		return nil, err
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}}
	}
	cfg.Vocab = cfg.vocab(stop)
	if cfg.Endpoint == "" {
		cfg.Endpoint = "completions"
	}
	router, err := policies.NewRouter(cfg.Router)
	if err != nil {
		return nil, err
	}
	res := &Result{Records: make([]policies.Record, len(tr.Requests)), Replies: make([]Reply, len(tr.Requests))}
	for i, r := range tr.Requests {
		res.Records[i] = policies.Record{ID: r.ID, Index: i, Arrival: -1, FirstScheduled: -1, FirstToken: -1, Finish: -1,
			PromptTokens: r.PromptTokens, OutputTokens: r.OutputTokens, Rejected: NotSent}
	}
	scrapers := make([]*scraper, len(cfg.URLs))
	start := time.Now()
	since := func() float64 { return time.Since(start).Seconds() }
	// Scrapes run beside the sender, never in its way: a slow /metrics
	// delays its own samples, not the schedule. The first is taken as the
	// sending starts, then every MetricsInterval; one scrape of a server
	// at a time.
	tickDone := make(chan struct{})
	var scraping sync.WaitGroup
	if !cfg.NoMetrics {
		for i, u := range cfg.URLs {
			scrapers[i] = newScraper(cfg.Client, u, cfg.APIKey, since)
			scraping.Add(1)
			go func() {
				defer scraping.Done()
				scrapers[i].scrape()
				if cfg.MetricsInterval <= 0 {
					return
				}
				t := time.NewTicker(cfg.MetricsInterval)
				defer t.Stop()
				for {
					select {
					case <-tickDone:
						return
					case <-t.C:
						scrapers[i].scrape()
					}
				}
			}()
		}
	}

	var mu sync.Mutex // guards res and dispatch
	// A client's estimate of a request's work is what it asks for.
	dispatch := policies.NewDispatcher(router, len(cfg.URLs), len(tr.Requests), nil)
	lags := make([]float64, 0, len(tr.Requests))
	var wg sync.WaitGroup
	done := 0
	warned := false
	for i := range tr.Requests {
		r := &tr.Requests[i]
		at := start.Add(time.Duration(r.Arrival * cfg.TimeScale * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			select {
			case <-stop.Done():
			case <-abandon.Done():
			case <-time.After(d):
			}
		}
		if stop.Err() != nil || abandon.Err() != nil {
			res.Interrupted = true
			break
		}
		lag := time.Since(at).Seconds()
		req := policies.Request{ID: r.ID, Index: i, PromptTokens: r.PromptTokens, OutputTokens: r.OutputTokens,
			Content: policies.NewContent(r.HashIDs, r.HashBlock, r.SessionKey())}
		mu.Lock()
		lags = append(lags, lag)
		w := dispatch.Route(&req)
		res.Sent++
		if lag > 0.1 && !warned && cfg.Warn != nil {
			fmt.Fprintf(cfg.Warn, "elis-sim bench: falling behind the schedule: request %s sent %.0f ms late\n", r.ID, lag*1e3)
			warned = true
		}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, reply, gaps, retries := cfg.send(abandon, cfg.URLs[w], r, i, start)
			mu.Lock()
			defer mu.Unlock()
			res.Retries += retries
			rec.Worker = w
			res.Records[i], res.Replies[i] = rec, reply
			for _, g := range gaps {
				res.Gaps.Add(g)
			}
			dispatch.Done(i)
			if rec.Finish < 0 {
				res.Failed++
			}
			done++
			if cfg.Progress != nil {
				cfg.Progress(done, len(tr.Requests))
			}
		}()
	}
	wg.Wait()
	close(tickDone)
	scraping.Wait()
	res.Makespan = since()
	res.Interrupted = res.Interrupted || abandon.Err() != nil
	if !cfg.NoMetrics {
		for _, s := range scrapers {
			s.scrape()
			res.Metrics = append(res.Metrics, s.result())
		}
	}
	sort.Float64s(lags)
	if n := len(lags); n > 0 {
		res.Lag = LagStats{P50: lags[n/2], P99: lags[min(n-1, n*99/100)], Max: lags[n-1]}
	}
	return res, nil
}

// Failure is one kind of failure in a run: how many requests failed so,
// and the first one's record.
type Failure struct {
	Kind  string // "HTTP 404", "connection refused", "error in the stream", ...
	Count int
	First policies.Record
}

// Failures groups the run's failed requests by kind, in the order each
// kind first happened (requests never sent are left out: they did not
// fail).
func (res *Result) Failures() []Failure {
	var out []Failure
	at := map[string]int{}
	for i, r := range res.Records {
		if r.Finish >= 0 || r.Rejected == NotSent {
			continue
		}
		k := failureKind(&r, res.Replies[i].Status)
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, Failure{Kind: k, First: r})
		}
		out[i].Count++
	}
	return out
}

// failureKind names what a failure was without its particulars (addresses,
// ids, counts): the reply's status, else the innermost cause.
func failureKind(r *policies.Record, status int) string {
	if status != 0 && status != http.StatusOK {
		return fmt.Sprintf("HTTP %d", status)
	}
	msg := r.Rejected
	if i := strings.LastIndex(msg, ": "); i >= 0 && !strings.HasPrefix(msg, "error in the stream") {
		msg = msg[i+2:]
	}
	if strings.HasPrefix(msg, "error in the stream") {
		return "error in the stream"
	}
	if len(msg) > 60 {
		msg = msg[:60] + "..."
	}
	return msg
}

// body is the JSON of request r, whose index is i.
func (cfg *Config) body(r *traces.Request, i int) ([]byte, error) {
	b := map[string]any{"model": cfg.Model, "max_tokens": r.OutputTokens, "stream": true,
		"stream_options": map[string]any{"include_usage": true}}
	if !cfg.FreeLengths {
		b["min_tokens"] = r.OutputTokens
		b["ignore_eos"] = true
	}
	if r.Priority != 0 {
		b["priority"] = r.Priority
	}
	switch cfg.Endpoint {
	case "chat":
		text := r.Prompt
		if text == "" {
			text = words(cfg.promptIDs(r, i))
		}
		b["messages"] = []map[string]string{{"role": "user", "content": text}}
	default:
		if r.Prompt != "" {
			b["prompt"] = r.Prompt
		} else {
			b["prompt"] = cfg.promptIDs(r, i)
		}
	}
	return json.Marshal(b)
}

// promptIDs are exactly PromptTokens token ids. The blocks a request's
// content names (hash ids, a session's stream) are drawn from those names,
// so requests that share a prefix in the trace share it on the server and
// its prefix cache sees what the trace describes; the rest is drawn from
// the request's index.
func (cfg *Config) promptIDs(r *traces.Request, i int) []int32 {
	// Stay clear of special tokens at the bottom of vocabularies.
	t := synth.Tokens{Seed: cfg.Seed, Low: 1000, Vocab: cfg.Vocab}
	return t.Prompt(make([]int32, 0, r.PromptTokens), i, policies.NewContent(r.HashIDs, r.HashBlock, r.SessionKey()), r.PromptTokens)
}

// words renders token ids as words, one per id, for a chat without text.
func words(ids []int32) string {
	var b strings.Builder
	for k, id := range ids {
		if k > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "w%d", id)
	}
	return b.String()
}

// streamTimes is one request's stream as timed from its send.
type streamTimes struct {
	sent       time.Time
	status     int
	id         string
	first      float64   // seconds to the first chunk with text
	chunks     []float64 // seconds to each chunk with text
	completion int       // tokens generated, from usage (or chunks)
	retries    int       // resends after a closed kept-alive connection
	offset     float64   // for the caller: the send's offset in its window
}

// sendTimed sends request r (index i) to base and times its stream. Its
// error says what failed; the status, when there was a reply, is in the
// result even then.
func (cfg *Config) sendTimed(ctx context.Context, base string, r *traces.Request, i int) (*streamTimes, error) {
	st := &streamTimes{sent: time.Now()}
	body, err := cfg.body(r, i)
	if err != nil {
		return st, fmt.Errorf("building the request: %v", err)
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	path := "/v1/completions"
	if cfg.Endpoint == "chat" {
		path = "/v1/chat/completions"
	}
	resp, err := cfg.post(ctx, strings.TrimSuffix(base, "/")+path, body, st)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	st.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return st, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	s, err := readStream(resp.Body, func() time.Duration { return time.Since(st.sent) }, r.OutputTokens)
	if s != nil {
		st.id = s.id
	}
	if err != nil {
		return st, err
	}
	if len(s.chunks) == 0 {
		return st, fmt.Errorf("the stream carried no tokens")
	}
	for _, c := range s.chunks {
		st.chunks = append(st.chunks, c.Seconds())
	}
	st.first = st.chunks[0]
	st.completion = len(s.chunks)
	if s.completion > 0 {
		// Each chunk with text is at least one token: a usage that claims
		// fewer is not to be trusted.
		if s.completion < len(s.chunks) {
			return st, fmt.Errorf("the usage claims %d completion tokens, but the stream carried %d chunks with text", s.completion, len(s.chunks))
		}
		st.completion = s.completion
	}
	if !cfg.FreeLengths && st.completion != r.OutputTokens {
		return st, fmt.Errorf("asked for %d output tokens, the server generated %d", r.OutputTokens, st.completion)
	}
	if s.prompt >= 0 && r.Prompt == "" && cfg.Endpoint != "chat" && s.prompt != r.PromptTokens {
		return st, fmt.Errorf("sent %d prompt tokens, the server counted %d", r.PromptTokens, s.prompt)
	}
	return st, nil
}

// vocab is cfg.Vocab, or what the servers say, or 32,000.
func (cfg *Config) vocab(ctx context.Context) int {
	if cfg.Vocab > 0 {
		return cfg.Vocab
	}
	v := 0
	for _, u := range cfg.URLs {
		if n := Discover(ctx, cfg.Client, u, cfg.APIKey, cfg.Model).Vocab; n > 0 && (v == 0 || n < v) {
			v = n
		}
	}
	if v == 0 {
		v = 32000
	}
	return v
}

// maxRetries bounds the resends of one request.
const maxRetries = 2

// post sends body and returns the response. A request that failed on a
// kept-alive connection before any byte of an answer came back is sent
// again, at most maxRetries times, each counted in st: the server closed
// that connection (llama.cpp's server closes every streamed one while
// advertising keep-alive), so it cannot have processed the request. Any
// other failure is final.
func (cfg *Config) post(ctx context.Context, url string, body []byte, st *streamTimes) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		var reused, answered bool
		trace := &httptrace.ClientTrace{
			GotConn:              func(i httptrace.GotConnInfo) { reused = i.Reused },
			GotFirstResponseByte: func() { answered = true },
		}
		hr, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		hr.Header.Set("Content-Type", "application/json")
		if cfg.APIKey != "" {
			hr.Header.Set("Authorization", "Bearer "+cfg.APIKey)
		}
		resp, err := cfg.Client.Do(hr)
		if err == nil || !reused || answered || attempt == maxRetries || ctx.Err() != nil {
			return resp, err
		}
		st.retries++
		st.sent = time.Now() // the request's clock starts with the send that counts
	}
}

// send runs request r (index i) against base and returns its record and
// inter-token gaps. A chunk may carry several tokens: the usage's count
// of completion tokens beyond the chunks counts as tokens arriving with
// the chunks (gaps of 0), and the chunks' own gaps are the visible ones.
func (cfg *Config) send(ctx context.Context, base string, r *traces.Request, i int, start time.Time) (policies.Record, Reply, []float64, int) {
	st, err := cfg.sendTimed(ctx, base, r, i)
	// A client cannot see when the server first schedules a request:
	// FirstScheduled stays -1, and reports leave queueing delay out (TTFT
	// holds it).
	rec := policies.Record{ID: r.ID, Index: i, Arrival: st.sent.Sub(start).Seconds(), FirstScheduled: -1, FirstToken: -1, Finish: -1,
		PromptTokens: r.PromptTokens, OutputTokens: r.OutputTokens}
	reply := Reply{Status: st.status, ServerID: st.id}
	if err != nil {
		rec.Rejected = err.Error()
		return rec, reply, nil, st.retries
	}
	n := st.completion
	rec.Generated = n
	rec.FirstToken = rec.Arrival + st.first
	rec.Finish = rec.Arrival + st.chunks[len(st.chunks)-1]
	gaps := make([]float64, 0, n-1)
	for k := 1; k < len(st.chunks); k++ {
		g := st.chunks[k] - st.chunks[k-1]
		rec.MaxGap = math.Max(rec.MaxGap, g)
		gaps = append(gaps, g)
	}
	for k := len(st.chunks); k < n; k++ {
		gaps = append(gaps, 0)
	}
	return rec, reply, gaps, st.retries
}
