package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// chunk is what bench reads from one streamed event of an OpenAI-style
// completion: the text it adds, the usage when present, an error when the
// server reports one in the stream.
type chunk struct {
	ID      string `json:"id"`
	Choices []struct {
		Text  string `json:"text"`
		Delta struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
	// vLLM puts an error's fields at the top level of an event too.
	Object  string `json:"object"`
	Message string `json:"message"`
}

// streamed is one request's stream as bench saw it.
type streamed struct {
	id         string
	chunks     []time.Duration // arrival of each chunk carrying text, from the send
	prompt     int             // usage: prompt tokens (-1: no usage seen)
	completion int             // usage: completion tokens
	done       bool            // saw data: [DONE]
	finish     string
	// finishedAt is when a finishing chunk without text came: llama.cpp
	// sends a request's last token there when its piece decodes to
	// nothing, which usage then counts (see settle).
	finishedAt time.Duration
	bareFinish bool
}

// settle counts the bare finishing chunk as the last token when usage says
// one more token came than the chunks with text showed: llama.cpp's
// server sends a one-token reply as a single chunk with finish_reason and
// no text when the token's piece is empty.
func (s *streamed) settle(maxChunks int) {
	if s.bareFinish && s.completion == len(s.chunks)+1 && (maxChunks == 0 || len(s.chunks) < maxChunks) {
		s.chunks = append(s.chunks, s.finishedAt)
		s.bareFinish = false
	}
}

// readStream reads server-sent events until [DONE], the end of the body,
// or an error event. since gives each chunk's arrival. A stream of more
// chunks with text than maxChunks (the max_tokens asked; 0: no bound) is
// cut off there and is an error: a server cannot generate more tokens
// than asked, whatever its usage says. Comment lines
// (":"-prefixed keep-alives) and other fields are skipped; an event's
// data may span several data: lines, joined by newlines as the SSE
// specification says.
func readStream(r io.Reader, since func() time.Duration, maxChunks int) (*streamed, error) {
	s := &streamed{prompt: -1}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	var data bytes.Buffer
	flush := func() error {
		if data.Len() == 0 {
			return nil
		}
		defer data.Reset()
		payload := bytes.TrimSpace(data.Bytes())
		if string(payload) == "[DONE]" {
			s.done = true
			return nil
		}
		var c chunk
		if err := json.Unmarshal(payload, &c); err != nil {
			return fmt.Errorf("malformed event %q: %w", shorten(string(payload)), err)
		}
		if c.Error != nil {
			return fmt.Errorf("error in the stream: %s", c.Error.Message)
		}
		if c.Object == "error" {
			return fmt.Errorf("error in the stream: %s", c.Message)
		}
		if s.id == "" {
			s.id = c.ID
		}
		for _, ch := range c.Choices {
			// A token's chunk may carry no text (a piece that decodes to
			// nothing yet, as llama.cpp's random-weight models make): what
			// is not a token is the final chunk and a chat's role-only
			// first one.
			unfinished := ch.FinishReason == nil || *ch.FinishReason == ""
			if ch.Text != "" || ch.Delta.Content != "" || (unfinished && ch.Delta.Role == "") {
				if maxChunks > 0 && len(s.chunks) >= maxChunks {
					return fmt.Errorf("the stream carried more than the %d chunks with text that max_tokens allows; cut off", maxChunks)
				}
				s.chunks = append(s.chunks, since())
			}
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				s.finish = *ch.FinishReason
				if ch.Text == "" && ch.Delta.Content == "" {
					s.finishedAt, s.bareFinish = since(), true
				}
			}
		}
		if c.Usage != nil {
			s.prompt, s.completion = c.Usage.PromptTokens, c.Usage.CompletionTokens
		}
		return nil
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if err := flush(); err != nil {
				return s, err
			}
			if s.done {
				s.settle(maxChunks)
				return s, nil
			}
		case strings.HasPrefix(line, ":"):
			// a comment: keep-alive
		case strings.HasPrefix(line, "error:"):
			// llama.cpp's server reports a failure after its 200 as an
			// event field of its own: keep its message.
			return s, fmt.Errorf("error in the stream: %s", errorMessage(strings.TrimSpace(strings.TrimPrefix(line, "error:"))))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("reading the stream: %w", err)
	}
	if err := flush(); err != nil {
		return s, err
	}
	if !s.done {
		return s, errors.New("the stream ended without [DONE]")
	}
	s.settle(maxChunks)
	return s, nil
}

// errorMessage is the message of an error payload: an OpenAI error object
// ({"error": {"message": ...}} or the object itself), or the text as it is.
func errorMessage(payload string) string {
	var e struct {
		Message string `json:"message"`
		Error   *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(payload), &e) == nil {
		switch {
		case e.Error != nil && e.Error.Message != "":
			return e.Error.Message
		case e.Message != "":
			return e.Message
		}
	}
	return shorten(payload)
}

// maxEventLine bounds one line of an event stream: a token's chunk is a
// few hundred bytes.
const maxEventLine = 1 << 20

func shorten(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
