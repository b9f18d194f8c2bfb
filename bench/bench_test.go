package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/engine"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/serve"
	"github.com/elis-sim/elis-sim/traces"
)

// startServe runs elis-sim's own server on loopback: steps of 1 ms plus
// 10 us a token, so a test's wall-clock time stays small; nothing below
// depends on how fast this machine is.
func startServe(t *testing.T, policy string) *httptest.Server {
	t.Helper()
	pol, err := policies.New(policy, policies.RerankPause)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := serve.New(serve.Config{Model: "m", MaxModelLen: 4096, Workers: 1, Router: "least-loaded",
		Tokens: traces.Words{}.CountTokens,
		NewWorker: func(int) (engine.Config, error) {
			eng := policies.Config{MaxBatchedTokens: 512, MaxSeqs: 16, BlockSize: 16, NumBlocks: 2000, MaxModelLen: 4096, PredictionInterval: 50, PrefixCaching: true}
			core, err := policies.NewScheduler(eng, pol)
			return engine.Config{Core: core, Coster: &cost.Linear{Base: 1e-3, PerPrefillToken: 1e-5, PerDecodeSeq: 1e-5}}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return hs
}

func smallTrace(t *testing.T, n int) *traces.Trace {
	tr, err := traces.Generate(traces.GenConfig{N: n, Seed: 2, Arrivals: traces.Poisson{Rate: 200},
		Prompt: traces.Uniform{Min: 20, Max: 200}, Output: traces.Uniform{Min: 2, Max: 20},
		Shared: traces.SharedPrefix{Tokens: 64, Fraction: 0.8, Count: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// Against elis-sim serve on loopback every request streams exactly its
// forced lengths, its times are ordered, the server's metrics are scraped
// and its prefix cache sees the trace's shared system prompt through the
// token ids bench sends.
func TestBenchAgainstServe(t *testing.T) {
	hs := startServe(t, "fcfs")
	tr := smallTrace(t, 40)
	res, err := Run(context.Background(), context.Background(), tr, Config{URLs: []string{hs.URL}, Model: "m", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 0 || res.Sent != 40 {
		t.Fatalf("%d failed, %d sent: %+v", res.Failed, res.Sent, res.Records[0])
	}
	for i, r := range res.Records {
		reply := res.Replies[i]
		w := tr.Requests[i]
		if r.Generated != w.OutputTokens || reply.Status != 200 || !(r.Arrival <= r.FirstToken && r.FirstToken <= r.Finish) || !strings.HasPrefix(reply.ServerID, "cmpl-") {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
	if int(res.Gaps.N()) != sumOutputs(tr)-40 {
		t.Errorf("%d gaps, want one per token after the first (%d)", res.Gaps.N(), sumOutputs(tr)-40)
	}
	m := res.Metrics[0]
	if len(m.Samples) < 2 || m.Err != "" {
		t.Fatalf("metrics: %+v", m)
	}
	first, last := m.Samples[0].Values, m.Samples[len(m.Samples)-1].Values
	if q := last["vllm:prefix_cache_queries_total"] - first["vllm:prefix_cache_queries_total"]; q < float64(sumPrompts(tr)) {
		t.Errorf("prefix cache queried %v tokens, the prompts hold %d", q, sumPrompts(tr))
	}
	if h := last["vllm:prefix_cache_hits_total"]; h < 64*5 {
		t.Errorf("prefix cache hits %v tokens: the shared 64-token prompt should hit for most requests", h)
	}
}

func sumOutputs(tr *traces.Trace) (n int) {
	for _, r := range tr.Requests {
		n += r.OutputTokens
	}
	return
}

func sumPrompts(tr *traces.Trace) (n int) {
	for _, r := range tr.Requests {
		n += r.PromptTokens
	}
	return
}

// Servers that fail: every request is recorded with its error (refused
// connection, HTTP 500, a stream closed halfway, malformed JSON, too few
// tokens), none dropped or retried.
func TestBenchRecordsFailures(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()
	handler := func(body string, code int) string {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/metrics" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(code)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(hs.Close)
		return hs.URL
	}
	cases := []struct{ url, want string }{
		{refused, "connection refused"},
		{handler(`{"object":"error","message":"boom","code":500}`, 500), "HTTP 500: "},
		{handler("data: {\"id\":\"x\",\"choices\":[{\"text\":\" a\"}]}\n\ndata: {\"id\":\"x\",\"cho", 200), "malformed event"},
		{handler("data: not json\n\n", 200), "malformed event"},
		{handler("data: {\"id\":\"x\",\"choices\":[{\"text\":\" a\"}]}\n\ndata: [DONE]\n\n", 200), "asked for"},
	}
	tr := smallTrace(t, 3)
	for _, c := range cases {
		res, err := Run(context.Background(), context.Background(), tr, Config{URLs: []string{c.url}, Model: "m"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Failed != 3 || len(res.Records) != 3 {
			t.Fatalf("%s: %d failed of %d records", c.want, res.Failed, len(res.Records))
		}
		for _, r := range res.Records {
			if r.Finish != -1 || !strings.Contains(r.Rejected, c.want) {
				t.Fatalf("%s: record %+v", c.want, r)
			}
		}
	}
}

// least-predicted-work over two servers spreads requests by the output
// each was asked for (bench never filled the work, and sent every request
// to the first server), and each record names its server.
func TestRoutingByPredictedWork(t *testing.T) {
	a, b := startServe(t, "fcfs"), startServe(t, "fcfs")
	tr := smallTrace(t, 20)
	res, err := Run(context.Background(), context.Background(), tr, Config{URLs: []string{a.URL, b.URL}, Model: "m",
		Router: "least-predicted-work", TimeScale: 1e-6, NoMetrics: true})
	if err != nil {
		t.Fatal(err)
	}
	by := map[int]int{}
	for _, r := range res.Records {
		by[r.Worker]++
	}
	if res.Failed != 0 || by[0] == 0 || by[1] == 0 {
		t.Fatalf("%d failed; requests by server %v", res.Failed, by)
	}
}

// The ISRTF fork's prediction log, round trip: elis-sim serve's cores list
// the predictions they make, the server writes the fork's [ELIS] lines
// from them (the core itself does no I/O), and bench --server-log attaches
// them to the requests: a first prediction for every request and an
// update every 50 tokens.
func TestServerPredictionLog(t *testing.T) {
	pol, _ := policies.New("isrtf", policies.RerankPause)
	var log safeBuffer
	srv, err := serve.New(serve.Config{Model: "m", MaxModelLen: 4096, Workers: 1, Router: "least-loaded", Tokens: traces.Words{}.CountTokens,
		PredictionLog: &log,
		NewWorker: func(int) (engine.Config, error) {
			eng := policies.Config{MaxBatchedTokens: 512, MaxSeqs: 2, BlockSize: 16, NumBlocks: 2000, MaxModelLen: 4096, PredictionInterval: 50}
			core, err := policies.NewScheduler(eng, pol)
			return engine.Config{Core: core, Coster: &cost.Linear{Base: 1e-4}, Predictor: predictor.Oracle{}}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer func() { hs.Close(); srv.Close() }()
	tr := smallTrace(t, 8)
	for i := range tr.Requests {
		tr.Requests[i].OutputTokens = 120 // two windows: updates at 50 and 100
	}
	res, err := Run(context.Background(), context.Background(), tr, Config{URLs: []string{hs.URL}, Model: "m", NoMetrics: true, TimeScale: 1e-6})
	if err != nil || res.Failed != 0 {
		t.Fatalf("%v, %d failed", err, res.Failed)
	}
	sl, err := ReadServerLog(strings.NewReader(log.String()), "log")
	if err != nil {
		t.Fatal(err)
	}
	if n := sl.Attach(res); n != 8 {
		t.Fatalf("predictions for %d of 8 requests; the log:\n%s", n, log.String())
	}
	updated := 0
	for _, r := range res.Records {
		if len(r.Predictions) < 1 || r.Predictions[0].Generated != 0 || r.Predictions[0].Predicted != 120 {
			t.Fatalf("%s: predictions %+v", r.ID, r.Predictions)
		}
		if len(r.Predictions) > 1 && r.Predictions[1].Generated == 50 && r.Predictions[1].Predicted == 70 {
			updated++
		}
	}
	if updated == 0 || !strings.Contains(log.String(), "prediction updated: 120.0 -> 70.0 (at 50 tokens)") {
		t.Fatalf("no update at 50 tokens in the log:\n%s", log.String())
	}
}

// safeBuffer is a bytes.Buffer several engines write to.
type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A server that closes a kept-alive connection instead of answering the
// next request on it (llama.cpp's server closes every streamed one while
// advertising keep-alive): the request, which no byte answered, is sent
// again on a fresh connection, and counted; none fails.
func TestResendOnClosedKeepAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	body := "data: {\"id\":\"x\",\"choices\":[{\"text\":\" a\"}]}\n\ndata: {\"id\":\"x\",\"choices\":[{\"text\":\" b\"}]}\n\ndata: [DONE]\n\n"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // answer one request, then drop the connection at the next
				defer c.Close()
				rd := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(rd)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if n > 0 {
						return
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			}()
		}
	}()
	tr := &traces.Trace{}
	for i := range 4 {
		tr.Requests = append(tr.Requests, traces.Request{ID: fmt.Sprint(i), Arrival: float64(i) * 0.05, PromptTokens: 4, OutputTokens: 2})
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	res, err := Run(context.Background(), context.Background(), tr, Config{URLs: []string{"http://" + ln.Addr().String()}, Model: "m", NoMetrics: true, Client: client, Vocab: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 0 || res.Retries == 0 {
		t.Fatalf("%d failed, %d resent: %+v", res.Failed, res.Retries, res.Records)
	}
}

// Failures are grouped by kind, each with its first record: what the
// command prints so that a run where everything failed says why.
func TestFailureKinds(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()
	notFound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		fmt.Fprint(w, `{"error":{"message":"The model m does not exist.","type":"NotFoundError","param":null,"code":404}}`)
	}))
	defer notFound.Close()
	tr := smallTrace(t, 6)
	res, err := Run(context.Background(), context.Background(), tr, Config{URLs: []string{refused, notFound.URL}, Router: "round-robin", Model: "m", NoMetrics: true})
	if err != nil {
		t.Fatal(err)
	}
	f := res.Failures()
	if len(f) != 2 || f[0].Kind != "connection refused" || f[0].Count != 3 || f[1].Kind != "HTTP 404" || f[1].Count != 3 ||
		!strings.Contains(f[1].First.Rejected, "does not exist") {
		t.Fatalf("failures %+v", f)
	}
}

// A /metrics that takes seconds to answer does not hold up the schedule:
// scrapes run beside the sender, so every request is sent, and done,
// while the first scrape is still waiting. A /metrics body of megabytes
// of other metrics costs bench only the lines it follows.
func TestSlowMetricsDoNotDelaySends(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	srv := startServe(t, "fcfs")
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			<-release // until the run has sent everything
			fmt.Fprint(w, "# TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total 2\n")
			for range 200000 {
				fmt.Fprint(w, "other_metric{label=\"a long label value\"} 1\n")
			}
			return
		}
		srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer slow.Close()
	defer once.Do(func() { close(release) })
	tr := smallTrace(t, 10)
	cfg := Config{URLs: []string{slow.URL}, Model: "m", MetricsInterval: 0,
		Progress: func(done, total int) {
			if done == total {
				once.Do(func() { close(release) })
			}
		}}
	res, err := Run(context.Background(), context.Background(), tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 0 || res.Sent != 10 {
		t.Fatalf("%d failed of %d sent", res.Failed, res.Sent)
	}
	m := res.Metrics[0]
	if m.Err != "" || len(m.Samples) != 2 || m.Samples[1].Values["vllm:num_preemptions_total"] != 2 {
		t.Fatalf("metrics %+v", m)
	}
}

// A /metrics body over the bound fails its scrape, not the bench.
func TestHugeMetricsRefused(t *testing.T) {
	_, err := ParseMetrics(infinite("vllm:num_requests_running{a=\"b\"} 1\n"))
	if err == nil || !strings.Contains(err.Error(), "over") {
		t.Fatalf("an endless /metrics: %v", err)
	}
}

// Profile over HTTP gives one first-token timing per prompt length and one
// decode step per batch and context, of the right shapes, from elis-sim
// serve (whose numbers are the cost model's: how close a calibration gets
// is wall-clock and lives in scripts/profile-url-roundtrip).
func TestProfileAgainstServe(t *testing.T) {
	hs := startServe(t, "fcfs")
	// 300 tokens of 1 ms steps: the three requests overlap for most of
	// them even if this machine starts one of them late.
	sh := ProfileShapes{Prompts: []int{16, 200}, Batches: []int{1, 3}, Contexts: []int{32}, Decode: 300, Reps: 1}
	p, err := Profile(context.Background(), Config{URLs: []string{hs.URL}, Model: "m"}, sh)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Requests) != 2 || p.Requests[1].PromptTokens != 200 || !(p.Requests[0].Seconds > 0) {
		t.Fatalf("requests: %+v", p.Requests)
	}
	if len(p.Steps) != 2 || p.Steps[1].DecodeSeqs != 3 || p.Steps[1].DecodeContext != 3*(32+150) || !(p.Steps[1].Seconds > 0) {
		t.Fatalf("steps: %+v", p.Steps)
	}
}

// With Wait, bench holds its first send until a server that is still
// starting answers; a server that never comes is named in the error.
func TestWaitForServer(t *testing.T) {
	hs := startServe(t, "fcfs")
	front := httptest.NewUnstartedServer(nil)
	var up atomic.Bool
	front.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() { // still loading
			http.Error(w, "loading", http.StatusServiceUnavailable)
			if r.URL.Path == "/v1/models" {
				up.Store(true) // answers from the next poll on
			}
			return
		}
		hs.Config.Handler.ServeHTTP(w, r)
	})
	front.Start()
	defer front.Close()
	tr := smallTrace(t, 4)
	res, err := Run(context.Background(), context.Background(), tr, Config{URLs: []string{front.URL}, Model: "m", NoMetrics: true, Wait: time.Minute})
	if err != nil || res.Failed != 0 {
		t.Fatalf("after waiting: %v, %+v", err, res)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there
	_, err = Run(context.Background(), context.Background(), tr, Config{URLs: []string{gone}, Model: "m", NoMetrics: true, Wait: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), gone) || !strings.Contains(err.Error(), "--wait") {
		t.Fatalf("a server that never answers: %v", err)
	}
}
