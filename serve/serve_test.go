package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/engine"
	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/traces"
)

func newTestServer(t testing.TB, base float64) (*Server, *httptest.Server) {
	t.Helper()
	pol, _ := policies.New("fcfs", policies.RerankPause)
	srv, err := New(Config{Model: "m", MaxModelLen: 100, Workers: 1, Router: "least-loaded", Tokens: traces.Words{}.CountTokens,
		NewWorker: func(int) (engine.Config, error) {
			eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 16, NumBlocks: 64, MaxModelLen: 100, PredictionInterval: 50, PrefixCaching: true}
			core, err := policies.NewScheduler(eng, pol)
			return engine.Config{Core: core, Coster: &cost.Linear{Base: base}}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return srv, hs
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The OpenAI protocol as vLLM speaks it: a streamed completion is one
// event per token, a final chunk with finish_reason "length", a usage-only
// chunk when asked, and [DONE]; a chat streams deltas, the first with the
// role; non-streamed answers carry usage; bad requests get vLLM's error
// object with 400 or 404, and the server keeps serving.
func TestProtocol(t *testing.T) {
	_, hs := newTestServer(t, 1e-4)
	code, body := post(t, hs.URL+"/v1/completions", `{"model":"m","prompt":[1,2,3,4],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}`)
	events := strings.Split(strings.TrimSpace(body), "\n\n")
	if code != 200 || len(events) != 6 || events[5] != "data: [DONE]" {
		t.Fatalf("%d: %q", code, body)
	}
	var last struct {
		Choices []any
		Usage   usage
	}
	json.Unmarshal([]byte(strings.TrimPrefix(events[4], "data: ")), &last)
	if len(last.Choices) != 0 || last.Usage != (usage{4, 3, 7}) || !strings.Contains(events[3], `"finish_reason":"length"`) {
		t.Fatalf("final events %q %q", events[3], events[4])
	}
	code, body = post(t, hs.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"one two three"}],"max_tokens":2,"stream":true}`)
	if code != 200 || !strings.Contains(body, `"role":"assistant"`) || !strings.Contains(body, `"object":"chat.completion.chunk"`) || strings.Contains(body, `"usage"`) {
		t.Fatalf("chat stream %d: %s", code, body)
	}
	code, body = post(t, hs.URL+"/v1/completions", `{"prompt":"a b c","max_tokens":5}`)
	var whole struct {
		Object  string
		Choices []struct{ Text string }
		Usage   usage
	}
	json.Unmarshal([]byte(body), &whole)
	if code != 200 || whole.Object != "text_completion" || len(strings.Fields(whole.Choices[0].Text)) != 5 || whole.Usage != (usage{3, 5, 8}) {
		t.Fatalf("non-streamed %d: %s", code, body)
	}
	for _, c := range []struct {
		body string
		code int
		want string
	}{
		{`{"model":"other","prompt":"a"}`, 404, "does not exist"},
		{`{"prompt":"a","max_tokens":-2}`, 400, "max_tokens"},
		{`{"prompt":[1,2],"max_tokens":99}`, 400, "maximum context length is 100"},
		{`{"prompt":"a"`, 400, "malformed JSON"},
		{`{"prompt":{}}`, 400, "prompt"},
		{`{"prompt":"a","min_tokens":9,"max_tokens":3}`, 400, "min_tokens"},
	} {
		code, body := post(t, hs.URL+"/v1/completions", c.body)
		if code != c.code || !strings.Contains(body, c.want) || !strings.Contains(body, `"error":{`) {
			t.Errorf("%s: %d %s", c.body, code, body)
		}
	}
	resp, err := http.Get(hs.URL + "/v1/models")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("models: %v", err)
	}
	resp.Body.Close()
}

// A client that goes away mid-stream frees its sequence: the engine
// aborts it, and /metrics counts it.
func TestDisconnectAborts(t *testing.T) {
	// Steps of half a second: the 90 tokens would take 45 s, so the
	// client is gone long before they are done however busy this machine
	// is; the engine sees the abort at the end of the step under way.
	srv, hs := newTestServer(t, 0.5)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/v1/completions", strings.NewReader(`{"prompt":[1,2,3],"max_tokens":90,"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bufio.NewReader(resp.Body).ReadString('\n') // the first token arrived
	cancel()
	resp.Body.Close()
	waitAborted(t, srv, hs.URL)
}

// With a device engine the tokens are the model's (tiny, random weights,
// greedy on the CPU): the same prompt twice gives the same text, the second
// time from the prefix cache, which /metrics shows.
func TestCPUEngine(t *testing.T) {
	mc, _ := gpu.Preset("tiny")
	wts, err := gpu.RandomWeights(mc, 1)
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := policies.New("fcfs", policies.RerankPause)
	srv, err := New(Config{Model: "tiny", MaxModelLen: 256, Workers: 1, Router: "least-loaded", Tokens: traces.Words{}.CountTokens, Vocab: mc.Vocab,
		NewWorker: func(int) (engine.Config, error) {
			eng := policies.Config{MaxBatchedTokens: 64, MaxSeqs: 4, BlockSize: 4, NumBlocks: 64, MaxModelLen: 256, PredictionInterval: 50, PrefixCaching: true}
			core, err := policies.NewScheduler(eng, pol)
			if err != nil {
				return engine.Config{}, err
			}
			exec, err := gpu.NewCPU(wts, 4, 64, 0)
			return engine.Config{Core: core, Exec: exec, Vocab: mc.Vocab}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer func() { hs.Close(); srv.Close() }()
	body := `{"prompt":[5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25],"max_tokens":6}`
	var texts []string
	for range 2 {
		code, b := post(t, hs.URL+"/v1/completions", body)
		var r struct{ Choices []struct{ Text string } }
		json.Unmarshal([]byte(b), &r)
		if code != 200 || len(r.Choices) != 1 || len(strings.Fields(r.Choices[0].Text)) != 6 {
			t.Fatalf("%d: %s", code, b)
		}
		texts = append(texts, r.Choices[0].Text)
	}
	if texts[0] != texts[1] {
		t.Fatalf("same prompt, different tokens: %q then %q", texts[0], texts[1])
	}
	m, _ := http.Get(hs.URL + "/metrics")
	b, _ := io.ReadAll(m.Body)
	m.Body.Close()
	if !strings.Contains(string(b), `vllm:prefix_cache_hits_total{engine="0",model_name="tiny"} 16`) {
		t.Fatalf("the second request should hit its first 16 tokens (one 16-token content block; the 21st is computed anyway):\n%s", b)
	}
}

// FuzzRequests sends arbitrary bodies to both generation endpoints of a
// real server on loopback: each gets a whole answer (200) or vLLM's error
// object with a 4xx, never a 5xx or a dropped connection, and the server
// keeps serving.
func FuzzRequests(f *testing.F) {
	_, hs := newTestServer(f, 1e-6)
	f.Add(`{"model":"m","prompt":[1,2,3,4],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}`, false)
	f.Add(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"one two"}]}],"max_tokens":2}`, true)
	f.Add(`{"prompt":["a b"],"max_completion_tokens":4,"min_tokens":2,"ignore_eos":true,"priority":-3,"n":1}`, false)
	f.Fuzz(func(t *testing.T, body string, chat bool) {
		path := "/v1/completions"
		if chat {
			path = "/v1/chat/completions"
		}
		resp, err := http.Post(hs.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: reading the answer: %v", body, err)
		}
		switch c := resp.StatusCode; {
		case c == 200:
		case c >= 400 && c < 500 && strings.Contains(string(b), `"error":{`):
		default:
			t.Fatalf("%s: %d %s", body, c, b)
		}
	})
}
