package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/traces"
)

// Fixtures of vLLM's streaming format, written from its documentation and
// the OpenAI API reference: one chunk per token or several tokens in one,
// a final chunk with finish_reason, a usage-only chunk (choices empty)
// when stream_options.include_usage is set, data: [DONE], keep-alive
// comment lines, an error event in the middle of a stream.
func TestReadStream(t *testing.T) {
	cases := []struct {
		name, body      string
		chunks, prompt  int
		completion      int
		err, id, finish string
	}{
		{"one token a chunk, usage", `data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" a","finish_reason":null}]}

data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" b","finish_reason":null}]}

data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"","finish_reason":"length"}]}

data: {"id":"cmpl-1","object":"text_completion","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}

data: [DONE]

`, 2, 5, 2, "", "cmpl-1", "length"},
		{"several tokens in a chunk, keep-alives, chat deltas", `: keep-alive

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello there"}}]}
: ping

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3}}

data: [DONE]
`, 2, 3, 3, "", "chatcmpl-9", "stop"},
		{"error in the middle", `data: {"id":"cmpl-2","choices":[{"index":0,"text":" a"}]}

data: {"error":{"message":"engine died","type":"InternalServerError","code":500}}

`, 1, -1, 0, "engine died", "cmpl-2", ""},
		{"vLLM's flat error event", `data: {"object":"error","message":"out of memory","type":"InternalServerError","code":500}

`, 0, -1, 0, "out of memory", "", ""},
		{"closed halfway", `data: {"id":"cmpl-3","choices":[{"index":0,"text":" a"}]}

data: {"id":"cmpl-3","choi`, 1, -1, 0, "malformed event", "cmpl-3", ""},
		{"no [DONE]", `data: {"id":"cmpl-4","choices":[{"index":0,"text":" a"}]}

`, 1, -1, 0, "without [DONE]", "cmpl-4", ""},
		{"llama.cpp's error field", "data: {\"id\":\"c-6\",\"choices\":[{\"index\":0,\"text\":\" a\"}]}\n\nerror: {\"code\":400,\"message\":\"the request exceeds the available context size\",\"type\":\"exceed_context_size_error\"}\n\n",
			1, -1, 0, "error in the stream: the request exceeds the available context size", "c-6", ""},
		{"llama.cpp's one-token reply: the token in the bare finishing chunk", `data: {"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"length"}],"object":"text_completion","usage":{"completion_tokens":1,"prompt_tokens":64,"total_tokens":65},"id":"chatcmpl-9pE"}

data: [DONE]

`, 1, 64, 1, "", "chatcmpl-9pE", "length"},
		{"multi-line data", "data: {\"id\":\"cmpl-5\",\ndata: \"choices\":[{\"index\":0,\"text\":\" a\"}]}\n\ndata: [DONE]\n\n", 1, -1, 0, "", "cmpl-5", ""},
	}
	for _, c := range cases {
		n := 0
		st, err := readStream(strings.NewReader(c.body), func() time.Duration { n++; return time.Duration(n) * time.Millisecond }, 0)
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			continue
		}
		if len(st.chunks) != c.chunks || st.prompt != c.prompt || st.completion != c.completion || st.id != c.id || st.finish != c.finish {
			t.Errorf("%s: %d chunks, usage %d/%d, id %q, finish %q; want %d, %d/%d, %q, %q", c.name, len(st.chunks), st.prompt, st.completion, st.id, st.finish,
				c.chunks, c.prompt, c.completion, c.id, c.finish)
		}
	}
}

