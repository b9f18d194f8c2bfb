package traces

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

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

// CountTokens returns the number of words in text, as strings.Fields
// splits it, without building the words: a long prompt costs no memory
// beyond itself.
func (Words) CountTokens(text string) (int, error) {
	n, inWord := 0, false
	for _, r := range text {
		space := unicode.IsSpace(r)
		if !space && !inWord {
			n++
		}
		inWord = !space
	}
	return n, nil
}

// HFTokenizer encodes text with a Hugging Face tokenizer.json.
type HFTokenizer struct {
	tk *tokenizer.Tokenizer
	// stripAccents: sugarme/tokenizer v0.3.0's BERT normaliser keeps
	// accents where Hugging Face's strips them ("Résumé" -> "resume"), so
	// they are stripped here first (NFD, then drop combining marks).
	stripAccents bool
}

// CountTokens returns the length of text's encoding without the special
// tokens a model adds around a sequence.
func (h HFTokenizer) CountTokens(text string) (int, error) {
	ids, err := h.Encode(text, false)
	return len(ids), err
}

// Encode returns text's token ids, with the special tokens ([CLS] ...
// [SEP]) when special is set.
func (h HFTokenizer) Encode(text string, special bool) ([]int, error) {
	if h.stripAccents {
		text = stripAccents(text)
	}
	enc, err := h.tk.EncodeSingle(text, special)
	if err != nil {
		return nil, err
	}
	return enc.Ids, nil
}

var accentStripper = transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)

func stripAccents(s string) string {
	out, _, err := transform.String(accentStripper, s)
	if err != nil {
		return s
	}
	return out
}

// bertStripsAccents reads whether a tokenizer.json's BERT normaliser
// strips accents: strip_accents true, or unset with lowercase true.
func bertStripsAccents(data []byte) bool {
	var doc struct {
		Normalizer *struct {
			Type         string `json:"type"`
			Lowercase    bool   `json:"lowercase"`
			StripAccents *bool  `json:"strip_accents"`
		} `json:"normalizer"`
	}
	if json.Unmarshal(data, &doc) != nil || doc.Normalizer == nil || doc.Normalizer.Type != "BertNormalizer" {
		return false
	}
	n := doc.Normalizer
	if n.StripAccents != nil {
		return *n.StripAccents
	}
	return n.Lowercase
}

// LoadTokenCounter returns the counter named by spec: "words", or the path of
// a Hugging Face tokenizer.json.
func LoadTokenCounter(spec string) (TokenCounter, error) {
	if spec == "words" {
		return Words{}, nil
	}
	data, err := os.ReadFile(spec)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w (want a Hugging Face tokenizer.json or \"words\")", spec, err)
	}
	tk, err := parseTokenizer(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w (want a Hugging Face tokenizer.json or \"words\")", spec, err)
	}
	return HFTokenizer{tk: tk, stripAccents: bertStripsAccents(data)}, nil
}

// parseTokenizer builds a tokenizer from a tokenizer.json with
// sugarme/tokenizer, which panics on JSON it half understands (a model
// without its fields, a field of another type): that is an error here.
func parseTokenizer(data []byte) (tk *tokenizer.Tokenizer, err error) {
	if !json.Valid(data) {
		return nil, errors.New("not JSON")
	}
	defer func() {
		if p := recover(); p != nil {
			tk, err = nil, fmt.Errorf("not a tokenizer.json this reader understands (%v)", p)
		}
	}()
	return pretrained.FromReader(bytes.NewReader(data))
}
