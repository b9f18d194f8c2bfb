package traces

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// forEachLine calls fn with each non-blank line of a JSONL file and its
// 1-based line number.
func forEachLine(data []byte, name string, fn func(line int, b []byte) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if err := fn(line, b); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s line %d: %w", name, line+1, err)
	}
	return nil
}

// field checks a required JSON number field decoded as a pointer.
func field[T int | int64 | float64](name string, line int, key string, v *T) (T, error) {
	if v == nil {
		return 0, fmt.Errorf("%s line %d: missing field %q", name, line, key)
	}
	if *v < 0 {
		return 0, fmt.Errorf("%s line %d: field %q: %v, want >= 0", name, line, key, *v)
	}
	return *v, nil
}

// MooncakeBlock is the number of tokens each of Mooncake's hash_ids names.
const MooncakeBlock = 512

// importMooncake reads the Mooncake trace JSONL: timestamp (ms),
// input_length, output_length, and hash_ids when present (one id per
// 512-token block of the prompt; equal ids, equal content), kept for the
// prefix cache.
func importMooncake(data []byte, name string, opt ImportOptions) (*Trace, error) {
	tr := &Trace{Name: "mooncake"}
	block := MooncakeBlock
	if opt.HashBlock > 0 {
		block = opt.HashBlock
	}
	err := forEachLine(data, name, func(line int, b []byte) error {
		var row struct {
			Timestamp *float64 `json:"timestamp"`
			In        *int     `json:"input_length"`
			Out       *int     `json:"output_length"`
			Hashes    []int64  `json:"hash_ids"`
		}
		if err := json.Unmarshal(b, &row); err != nil {
			return fmt.Errorf("%s line %d: %w", name, line, err)
		}
		ts, err := field(name, line, "timestamp", row.Timestamp)
		if err != nil {
			return err
		}
		in, err := field(name, line, "input_length", row.In)
		if err != nil {
			return err
		}
		out, err := field(name, line, "output_length", row.Out)
		if err != nil {
			return err
		}
		r := Request{
			ID: "mooncake-" + strconv.Itoa(len(tr.Requests)), Arrival: ts / 1000,
			PromptTokens: atLeastOne(in), OutputTokens: atLeastOne(out),
		}
		if n := len(row.Hashes); n > 0 {
			if want := (r.PromptTokens + block - 1) / block; n > want {
				if opt.HashBlock == 0 {
					return fmt.Errorf("%s line %d: field \"hash_ids\": %d ids of %d tokens for %d input tokens, want at most %d", name, line, n, block, in, want)
				}
				n = want // ids of fewer tokens than the trace's name only the start
			}
			r.HashIDs, r.HashBlock = make([]uint64, n), block
			for i, h := range row.Hashes[:n] {
				if h < 0 {
					return fmt.Errorf("%s line %d: field \"hash_ids\": id %d, want >= 0", name, line, h)
				}
				r.HashIDs[i] = uint64(h)
			}
		}
		tr.Requests = append(tr.Requests, r)
		return nil
	})
	return tr, err
}

// importAPEX reads APEX's JSONL (ContextTokens, GeneratedTokens,
// SynthesizedBody, StartTimeOffset in ns).
func importAPEX(data []byte, name string, opt ImportOptions) (*Trace, error) {
	tr := &Trace{Name: "apex"}
	err := forEachLine(data, name, func(line int, b []byte) error {
		var row struct {
			In     *int    `json:"ContextTokens"`
			Out    *int    `json:"GeneratedTokens"`
			Body   string  `json:"SynthesizedBody"`
			Offset *int64  `json:"StartTimeOffset"`
			ID     *string `json:"RequestID"`
		}
		if err := json.Unmarshal(b, &row); err != nil {
			return fmt.Errorf("%s line %d: %w", name, line, err)
		}
		in, err := field(name, line, "ContextTokens", row.In)
		if err != nil {
			return err
		}
		out, err := field(name, line, "GeneratedTokens", row.Out)
		if err != nil {
			return err
		}
		off, err := field(name, line, "StartTimeOffset", row.Offset)
		if err != nil {
			return err
		}
		r := Request{
			ID: "apex-" + strconv.Itoa(len(tr.Requests)), Arrival: float64(off) / 1e9,
			PromptTokens: atLeastOne(in), OutputTokens: atLeastOne(out),
		}
		if opt.KeepText {
			r.Prompt = apexText(row.Body)
		}
		tr.Requests = append(tr.Requests, r)
		return nil
	})
	return tr, err
}

// apexText is the prompt text of an APEX body: its bodies are the repr of
// a Python dict, {'content': '...', 'role': 'user'}; the content's string
// literal is decoded. A body of another shape is kept whole.
func apexText(body string) string {
	const head = "{'content': "
	if !strings.HasPrefix(body, head) || len(body) <= len(head) {
		return body
	}
	s := body[len(head):]
	q := s[0]
	if q != '\'' && q != '"' {
		return body
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q:
			return b.String()
		case c != '\\' || i+1 == len(s):
			b.WriteByte(c)
		default:
			i++
			switch e := s[i]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'x', 'u', 'U':
				n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if i+n < len(s) {
					if v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32); err == nil {
						b.WriteRune(rune(v))
						i += n
						continue
					}
				}
				b.WriteByte('\\')
				b.WriteByte(e)
			default: // \\, \', \" and anything else stand for themselves
				b.WriteByte(e)
			}
		}
	}
	return body // no closing quote: not the expected shape
}