// A stream is trusted no further than max_tokens: a server that sends more
// chunks with text is cut off at the bound (not read to its end), and a
// usage that claims fewer tokens than the chunks it sent is refused.
func TestStreamBeyondMaxTokens(t *testing.T) {
	chunk := "data: {\"id\":\"x\",\"choices\":[{\"text\":\" a\"}]}\n\n"
	endless := io.MultiReader(strings.NewReader(strings.Repeat(chunk, 10)), infinite(chunk))
	st, err := readStream(endless, func() time.Duration { return 0 }, 5)
	if err == nil || !strings.Contains(err.Error(), "more than the 5 chunks") || len(st.chunks) != 5 {
		t.Fatalf("an endless stream with max_tokens 5: %v, %d chunks kept", err, len(st.chunks))
	}
	claim := strings.Repeat(chunk, 9) + "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n"
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, claim) }))
	defer hs.Close()
	tr := &traces.Trace{Requests: []traces.Request{{ID: "a", PromptTokens: 3, OutputTokens: 9}}}
	res, err := Run(context.Background(), context.Background(), tr, Config{URLs: []string{hs.URL}, Model: "m", NoMetrics: true, FreeLengths: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Records[0]; r.Finish >= 0 || !strings.Contains(r.Rejected, "usage claims 4 completion tokens, but the stream carried 9 chunks") || res.Gaps.N() != 0 {
		t.Fatalf("a usage claiming fewer tokens than the chunks: %+v, %d gaps", r, res.Gaps.N())
	}
}

// infinite repeats s for ever.
type infinite string

func (s infinite) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], s)
	}
	return n, nil
}

func FuzzReadStream(f *testing.F) {
	f.Add("data: {\"id\":\"x\",\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\n")
	f.Add(": ping\n\ndata: {\"error\":{\"message\":\"m\"}}\n\n")
	f.Fuzz(func(t *testing.T, body string) {
		st, _ := readStream(strings.NewReader(body), func() time.Duration { return 0 }, 0)
		if st == nil {
			t.Fatal("nil stream")
		}
	})
}

// The fork's log lines become predictions of the matching records, by
// vLLM's internal id (the stream's id plus "-0").
func TestServerLog(t *testing.T) {
	log := `INFO 11-27 10:00:00 [scheduler.py:200] [ELIS] Request cmpl-abc-0 initial prediction: 150.3 tokens
INFO 11-27 10:00:01 [engine.py:1] something else
INFO 11-27 10:00:02 [scheduler.py:210] [ELIS] Request cmpl-abc-0 prediction updated: 150.3 -> 98.5 (at 50 tokens)
[ELIS] Request cmpl-zzz initial prediction: inf tokens
`
	l, err := ReadServerLog(strings.NewReader(log), "log")
	if err != nil {
		t.Fatal(err)
	}
	res := &Result{Records: []policies.Record{{Generated: 120}, {}}, Replies: []Reply{{ServerID: "cmpl-abc"}, {ServerID: "other"}}}
	recs := res.Records
	if n := l.Attach(res); n != 1 {
		t.Fatalf("attached to %d records, want 1", n)
	}
	p := recs[0].Predictions
	if len(p) != 2 || p[0].Predicted != 150.3 || p[0].Actual != 120 || p[1].Generated != 50 || p[1].Predicted != 98.5 || p[1].Actual != 70 {
		t.Fatalf("predictions %+v", p)
	}
}

// FuzzServerLog: whatever a server's log holds, the predictions read from
// it are numbers (inf for none), at a token count >= 0.
func FuzzServerLog(f *testing.F) {
	f.Add("INFO [ELIS] Request cmpl-abc-0 initial prediction: 150.3 tokens\n[ELIS] Request cmpl-abc-0 prediction updated: 150.3 -> 98.5 (at 50 tokens)\n")
	f.Add("[ELIS] Request x initial prediction: nan tokens\n")
	f.Fuzz(func(t *testing.T, log string) {
		l, err := ReadServerLog(strings.NewReader(log), "log")
		if err != nil {
			return
		}
		for id, ps := range l {
			for _, p := range ps {
				if math.IsNaN(p.Predicted) || p.Generated < 0 {
					t.Fatalf("%s: %+v", id, p)
				}
			}
		}
	})
}

// FuzzParseMetrics: any Prometheus text gives finite sums, which a run
// file can hold.
func FuzzParseMetrics(f *testing.F) {
	f.Add("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 3\n# TYPE vllm:num_preemptions counter\nvllm:num_preemptions_total 2\n")
	f.Add("# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc NaN\nvllm:num_requests_waiting +Inf\n")
	f.Fuzz(func(t *testing.T, text string) {
		vals, err := ParseMetrics(strings.NewReader(text))
		if err != nil {
			return
		}
		for name, v := range vals {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("%s = %v", name, v)
			}
		}
	})
}
