package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
)

// stream writes one request's answer in the OpenAI format: server-sent
// events of one token each when streaming (data: {chunk}, a final chunk
// with finish_reason, an optional usage-only chunk, data: [DONE]), or one
// JSON object.
type stream struct {
	kind    string // "cmpl" or "chatcmpl"
	id      string
	model   string
	created int64
	role    bool // the chat's first delta carried the role
	begun   bool // the event stream's headers are written
}

// TokenText is the text of a placeholder token: a word per token, so that
// counting words counts tokens.
func TokenText(tok int32) string { return fmt.Sprintf(" t%d", tok) }

func (st *stream) object(chunk bool) string {
	switch {
	case st.kind == "chatcmpl" && chunk:
		return "chat.completion.chunk"
	case st.kind == "chatcmpl":
		return "chat.completion"
	}
	return "text_completion"
}

func (st *stream) choice(text string, finish any) map[string]any {
	if st.kind == "chatcmpl" {
		delta := map[string]any{"content": text}
		if !st.role {
			delta["role"] = "assistant"
			st.role = true
		}
		return map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}
	}
	return map[string]any{"index": 0, "text": text, "logprobs": nil, "finish_reason": finish}
}

func (st *stream) chunk(choices []map[string]any) map[string]any {
	return map[string]any{"id": st.id, "object": st.object(true), "created": st.created, "model": st.model, "choices": choices}
}

// begin writes the event stream's headers, once: not before the first
// event, so that a request the engine refuses still gets an error status.
func (st *stream) begin(w http.ResponseWriter) {
	if st.begun {
		return
	}
	st.begun = true
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
}

func (st *stream) event(w http.ResponseWriter, v any) {
	st.begin(w)
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "data: %s\n\n", b)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

func (st *stream) token(w http.ResponseWriter, tok int32) {
	st.event(w, st.chunk([]map[string]any{st.choice(TokenText(tok), nil)}))
}

func (st *stream) end(w http.ResponseWriter, withUsage bool, u usage) {
	st.event(w, st.chunk([]map[string]any{st.choice("", "length")}))
	if withUsage {
		c := st.chunk([]map[string]any{})
		c["usage"] = u
		st.event(w, c)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// whole is the non-streaming answer.
func (st *stream) whole(toks []int32, u usage) map[string]any {
	var b bytes.Buffer
	for _, t := range toks {
		b.WriteString(TokenText(t))
	}
	var choice map[string]any
	if st.kind == "chatcmpl" {
		choice = map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": b.String()}, "logprobs": nil, "finish_reason": "length"}
	} else {
		choice = map[string]any{"index": 0, "text": b.String(), "logprobs": nil, "finish_reason": "length"}
	}
	return map[string]any{"id": st.id, "object": st.object(false), "created": st.created, "model": st.model,
		"choices": []map[string]any{choice}, "usage": u}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
