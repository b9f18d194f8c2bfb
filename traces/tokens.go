package traces

import (
	"fmt"
	"strings"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/pretrained"
)

// TokenCounter counts the tokens of a text, for importers of formats that
// carry text but no token counts.
type TokenCounter interface {
	CountTokens(text string) (int, error)
}

// Words counts whitespace-separated words: a rough, dependency-free stand-in
// for a tokenizer (real tokenizers give about 1.3 tokens per English word).
type Words struct{}

// CountTokens returns the number of words in text.
func (Words) CountTokens(text string) (int, error) { return len(strings.Fields(text)), nil }

// HFTokenizer counts tokens with a Hugging Face tokenizer.json, without the
// special tokens a model adds around a sequence.
type HFTokenizer struct{ tk *tokenizer.Tokenizer }

// CountTokens encodes text and returns its length.
func (h HFTokenizer) CountTokens(text string) (int, error) {
	enc, err := h.tk.EncodeSingle(text, false)
	if err != nil {
		return 0, err
	}
	return len(enc.Ids), nil
}

// LoadTokenCounter returns the counter named by spec: "words", or the path of
// a Hugging Face tokenizer.json.
func LoadTokenCounter(spec string) (TokenCounter, error) {
	if spec == "words" {
		return Words{}, nil
	}
	tk, err := pretrained.FromFile(spec)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w (want a Hugging Face tokenizer.json or \"words\")", spec, err)
	}
	return HFTokenizer{tk: tk}, nil
}
