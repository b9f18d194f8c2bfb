package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
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
	// rc sets a deadline on each write: a client that stops reading
	// blocks a write for writeTimeout at most, then loses its stream.
	rc           *http.ResponseController
	writeTimeout time.Duration
}

// deadline bounds the next write.
func (st *stream) deadline() {
	if st.rc != nil && st.writeTimeout > 0 {
		st.rc.SetWriteDeadline(time.Now().Add(st.writeTimeout))
	}
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

// event writes one event and flushes it, within the write deadline; an
// error means the client is gone or stopped reading.
func (st *stream) event(w http.ResponseWriter, v any) error {
	b, _ := json.Marshal(v)
	return st.raw(w, "data: %s\n\n", b)
}

func (st *stream) raw(w http.ResponseWriter, format string, args ...any) error {
	st.deadline()
	st.begin(w)
	if _, err := fmt.Fprintf(w, format, args...); err != nil {
		return err
	}
	if st.rc != nil {
		return st.rc.Flush()
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}

func (st *stream) token(w http.ResponseWriter, tok int32) error {
	return st.event(w, st.chunk([]map[string]any{st.choice(TokenText(tok), nil)}))
}

func (st *stream) end(w http.ResponseWriter, withUsage bool, u usage) {
	if st.event(w, st.chunk([]map[string]any{st.choice("", "length")})) != nil {
		return
	}
	if withUsage {
		c := st.chunk([]map[string]any{})
		c["usage"] = u
		if st.event(w, c) != nil {
			return
		}
	}
	st.raw(w, "data: [DONE]\n\n")
}

// fail ends a stream that has begun with the error object as an event, as
// vLLM reports an error after its 200, then [DONE].
func (st *stream) fail(w http.ResponseWriter, e *apiError) {
	if st.event(w, errorBody{e}) == nil {
		st.raw(w, "data: [DONE]\n\n")
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
