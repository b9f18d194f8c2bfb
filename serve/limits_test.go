package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/engine"
	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/traces"
)

// These tests run the server as a user runs it: Serve on a loopback
// listener, clients over real connections. None bounds wall-clock time:
// each waits for what must happen, and go test's timeout catches a hang.

// listening starts srv on a loopback port and returns its base URL; the
// server is closed at the end of the test.
func listening(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// timedServer is a server of the cost model's engine whose steps last base
// seconds, with cfg's fields set by edit.
func timedServer(t *testing.T, base float64, edit func(*Config)) *Server {
	t.Helper()
	pol, _ := policies.New("fcfs", policies.RerankPause)
	cfg := Config{Model: "m", MaxModelLen: 1 << 20, Workers: 1, Router: "least-loaded", Tokens: traces.Words{}.CountTokens,
		NewWorker: func(int) (engine.Config, error) {
			eng := policies.Config{MaxBatchedTokens: 1 << 20, MaxSeqs: 64, BlockSize: 16, NumBlocks: 1 << 17, MaxModelLen: 1 << 20, PredictionInterval: 50}
			core, err := policies.NewScheduler(eng, pol)
			return engine.Config{Core: core, Coster: &cost.Linear{Base: base}}, err
		}}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// apiErr reads an error answer: it must be vLLM's current object.
func apiErr(t *testing.T, body string) apiError {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == 0 {
		t.Fatalf("not vLLM's error object: %s", body)
	}
	return *e.Error
}

func do(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// client keeps connections for many goroutines' requests.
var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}

// Every 4xx the server writes, unknown paths and methods included, is
// vLLM's {"error": {...}} object with the status as its code; the body
// limit answers 413.
func TestErrorsAreVLLMsObject(t *testing.T) {
	url := listening(t, timedServer(t, 1e-4, func(c *Config) { c.Limits.MaxRequestBytes = 2048 }))
	for _, c := range []struct {
		method, path, body string
		code               int
		typ                string
	}{
		{"GET", "/nowhere", "", 404, "NotFoundError"},
		{"DELETE", "/v1/completions", "", 405, "MethodNotAllowed"},
		{"POST", "/metrics", "", 405, "MethodNotAllowed"},
		{"POST", "/v1/completions", `{"prompt":"` + strings.Repeat("a ", 2000) + `"}`, 413, "RequestEntityTooLarge"},
		{"POST", "/v1/completions", `{"prompt":`, 400, "BadRequestError"},
		{"POST", "/v1/chat/completions", `{"model":"x","messages":[{"role":"user","content":"hi"}]}`, 404, "NotFoundError"},
	} {
		code, body := do(t, c.method, url+c.path, c.body)
		if e := apiErr(t, body); code != c.code || e.Code != c.code || e.Type != c.typ {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, code, body, c.code, c.typ)
		}
	}
}

// --api-key as vLLM has it: /v1 wants the bearer token (401 and the error
// object without it), /health and /metrics stay open.
func TestAPIKey(t *testing.T) {
	url := listening(t, timedServer(t, 1e-4, func(c *Config) { c.APIKey = "sesame" }))
	body := `{"prompt":[1,2],"max_tokens":2}`
	for _, auth := range []string{"", "Bearer wrong", "sesame", "Bearer sesame2"} {
		code, b := do(t, "POST", url+"/v1/completions", body, "Authorization", auth)
		if e := apiErr(t, b); code != 401 || e.Code != 401 {
			t.Errorf("Authorization %q: %d %s", auth, code, b)
		}
	}
	if code, b := do(t, "GET", url+"/v1/models", ""); code != 401 {
		t.Errorf("models without a key: %d %s", code, b)
	}
	if code, b := do(t, "POST", url+"/v1/completions", body, "Authorization", "Bearer sesame"); code != 200 {
		t.Errorf("with the key: %d %s", code, b)
	}
	for _, path := range []string{"/health", "/metrics"} {
		if code, _ := do(t, "GET", url+path, ""); code != 200 {
			t.Errorf("%s without a key: %d", path, code)
		}
	}
}

// Shutdown has net/http's shape: a request whose body finishes arriving
// after Shutdown began gets a 503 with the error object (it used to hit a
// closed channel and panic), a stream already running finishes with
// [DONE], and Shutdown returns once both are answered and the engine has
// stopped.
func TestShutdownDrainsAndRefuses(t *testing.T) {
	srv := timedServer(t, 0.005, nil)
	url := listening(t, srv)

	// A stream in flight: 40 steps of 5 ms.
	resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":[1,2,3],"max_tokens":40,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil { // its first token came
		t.Fatal(err)
	}
	// A request whose body is still arriving.
	pr, pw := io.Pipe()
	late := make(chan *http.Response, 1)
	go func() {
		r, err := http.Post(url+"/v1/completions", "application/json", pr)
		if err != nil {
			t.Error(err)
		}
		late <- r
	}()
	pw.Write([]byte(`{"prompt":[1,2,3],`))
	for inState(srv, http.StateActive) < 2 { // until its handler is reading the body
		time.Sleep(time.Millisecond)
	}

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	for !closing(srv) {
		time.Sleep(time.Millisecond)
	}
	pw.Write([]byte(`"max_tokens":2}`))
	pw.Close()
	r := <-late
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if e := apiErr(t, string(b)); r.StatusCode != 503 || e.Code != 503 {
		t.Fatalf("a body finished after Shutdown began: %d %s", r.StatusCode, b)
	}
	rest, err := io.ReadAll(rd)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || strings.Count(string(rest), `"text":" t`) != 39 {
		t.Fatalf("the stream in flight did not finish whole (%v):\n%s", err, rest)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func closing(s *Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// inState counts the server's connections in state st.
func inState(s *Server, st http.ConnState) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.states {
		if c == st {
			n++
		}
	}
	return n
}

// activeConns counts the server's open connections.
func activeConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// failingExec is a CPU executor that fails from its failAt-th step on: an
// engine whose device broke.
type failingExec struct {
	gpu.Executor
	mu     sync.Mutex
	steps  int
	failAt int
}

func (f *failingExec) Step(seqs []gpu.SeqStep, next []int32) error {
	f.mu.Lock()
	f.steps++
	n := f.steps
	f.mu.Unlock()
	if n >= f.failAt {
		return errors.New("device lost")
	}
	return f.Executor.Step(seqs, next)
}

// An engine that fails fails its requests at once (500 with the error
// object, or an error event in a stream that had begun), /health says
// 503, and new requests get a 503 at once instead of queueing: thousands
// of them, more than the engine's inbox holds, never block.
func TestFailedEngineFailsItsRequests(t *testing.T) {
	mc, _ := gpu.Preset("tiny")
	wts, err := gpu.RandomWeights(mc, 1)
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := policies.New("fcfs", policies.RerankPause)
	var recs []policies.Record
	var mu sync.Mutex
	srv, err := New(Config{Model: "tiny", MaxModelLen: 256, Workers: 1, Router: "least-loaded", Tokens: traces.Words{}.CountTokens, Vocab: mc.Vocab,
		Records: func(r policies.Record) { mu.Lock(); recs = append(recs, r); mu.Unlock() },
		NewWorker: func(int) (engine.Config, error) {
			eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: 64, MaxModelLen: 256, PredictionInterval: 50}
			core, err := policies.NewScheduler(eng, pol)
			if err != nil {
				return engine.Config{}, err
			}
			exec, err := gpu.NewCPU(wts, 4, 64, 0)
			return engine.Config{Core: core, Exec: &failingExec{Executor: exec, failAt: 4}, Vocab: mc.Vocab}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	url := listening(t, srv)
	if code, _ := do(t, "GET", url+"/health", ""); code != 200 {
		t.Fatalf("health before the failure: %d", code)
	}
	// A stream whose engine fails on its 4th step: its first tokens came,
	// then the error, as an event.
	code, body := do(t, "POST", url+"/v1/completions", `{"prompt":[1,2,3],"max_tokens":50,"stream":true}`)
	if code != 200 || !strings.Contains(body, `data: {"error":{"message":"engine 0: worker 0: device lost","type":"InternalServerError","param":null,"code":500}}`) ||
		!strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Fatalf("the stream of a failed engine: %d %s", code, body)
	}
	code, body = do(t, "GET", url+"/health", "")
	if e := apiErr(t, body); code != 503 || !strings.Contains(e.Message, "device lost") {
		t.Fatalf("health after the failure: %d %s", code, body)
	}
	var wg sync.WaitGroup
	codes := make(chan int, 64*20)
	for range 64 { // 1,280 requests: more than the 1,024 an inbox holds
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				c, b := do(t, "POST", url+"/v1/completions", `{"prompt":[1,2],"max_tokens":2}`)
				apiErr(t, b)
				codes <- c
			}
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 503 {
			t.Fatalf("a request to a failed engine: %d, want 503", c)
		}
	}
	// Shutdown waits for connections that have not sent a request yet
	// (5 s for net/http): the client's spare ones go first.
	client.CloseIdleConnections()
	if err := srv.Shutdown(context.Background()); err == nil || !strings.Contains(err.Error(), "device lost") {
		t.Fatalf("Shutdown after a failure: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(recs) != 1 || recs[0].Finish >= 0 || !strings.Contains(recs[0].Rejected, "device lost") {
		t.Fatalf("records %+v: the failed request is recorded as failed", recs)
	}
}

// dialer opens connections to url from a chosen loopback address (the
// whole 127.0.0.0/8 is this machine), closed at the end of the test.
func dialer(t *testing.T, url string) func(from string) net.Conn {
	return func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// A connection that never finishes its headers is closed after
// ReadHeaderTimeout, and its slot is free again.
func TestSlowHeadersAreCutOff(t *testing.T) {
	srv := timedServer(t, 1e-4, func(c *Config) { c.Limits.ReadHeaderTimeout = 100 * time.Millisecond })
	dial := dialer(t, listening(t, srv))
	slow := dial("127.0.0.1")
	slow.Write([]byte("POST /v1/completions HTTP/1.1\r\nHost: x\r\n"))
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("the slow-header connection: %v", err)
	}
	for activeConns(srv) != 0 {
		time.Sleep(time.Millisecond)
	}
}

// One client address holds at most MaxConnsPerClient connections: the
// next is answered 429 with the error object.
func TestConnectionsPerClient(t *testing.T) {
	srv := timedServer(t, 1e-4, func(c *Config) { c.Limits.MaxConnsPerClient = 3 })
	dial := dialer(t, listening(t, srv))
	for range 3 {
		dial("127.0.0.2")
	}
	for activeConns(srv) < 3 {
		time.Sleep(time.Millisecond)
	}
	over := dial("127.0.0.2")
	over.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if e := apiErr(t, string(b)); resp.StatusCode != 429 || e.Code != 429 {
		t.Fatalf("a connection over the client's bound: %d %s", resp.StatusCode, b)
	}
	if code, _ := do(t, "GET", listeningURL(over)+"/health", ""); code != 200 {
		t.Fatalf("another client while 127.0.0.2 is at its bound: %d", code)
	}
}

func listeningURL(c net.Conn) string { return "http://" + c.RemoteAddr().String() }

// At MaxConns a new connection takes the slot of the oldest one that has
// sent no request (slow-header clients push out one another, not the
// client that sends its request); when every connection is in the middle
// of a request, a new one waits until one ends, then is served.
func TestConnectionLimits(t *testing.T) {
	srv := timedServer(t, 1e-4, func(c *Config) { c.Limits.MaxConns = 4 })
	dial := dialer(t, listening(t, srv))
	health := func(c net.Conn) chan int {
		c.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
		answered := make(chan int, 1)
		go func() {
			defer c.Close()
			r, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				answered <- -1
				return
			}
			answered <- r.StatusCode
		}()
		return answered
	}
	var slow []net.Conn
	for i := range 4 {
		slow = append(slow, dial(fmt.Sprintf("127.0.0.%d", 2+i)))
		slow[i].Write([]byte("GET /health HTTP/1.1\r\n"))
		for activeConns(srv) < i+1 {
			time.Sleep(time.Millisecond)
		}
	}
	if c := <-health(dial("127.0.0.1")); c != 200 {
		t.Fatalf("a real request while slow-header clients fill every slot: %d", c)
	}
	if _, err := io.ReadAll(slow[0]); err != nil {
		t.Fatalf("the oldest slow-header connection: %v", err)
	}
	// Four requests under way (their bodies not yet sent): a fifth
	// connection waits for one of them.
	for activeConns(srv) != 0 {
		for _, c := range slow[1:] {
			c.Close()
		}
		time.Sleep(time.Millisecond)
	}
	var busy []net.Conn
	for i := range 4 {
		c := dial(fmt.Sprintf("127.0.0.%d", 2+i))
		c.Write([]byte("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"))
		busy = append(busy, c)
	}
	for inState(srv, http.StateActive) < 4 {
		time.Sleep(time.Millisecond)
	}
	answered := health(dial("127.0.0.1"))
	select {
	case c := <-answered:
		t.Fatalf("a fifth connection was served (%d) while four requests were under way", c)
	case <-time.After(100 * time.Millisecond):
	}
	busy[0].Close()
	if c := <-answered; c != 200 {
		t.Fatalf("the waiting connection, once a request ended: %d", c)
	}
}

// A client that stops reading its stream loses it after WriteTimeout: its
// request is aborted (counted in /metrics) and no request is left pending.
func TestStalledReaderIsCutOff(t *testing.T) {
	srv := timedServer(t, 1e-6, func(c *Config) { c.Limits.WriteTimeout = 200 * time.Millisecond })
	url := listening(t, srv)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	body := `{"prompt":[1,2,3],"max_tokens":200000,"stream":true}`
	fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	waitAborted(t, srv, url) // it never reads: the server gives up on it
}

// waitAborted waits until /metrics counts one aborted request, then
// checks that no request is left pending; a lost abort hangs until go
// test's timeout.
func waitAborted(t *testing.T, srv *Server, url string) {
	t.Helper()
	for {
		_, b := do(t, "GET", url+"/metrics", "")
		if strings.Contains(b, `vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 1`) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.mu.Lock()
	left := len(srv.reqs)
	srv.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d requests still pending after the abort", left)
	}
}

// least-predicted-work spreads requests over the engines by the work
// routed to each (serve never filled it, and sent 16 of 16 to engine 0),
// and each request's record and metrics name the engine that served it.
func TestRoutingByPredictedWork(t *testing.T) {
	var mu sync.Mutex
	byEngine := map[int]int{}
	srv := timedServer(t, 0.02, func(c *Config) {
		c.Workers, c.Router = 2, "least-predicted-work"
		c.Records = func(r policies.Record) { mu.Lock(); byEngine[r.Worker]++; mu.Unlock() }
	})
	url := listening(t, srv)
	// Each request would take 20,000 steps: none ends while the others
	// are routed, however slow this machine. Their clients leave once all
	// are in flight (first token read), and the engines abort them.
	var bodies []io.Closer
	for range 16 {
		resp, err := client.Post(url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":[1,2,3],"max_tokens":20000,"stream":true}`))
		if err != nil {
			t.Fatal(err)
		}
		bufio.NewReader(resp.Body).ReadString('\n')
		bodies = append(bodies, resp.Body)
	}
	for _, b := range bodies {
		b.Close()
	}
	for { // the records come as the engines abort
		mu.Lock()
		n := byEngine[0] + byEngine[1]
		mu.Unlock()
		if n == 16 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_, m := do(t, "GET", url+"/metrics", "")
	if byEngine[0] != 8 || byEngine[1] != 8 || !strings.Contains(m, `vllm:request_success_total{engine="1",finished_reason="abort",model_name="m"} 8`) {
		t.Fatalf("requests by engine %v; metrics:\n%s", byEngine, m)
	}
}
