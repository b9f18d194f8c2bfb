package traces

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/internal/tempfile"
)

func writeFixture(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tinyTokenizerJSON is a BERT-style WordPiece tokenizer.json with a handful
// of words, enough to check that Hugging Face files are read.
const tinyTokenizerJSON = `{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
"normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true},
"pre_tokenizer":{"type":"BertPreTokenizer"},"post_processor":null,"decoder":null,
"model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,
"vocab":{"[UNK]":0,"hello":1,"world":2,"##s":3,"!":4}}}`

func TestImporters(t *testing.T) {
	words := ImportOptions{Tokens: Words{}, KeepText: true}
	cases := []struct {
		format, file, content string
		opt                   ImportOptions
		want                  []Request // ID, Arrival, PromptTokens, OutputTokens, Prompt, Output, HashIDs, HashBlock checked
	}{
		{"azure", "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:15:46.6805900,374,44\r\n2023-11-16 18:15:50.9951690,396,109\r\n", ImportOptions{},
			[]Request{{ID: "azure-0", Arrival: 0, PromptTokens: 374, OutputTokens: 44}, {ID: "azure-1", Arrival: 4.314579, PromptTokens: 396, OutputTokens: 109}}},
		{"azure", "a24.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00.009930+00:00,10,0\n2024-05-10 00:00:01.5+00:00,20,3\n", ImportOptions{},
			[]Request{{ID: "azure-0", Arrival: 0, PromptTokens: 10, OutputTokens: 1}, {ID: "azure-1", Arrival: 1.49007, PromptTokens: 20, OutputTokens: 3}}},
		{"mooncake", "m.jsonl", `{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1]}` + "\n" + `{"timestamp": 1500, "input_length": 7, "output_length": 3, "hash_ids": []}` + "\n", ImportOptions{},
			[]Request{{ID: "mooncake-0", Arrival: 0, PromptTokens: 6758, OutputTokens: 500, HashIDs: []uint64{0, 1}, HashBlock: 512}, {ID: "mooncake-1", Arrival: 1.5, PromptTokens: 7, OutputTokens: 3}}},
		{"apex", "x.jsonl", `{"ContextTokens": 156, "GeneratedTokens": 67, "SynthesizedBody": "hello", "RequestID": "q", "StartTimeOffset": 2500000000}` + "\n", ImportOptions{KeepText: true},
			[]Request{{ID: "apex-0", Arrival: 2.5, PromptTokens: 156, OutputTokens: 67, Prompt: "hello"}}},
		{"apex python body", "x2.jsonl", `{"ContextTokens": 9, "GeneratedTokens": 4, "SynthesizedBody": "{'content': 'it\\'s \\\\ \\u00e9t\\u00e9\\n\\\"ok\\\"', 'role': 'user'}", "StartTimeOffset": 0}` + "\n", ImportOptions{KeepText: true},
			[]Request{{ID: "apex-0", PromptTokens: 9, OutputTokens: 4, Prompt: "it's \\ été\n\"ok\""}}},
		{"vidur", "v.csv", "arrived_at,num_prefill_tokens,num_decode_tokens,extra\n0.5,100,20,x\n1.25,30,4,y\n", ImportOptions{},
			[]Request{{ID: "vidur-0", Arrival: 0.5, PromptTokens: 100, OutputTokens: 20}, {ID: "vidur-1", Arrival: 1.25, PromptTokens: 30, OutputTokens: 4}}},
		{"sharegpt", "s.json", `[{"id":"c1","conversations":[{"from":"human","value":"one two three"},{"from":"gpt","value":"a b"}]},{"id":"c2","conversations":[{"from":"human","value":"alone"}]},` +
			`{"id":"c3","conversations":[{"from":"gpt","value":"how can I help"},{"from":"human","value":"say hi"},{"from":"gpt","value":"hi"}]}]`, words,
			[]Request{{ID: "sharegpt-0", PromptTokens: 3, OutputTokens: 2, Prompt: "one two three", Output: "a b"}, {ID: "sharegpt-1", PromptTokens: 2, OutputTokens: 1, Prompt: "say hi", Output: "hi"}}},
		{"elis-prompts", "p.json", `{"prompts": ["write a poem", "hi"]}`, ImportOptions{Tokens: Words{}, OutputTokens: 100},
			[]Request{{ID: "elis-0", PromptTokens: 3, OutputTokens: 100}, {ID: "elis-1", PromptTokens: 1, OutputTokens: 100}}},
		{"elis-train", "t.jsonl", `{"input_prompt": "why is the sky blue", "output_prompt": "", "number_of_output_tokens": 120, "remaining_tokens": 120}` + "\n" +
			`{"input_prompt": "why is the sky blue", "output_prompt": "because ...", "number_of_output_tokens": 120, "remaining_tokens": 70}` + "\n" +
			`{"input_prompt": "hello", "output_prompt": "", "number_of_output_tokens": 9, "remaining_tokens": 9}` + "\n", words,
			[]Request{{ID: "elis-0", PromptTokens: 5, OutputTokens: 120, Prompt: "why is the sky blue", Output: "because ..."}, {ID: "elis-1", PromptTokens: 1, OutputTokens: 9, Prompt: "hello"}}},
	}
	for _, c := range cases {
		tr, err := Import(strings.Fields(c.format)[0], writeFixture(t, c.file, c.content), c.opt)
		if err != nil {
			t.Errorf("%s: %v", c.format, err)
			continue
		}
		if len(tr.Requests) != len(c.want) {
			t.Errorf("%s: %d requests, want %d", c.format, len(tr.Requests), len(c.want))
			continue
		}
		for i, w := range c.want {
			g := tr.Requests[i]
			if g.ID != w.ID || fmt.Sprintf("%.6f", g.Arrival) != fmt.Sprintf("%.6f", w.Arrival) || g.PromptTokens != w.PromptTokens || g.OutputTokens != w.OutputTokens || g.Prompt != w.Prompt || g.Output != w.Output ||
				!slices.Equal(g.HashIDs, w.HashIDs) || g.HashBlock != w.HashBlock {
				t.Errorf("%s request %d: got %+v, want %+v", c.format, i, g, w)
			}
			if err := g.Validate(); err != nil {
				t.Errorf("%s request %d invalid: %v", c.format, i, err)
			}
		}
	}
}

// --multi-turn: a request per answered human turn, each prompt the
// conversation so far, one session per conversation.
func TestShareGPTMultiTurn(t *testing.T) {
	p := writeFixture(t, "mt.json", `[{"conversations":[{"from":"human","value":"a b"},{"from":"gpt","value":"c d e"},{"from":"human","value":"f"},{"from":"gpt","value":"g h"},{"from":"human","value":"unanswered"}]},`+
		`{"conversations":[{"from":"system","value":"s"},{"from":"human","value":"x"},{"from":"gpt","value":"y"}]}]`)
	tr, err := Import("sharegpt", p, ImportOptions{Tokens: Words{}, MultiTurn: true, KeepText: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		prompt, output int
		session, text  string
	}{{2, 3, "sharegpt-0", "a b"}, {6, 2, "sharegpt-0", "a b\nc d e\nf"}, {2, 1, "sharegpt-1", "s\nx"}}
	if len(tr.Requests) != len(want) {
		t.Fatalf("%d requests: %+v", len(tr.Requests), tr.Requests)
	}
	for i, w := range want {
		r := tr.Requests[i]
		if r.PromptTokens != w.prompt || r.OutputTokens != w.output || r.Session != w.session || r.Prompt != w.text {
			t.Errorf("request %d: %+v, want %+v", i, r, w)
		}
	}
}

// --hash-block reads Mooncake's ids as naming fewer tokens each: they
// then name only the prompt's start.
func TestMooncakeHashBlock(t *testing.T) {
	p := writeFixture(t, "m.jsonl", `{"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [4, 5, 6]}`+"\n")
	tr, err := Import("mooncake", p, ImportOptions{HashBlock: 16})
	if err != nil {
		t.Fatal(err)
	}
	if r := tr.Requests[0]; r.HashBlock != 16 || !slices.Equal(r.HashIDs, []uint64{4, 5, 6}) {
		t.Fatalf("%+v", r)
	}
	tr, _ = Import("mooncake", p, ImportOptions{HashBlock: 1000})
	if r := tr.Requests[0]; r.HashBlock != 1000 || !slices.Equal(r.HashIDs, []uint64{4, 5}) {
		t.Fatalf("ids of 1000 tokens for 1100 tokens: %+v", r)
	}
}

func TestImportErrorsNameFileLineField(t *testing.T) {
	cases := []struct{ format, content, want string }{
		{"azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.99,abc,109\n", "line 3: column ContextTokens"},
		{"azure", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n", "line 2: column TIMESTAMP"},
		{"azure", "time,in,out\n", `header lacks column "TIMESTAMP"`},
		{"mooncake", `{"timestamp": 0, "input_length": 5, "output_length": 1}` + "\n" + `{"timestamp": 3, "output_length": 1}`, `line 2: missing field "input_length"`},
		{"mooncake", `{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [1, 2, 3]}`, `line 1: field "hash_ids": 3 ids of 512 tokens for 600 input tokens, want at most 2`},
		{"mooncake", `{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [1, -2]}`, `line 1: field "hash_ids": id -2`},
		{"apex", `{"ContextTokens": -4, "GeneratedTokens": 1, "StartTimeOffset": 0}`, `line 1: field "ContextTokens"`},
		{"vidur", "arrived_at,num_prefill_tokens,num_decode_tokens\n-1,3,4\n", "line 2: column arrived_at"},
		{"elis-train", `{"output_prompt": ""}`, `line 1: missing field "input_prompt"`},
	}
	for _, c := range cases {
		p := writeFixture(t, "bad.txt", c.content)
		_, err := Import(c.format, p, ImportOptions{Tokens: Words{}})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: got %v, want it to name %s and contain %q", c.format, err, p, c.want)
		}
	}
	if _, err := Import("csv", "x", ImportOptions{}); err == nil || !strings.Contains(err.Error(), "valid: apex, azure") {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := Import("sharegpt", writeFixture(t, "s.json", "[]"), ImportOptions{}); err == nil || !strings.Contains(err.Error(), "--tokenizer") {
		t.Errorf("sharegpt without tokenizer: %v", err)
	}
}

func TestImportRateGivesArrivals(t *testing.T) {
	p := writeFixture(t, "p.json", `{"prompts": ["a", "b", "c", "d"]}`)
	tr, err := Import("elis-prompts", p, ImportOptions{Tokens: Words{}, OutputTokens: 5, Rate: 2, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Requests[0].Arrival != 0 || tr.Requests[3].Arrival <= tr.Requests[1].Arrival {
		t.Fatalf("arrivals not increasing: %+v", tr.Requests)
	}
}

func TestHFTokenizer(t *testing.T) {
	tc, err := LoadTokenCounter(writeFixture(t, "tokenizer.json", tinyTokenizerJSON))
	if err != nil {
		t.Fatal(err)
	}
	n, err := tc.CountTokens("Hello worlds!")
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 { // hello, world, ##s, !
		t.Fatalf("counted %d tokens, want 4", n)
	}
	if _, err := LoadTokenCounter(writeFixture(t, "bad.json", "{")); err == nil {
		t.Fatal("accepted a broken tokenizer.json")
	}
}

func fuzzImporter(f *testing.F, imp Importer, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	opt := ImportOptions{Tokens: Words{}, OutputTokens: 3, KeepText: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := imp(data, "fuzz", opt)
		if err != nil {
			return
		}
		for i := range tr.Requests {
			if err := tr.Requests[i].Validate(); err != nil {
				t.Fatalf("importer produced an invalid request %d: %v", i, err)
			}
		}
	})
}

func FuzzAzure(f *testing.F) {
	fuzzImporter(f, importAzure, "TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:15:46.6805900,374,44\r\n")
}
func FuzzVidur(f *testing.F) {
	fuzzImporter(f, importVidur, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,100,20\n")
}
func FuzzMooncake(f *testing.F) {
	fuzzImporter(f, importMooncake, `{"timestamp": 10, "input_length": 6758, "output_length": 500}`)
}
func FuzzAPEX(f *testing.F) {
	fuzzImporter(f, importAPEX, `{"ContextTokens": 1, "GeneratedTokens": 6, "SynthesizedBody": "x", "StartTimeOffset": 5}`)
}
func FuzzShareGPT(f *testing.F) {
	fuzzImporter(f, importShareGPT, `[{"conversations":[{"from":"human","value":"a b"},{"from":"gpt","value":"c"}]}]`)
}
func FuzzELISPrompts(f *testing.F) {
	fuzzImporter(f, importELISPrompts, `{"prompts": ["a b", ""]}`)
}
func FuzzELISTrain(f *testing.F) {
	fuzzImporter(f, importELISTrain, `{"input_prompt": "a", "output_prompt": "", "number_of_output_tokens": 3, "remaining_tokens": 3}`)
}

// BenchmarkImportAzureConv imports a synthetic file the size of the Azure
// 2023 conversation trace (19,366 rows, CRLF), so the benchmark runs from a
// fresh clone.
func BenchmarkImportAzureConv(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("TIMESTAMP,ContextTokens,GeneratedTokens\r\n")
	for i := 0; i < 19366; i++ {
		fmt.Fprintf(&sb, "2023-11-16 18:%02d:%02d.%07d,%d,%d\r\n", 15+i/3600%40, i/60%60, i*7919%10000000, 100+i%4000, 1+i%1000)
	}
	p := writeFixture(b, "conv.csv", sb.String())
	b.SetBytes(int64(sb.Len()))
	b.ResetTimer()
	for b.Loop() {
		tr, err := Import("azure", p, ImportOptions{})
		if err != nil || len(tr.Requests) != 19366 {
			b.Fatal(err)
		}
	}
}

// The bge tokenizer through sugarme/tokenizer gives Hugging Face's ids on
// the golden texts, accented ones included (../shared, when present).
func TestBGETokenizerMatchesReference(t *testing.T) {
	const tok = "../../shared/data/tokenizers/bge-tokenizer.json"
	const ref = "../../shared/golden/bge-tokenizer-golden.json"
	data, err := os.ReadFile(ref)
	if err != nil {
		t.Skip("no ../shared beside the checkout")
	}
	var g struct {
		Texts []string `json:"texts"`
		IDs   [][]int  `json:"ids"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	tc, err := LoadTokenCounter(tok)
	if err != nil {
		t.Fatal(err)
	}
	h := tc.(HFTokenizer)
	for i, text := range g.Texts {
		ids, err := h.Encode(text, true)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids) != fmt.Sprint(g.IDs[i]) {
			t.Errorf("text %q: ids %v, reference %v", text, ids, g.IDs[i])
		}
	}
}

func TestStripAccents(t *testing.T) {
	if got := stripAccents("Résumé naïve café — déjà vu!"); got != "Resume naive cafe — deja vu!" {
		t.Fatalf("got %q", got)
	}
}

// FuzzTokenizer feeds arbitrary tokenizer.json files and texts to the
// loader and the counter: anything sugarme/tokenizer cannot build is an
// error naming the file, never a panic.
func FuzzTokenizer(f *testing.F) {
	f.Add([]byte(tinyTokenizerJSON), "Hello worlds!")
	f.Add([]byte(`{"model":{}}`), "x") // panicked in the library before the guard
	f.Add([]byte(`{"texts": ["a"]}`), "a")
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		path := tempfile.Write(t, "tokenizer.json", data)
		tc, err := LoadTokenCounter(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if n, err := tc.CountTokens(text); err == nil && n < 0 {
			t.Fatalf("%d tokens", n)
		}
	})
}
