package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The OpenAI API's request bodies, with vLLM's sampling extensions that
// matter for scheduling (min_tokens, ignore_eos, priority). Fields a
// scheduler study does not use (temperature, top_p, stop, ...) are
// accepted and ignored, as a stand-in for a sampler that never stops
// early should.

// StreamOptions is the stream_options object.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type commonParams struct {
	Model         string         `json:"model"`
	MaxTokens     *int           `json:"max_tokens"`
	MaxCompletion *int           `json:"max_completion_tokens"`
	MinTokens     int            `json:"min_tokens"`
	IgnoreEOS     bool           `json:"ignore_eos"`
	Stream        bool           `json:"stream"`
	StreamOptions *StreamOptions `json:"stream_options"`
	Priority      int            `json:"priority"`
	N             *int           `json:"n"`
}

// CompletionRequest is the body of /v1/completions.
type CompletionRequest struct {
	commonParams
	Prompt json.RawMessage `json:"prompt"`
}

// ChatMessage is one message of a chat.
type ChatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// ChatRequest is the body of /v1/chat/completions.
type ChatRequest struct {
	commonParams
	Messages []ChatMessage `json:"messages"`
}

// prompt is a parsed prompt: token ids, or text to count.
type prompt struct {
	ids  []int32
	text string
}

// parsePrompt reads a completion prompt: a string, a list of token ids, or
// a list holding exactly one of either (several prompts in one request
// would be several requests; vLLM's benchmark never sends them).
func parsePrompt(raw json.RawMessage) (prompt, error) {
	if len(raw) == 0 {
		return prompt{}, errors.New(`"prompt" is required`)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return prompt{text: s}, nil
	}
	var ids []int32
	if err := json.Unmarshal(raw, &ids); err == nil {
		if len(ids) == 0 {
			return prompt{}, errors.New(`"prompt": an empty list of token ids`)
		}
		for _, id := range ids {
			if id < 0 {
				return prompt{}, fmt.Errorf(`"prompt": token id %d, want >= 0`, id)
			}
		}
		return prompt{ids: ids}, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err == nil && len(list) == 1 {
		return parsePrompt(list[0])
	}
	return prompt{}, errors.New(`"prompt": want a string, a list of token ids, or a list of one of them`)
}

// chatText is the text of a chat's messages, which the engine counts as
// its prompt (a chat template adds a few tokens per message, which a
// length-only engine does not model).
func chatText(msgs []ChatMessage) (string, error) {
	if len(msgs) == 0 {
		return "", errors.New(`"messages" is required and must not be empty`)
	}
	var b strings.Builder
	for i, m := range msgs {
		var s string
		if err := json.Unmarshal(m.Content, &s); err != nil {
			var parts []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			}
			if err := json.Unmarshal(m.Content, &parts); err != nil {
				return "", fmt.Errorf(`"messages[%d].content": want a string or a list of {"type": "text", "text": ...}`, i)
			}
			for _, p := range parts {
				s += p.Text
			}
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// outputTokens is how many tokens a request generates: max_tokens (or
// max_completion_tokens), vLLM's default of 16 for completions when
// neither is given, or what remains of the context for chat.
func (p *commonParams) outputTokens(def int) (int, error) {
	n := def
	switch {
	case p.MaxTokens != nil:
		n = *p.MaxTokens
	case p.MaxCompletion != nil:
		n = *p.MaxCompletion
	}
	if n < 1 {
		return 0, fmt.Errorf(`"max_tokens": %d, want >= 1`, n)
	}
	if p.MinTokens < 0 || p.MinTokens > n {
		return 0, fmt.Errorf(`"min_tokens": %d, want 0 to max_tokens (%d)`, p.MinTokens, n)
	}
	if p.N != nil && *p.N != 1 {
		return 0, fmt.Errorf(`"n": %d; this server generates one choice per request`, *p.N)
	}
	return n, nil
}

// usage is the token counts of a request.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}