// shareGPTTurn is one turn of a ShareGPT conversation.
type shareGPTTurn struct {
	From  string `json:"from"`
	Value string `json:"value"`
}

type shareGPTConv struct {
	ID    json.RawMessage `json:"id"`
	Turns []shareGPTTurn  `json:"conversations"`
}

func isHuman(t shareGPTTurn) bool { return t.From == "human" || t.From == "user" }

// shareGPTTurns makes a request of every human turn answered by the next
// turn: its prompt is the conversation up to and including that turn (the
// earlier answers as the model gave them), its output the answer; the
// turns of a conversation share a session and follow each other in the
// trace.
func shareGPTTurns(tr *Trace, convs []shareGPTConv, name string, opt ImportOptions) error {
	for i, c := range convs {
		session := fmt.Sprintf("sharegpt-%d", i)
		history := 0
		var text strings.Builder
		for k := 0; k+1 < len(c.Turns); k++ {
			t := c.Turns[k]
			n, err := opt.Tokens.CountTokens(t.Value)
			if err != nil {
				return fmt.Errorf("%s conversation %d turn %d: %w", name, i, k, err)
			}
			if opt.KeepText {
				if text.Len() > 0 {
					text.WriteByte('\n')
				}
				text.WriteString(t.Value)
			}
			history += n
			if !isHuman(t) {
				continue
			}
			out, err := opt.Tokens.CountTokens(c.Turns[k+1].Value)
			if err != nil {
				return fmt.Errorf("%s conversation %d turn %d: %w", name, i, k+1, err)
			}
			r := Request{ID: fmt.Sprintf("sharegpt-%d-%d", i, k), PromptTokens: min(atLeastOne(history), MaxTokens),
				OutputTokens: min(atLeastOne(out), MaxTokens), Session: session}
			if opt.KeepText {
				r.Prompt, r.Output = text.String(), c.Turns[k+1].Value
			}
			tr.Requests = append(tr.Requests, r)
		}
	}
	return nil
}

// importShareGPT reads a ShareGPT conversation file (a JSON array of
// {"conversations": [{"from": "human"|"gpt", "value": text}, ...]}) the way
// vLLM's serving benchmark does: one request per conversation, its first
// human turn as the prompt and the turn after it as the output.
func importShareGPT(data []byte, name string, opt ImportOptions) (*Trace, error) {
	if err := needTokens("sharegpt", opt); err != nil {
		return nil, err
	}
	var convs []shareGPTConv
	if err := json.Unmarshal(data, &convs); err != nil {
		return nil, fmt.Errorf("%s: %w (want a JSON array of {\"conversations\": [{\"from\", \"value\"}, ...]})", name, err)
	}
	tr := &Trace{Name: "sharegpt"}
	if opt.MultiTurn {
		if err := shareGPTTurns(tr, convs, name, opt); err != nil {
			return nil, err
		}
		assignArrivals(tr, opt)
		return tr, nil
	}
	for i, c := range convs {
		h := slices.IndexFunc(c.Turns, isHuman)
		if h < 0 || h+1 >= len(c.Turns) {
			continue // no human turn, or nothing answered it: dropped, as vLLM's benchmark drops these
		}
		in, err := opt.Tokens.CountTokens(c.Turns[h].Value)
		if err != nil {
			return nil, fmt.Errorf("%s conversation %d: %w", name, i, err)
		}
		out, err := opt.Tokens.CountTokens(c.Turns[h+1].Value)
		if err != nil {
			return nil, fmt.Errorf("%s conversation %d: %w", name, i, err)
		}
		r := Request{ID: "sharegpt-" + strconv.Itoa(len(tr.Requests)),
			PromptTokens: atLeastOne(in), OutputTokens: atLeastOne(out)}
		if opt.KeepText {
			r.Prompt, r.Output = c.Turns[h].Value, c.Turns[h+1].Value
		}
		tr.Requests = append(tr.Requests, r)
	}
	assignArrivals(tr, opt)
	return tr, nil
}

// importELISPrompts reads ELIS's prompt list {"prompts": ["...", ...]}. The
// format has no output lengths; they come from opt.OutputTokens.
func importELISPrompts(data []byte, name string, opt ImportOptions) (*Trace, error) {
	if err := needTokens("elis-prompts", opt); err != nil {
		return nil, err
	}
	if opt.OutputTokens < 1 {
		return nil, fmt.Errorf("format elis-prompts has no output lengths: give --output-tokens N (N >= 1)")
	}
	var doc struct {
		Prompts *[]string `json:"prompts"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w (want {\"prompts\": [\"...\", ...]})", name, err)
	}
	if doc.Prompts == nil {
		return nil, fmt.Errorf("%s: missing field \"prompts\"", name)
	}
	tr := &Trace{Name: "elis-prompts"}
	for i, p := range *doc.Prompts {
		n, err := opt.Tokens.CountTokens(p)
		if err != nil {
			return nil, fmt.Errorf("%s prompt %d: %w", name, i, err)
		}
		r := Request{ID: "elis-" + strconv.Itoa(i), PromptTokens: atLeastOne(n), OutputTokens: opt.OutputTokens}
		if opt.KeepText {
			r.Prompt = p
		}
		tr.Requests = append(tr.Requests, r)
	}
	assignArrivals(tr, opt)
	return tr, nil
}

// importELISTrain reads the ELIS predictor training JSONL: rows of
// {input_prompt, output_prompt, number_of_output_tokens, remaining_tokens},
// several per prompt (one per 50-token window). Each distinct prompt becomes
// one request whose output length is number_of_output_tokens.
// ELISRow is one row of the ELIS predictor's training data: a prompt, the
// answer's text so far, the answer's whole length in tokens and how many
// of them remain after that text.
type ELISRow struct {
	Line      int // in its file
	Prompt    string
	Output    string // generated so far; "" at admission
	Total     int    // number_of_output_tokens
	Remaining int    // remaining_tokens
}

// Generated is the tokens generated when the row's prediction is made.
func (r *ELISRow) Generated() int { return r.Total - r.Remaining }

// parseELISRow reads one training row, naming the line of what is wrong.
func parseELISRow(b []byte, name string, line int) (ELISRow, error) {
	var row struct {
		In        *string `json:"input_prompt"`
		Out       *string `json:"output_prompt"`
		N         *int    `json:"number_of_output_tokens"`
		Remaining *int    `json:"remaining_tokens"`
	}
	if err := json.Unmarshal(b, &row); err != nil {
		return ELISRow{}, fmt.Errorf("%s line %d: %w", name, line, err)
	}
	if row.In == nil {
		return ELISRow{}, fmt.Errorf("%s line %d: missing field \"input_prompt\"", name, line)
	}
	n, err := field(name, line, "number_of_output_tokens", row.N)
	if err != nil {
		return ELISRow{}, err
	}
	r := ELISRow{Line: line, Prompt: *row.In, Total: n}
	if row.Out != nil {
		r.Output = *row.Out
	}
	// The target itself: a row without it is a bad row, not one whose
	// remainder is the whole output.
	if row.Remaining == nil {
		return ELISRow{}, fmt.Errorf("%s line %d: missing field \"remaining_tokens\"", name, line)
	}
	if *row.Remaining < 0 || *row.Remaining > n {
		return ELISRow{}, fmt.Errorf("%s line %d: field \"remaining_tokens\": %d, want 0 to number_of_output_tokens (%d)", name, line, *row.Remaining, n)
	}
	r.Remaining = *row.Remaining
	return r, nil
}

// ReadELISRows reads an ELIS training file: JSONL rows of input_prompt,
// output_prompt, number_of_output_tokens and remaining_tokens. The first
// bad row is an error naming its line.
func ReadELISRows(path string) ([]ELISRow, error) {
	rows, bad, err := ReadELISRowsSkipping(path)
	if err == nil && len(bad) > 0 {
		err = bad[0]
	}
	return rows, err
}

// ReadELISRowsSkipping reads an ELIS training file past its bad rows (a
// line that is not JSON, a missing field, a negative count): each is
// returned as an error naming its line, and the good rows beside them.
func ReadELISRowsSkipping(path string) (rows []ELISRow, bad []error, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	err = forEachLine(data, path, func(line int, b []byte) error {
		r, err := parseELISRow(b, path, line)
		if err != nil {
			bad = append(bad, err)
			return nil
		}
		rows = append(rows, r)
		return nil
	})
	if err == nil && len(rows) == 0 && len(bad) == 0 {
		err = fmt.Errorf("%s: no rows", path)
	}
	return rows, bad, err
}

func importELISTrain(data []byte, name string, opt ImportOptions) (*Trace, error) {
	if err := needTokens("elis-train", opt); err != nil {
		return nil, err
	}
	tr := &Trace{Name: "elis-train"}
	seen := map[string]int{} // prompt -> its request
	err := forEachLine(data, name, func(line int, b []byte) error {
		row, err := parseELISRow(b, name, line)
		if err != nil {
			return err
		}
		if i, ok := seen[row.Prompt]; ok {
			// A later cut of the same answer: keep the longest text known.
			if r := &tr.Requests[i]; opt.KeepText && len(row.Output) > len(r.Output) {
				r.Output = row.Output
			}
			return nil
		}
		seen[row.Prompt] = len(tr.Requests)
		in, err := opt.Tokens.CountTokens(row.Prompt)
		if err != nil {
			return fmt.Errorf("%s line %d: %w", name, line, err)
		}
		r := Request{ID: "elis-" + strconv.Itoa(len(tr.Requests)), PromptTokens: atLeastOne(in), OutputTokens: atLeastOne(row.Total)}
		if opt.KeepText {
			r.Prompt, r.Output = row.Prompt, row.Output
		}
		tr.Requests = append(tr.Requests, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	assignArrivals(tr, opt)
	return tr, nil
}
