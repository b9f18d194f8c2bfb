package traces

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	segjson "github.com/segmentio/encoding/json"
)

func sample() *Trace {
	return &Trace{Name: "t", Requests: []Request{
		{ID: "a", Arrival: 0, PromptTokens: 10, OutputTokens: 5, Prompt: "hi \"there\"", Output: "hello you", Priority: 2,
			Predictions: []Prediction{{0, 6}, {50, 1.5}}},
		{ID: "b", Arrival: 0.25, PromptTokens: 1, OutputTokens: 1},
		{ID: "c", Arrival: 0.5, PromptTokens: 1000, OutputTokens: 3, HashIDs: []uint64{7, 1 << 60}, HashBlock: 512},
		{ID: "d", Arrival: 0.5, PromptTokens: 40, OutputTokens: 3, Session: "chat-1"},
	}}
}

func TestRoundTripJSONAndJSONL(t *testing.T) {
	for _, jsonl := range []bool{false, true} {
		var buf bytes.Buffer
		if err := Encode(&buf, sample(), jsonl); err != nil {
			t.Fatal(err)
		}
		got, err := Parse(buf.Bytes(), "x", jsonl)
		if err != nil {
			t.Fatalf("jsonl=%v: %v\n%s", jsonl, err, buf.String())
		}
		var again bytes.Buffer
		Encode(&again, got, jsonl)
		if !bytes.Equal(buf.Bytes(), again.Bytes()) {
			t.Fatalf("jsonl=%v: round trip changed bytes:\n%s\n%s", jsonl, buf.String(), again.String())
		}
		if got.Requests[0].Predictions[1].Remaining != 1.5 || got.Name != "t" || got.Requests[2].HashIDs[1] != 1<<60 || got.Requests[3].Session != "chat-1" {
			t.Fatalf("lost data: %+v", got)
		}
	}
}

func TestParseErrorsNameLineAndField(t *testing.T) {
	cases := []struct {
		name, in string
		jsonl    bool
		want     string
	}{
		{"bad output", "{\"elis_trace\": 1, \"requests\": [\n{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1},\n{\"id\":\"b\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":0}\n]}", false, `line 3: request 1: field "output_tokens": 0, want 1 to 10000000`},
		{"unknown field", "{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival\":0,\"prompt_tokens\":3,\"output_tokens\":1}\n", true, `line 2: json: unknown field "arrival"`},
		{"no version", "{\"requests\": []}", false, `missing "elis_trace"`},
		{"wrong version", "{\"elis_trace\":7}\n", true, `version 7`},
		{"negative arrival", "{\"elis_trace\":1}\n\n{\"id\":\"a\",\"arrival_s\":-1,\"prompt_tokens\":3,\"output_tokens\":1}\n", true, `line 3: field "arrival_s"`},
		{"hash block", "{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1,\"hash_ids\":[1]}\n", true, `line 2: field "hash_block": 0, want the tokens each of "hash_ids" names`},
		{"hash ids", "{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1,\"hash_ids\":[1,2,3],\"hash_block\":2}\n", true, `line 2: field "hash_ids": 3 ids of 2 tokens name more than the 3 prompt tokens`},
		{"far arrival", "{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival_s\":1e308,\"prompt_tokens\":3,\"output_tokens\":1}\n", true, `line 2: field "arrival_s": 1e+308, want a time from 0`},
		{"huge output", "{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1000000000}\n", true, `line 2: field "output_tokens": 1000000000, want 1 to`},
		{"second object", "{\"elis_trace\": 1, \"requests\": [{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1}]}\n{\"x\": 1}", false, `line 2: unexpected { after the trace object`},
		{"two on a line", "{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1} {\"id\":\"b\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1}\n", true, `line 2: more than one JSON value`},
		{"unknown header field", "{\"elis_trace\":1,\"nmae\":\"x\"}\n{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1}\n", true, `line 1: header (valid fields: elis_trace, name): json: unknown field "nmae"`},
		{"duplicate key", "{\"elis_trace\": 1, \"requests\": [{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1}], \"requests\": []}", false, `field "requests" appears twice`},
		{"empty", "{\"elis_trace\": 1, \"requests\": []}", false, `no requests`},
		{"empty jsonl", "{\"elis_trace\":1}\n", true, `no requests`},
		{"duplicate id", "{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1}\n{\"id\":\"a\",\"arrival_s\":1,\"prompt_tokens\":3,\"output_tokens\":1}\n", true, `id "a" repeats`},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.in), "f.json", c.jsonl)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "f.json") {
			t.Errorf("%s: got %v, want it to contain %q and the file name", c.name, err, c.want)
		}
	}
}

func TestParseSortsByArrival(t *testing.T) {
	in := "{\"elis_trace\":1}\n{\"id\":\"late\",\"arrival_s\":5,\"prompt_tokens\":3,\"output_tokens\":1}\n{\"id\":\"early\",\"arrival_s\":1,\"prompt_tokens\":3,\"output_tokens\":1}\n"
	tr, err := Parse([]byte(in), "x", true)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Requests[0].ID != "early" {
		t.Fatalf("not sorted: %+v", tr.Requests)
	}
}

func TestWriteFileIsAtomicAndReadable(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.json", "a.jsonl"} {
		p := filepath.Join(dir, name)
		if err := WriteFile(p, sample()); err != nil {
			t.Fatal(err)
		}
		tr, err := ReadFile(p)
		if err != nil || len(tr.Requests) != len(sample().Requests) {
			t.Fatalf("%s: %v %+v", name, err, tr)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("temp files left: %v", entries)
	}
}

func TestWindow(t *testing.T) {
	tr := &Trace{}
	for i := 0; i < 10; i++ {
		tr.Requests = append(tr.Requests, Request{ID: string(rune('a' + i)), Arrival: 100 + float64(i), PromptTokens: 1, OutputTokens: 1})
	}
	tr.Window(2, 8, 0.5, 3)
	if len(tr.Requests) != 3 || tr.Requests[0].ID != "c" || tr.Requests[0].Arrival != 0 || tr.Requests[2].Arrival != 1 {
		t.Fatalf("window: %+v", tr.Requests)
	}
}

func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	Encode(&buf, sample(), false)
	f.Add(buf.Bytes(), false)
	buf.Reset()
	Encode(&buf, sample(), true)
	f.Add(buf.Bytes(), true)
	f.Fuzz(func(t *testing.T, data []byte, jsonl bool) {
		tr, err := Parse(data, "fuzz", jsonl)
		if err != nil {
			return
		}
		// Whatever parses must validate and survive a round trip.
		var out bytes.Buffer
		if err := Encode(&out, tr, jsonl); err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out.Bytes(), "again", jsonl)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out.String())
		}
		if len(back.Requests) != len(tr.Requests) {
			t.Fatal("lost requests")
		}
	})
}

// A trace big enough to be read in pieces side by side reads as it was
// written, and an error deep in it names its own line, the first one
// when several lines are bad.
func TestParseLargeJSONLInPieces(t *testing.T) {
	tr, err := Generate(GenConfig{N: 30000, Seed: 3, Arrivals: Poisson{Rate: 10}, RateMultiplier: 1, Prompt: Uniform{1, 500}, Output: Uniform{1, 500}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Encode(&buf, tr, true); err != nil {
		t.Fatal(err)
	}
	if buf.Len() < 2<<20 {
		t.Fatalf("only %d bytes: not read in pieces", buf.Len())
	}
	got, err := Parse(buf.Bytes(), "big.jsonl", true)
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	Encode(&again, got, true)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("read back differently")
	}
	// Blank lines anywhere (so pieces decode fewer requests than lines)
	// change nothing.
	blank := strings.ReplaceAll(buf.String(), "\n{\"id\":\"r1000\"", "\n\n{\"id\":\"r1000\"")
	blank = strings.ReplaceAll(blank, "\n{\"id\":\"r29999\"", "\n\n\n{\"id\":\"r29999\"")
	got, err = Parse([]byte(blank+"\n\n"), "blank.jsonl", true)
	if err != nil {
		t.Fatal(err)
	}
	again.Reset()
	Encode(&again, got, true)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("blank lines changed what was read")
	}
	lines := strings.Split(buf.String(), "\n")
	bad := func(n int) { lines[n-1] = `{"id":"x","arrival_s":0,"prompt_tokens":0,"output_tokens":1}` }
	bad(25001) // in a late piece
	bad(20001) // earlier, also late
	_, err = Parse([]byte(strings.Join(lines, "\n")), "big.jsonl", true)
	if err == nil || !strings.Contains(err.Error(), "line 20001: field \"prompt_tokens\"") {
		t.Fatalf("got %v, want the error of line 20001", err)
	}
}

// FuzzWords: the word counter counts what strings.Fields splits, without
// building the words.
func FuzzWords(f *testing.F) {
	for _, s := range []string{"", " a  b\tc\n", "\u00a0x\u2003y ", "\xff\xfe a", "one"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, _ := Words{}.CountTokens(s)
		if want := len(strings.Fields(s)); n != want {
			t.Fatalf("%q: %d words, strings.Fields says %d", s, n, want)
		}
	})
}

// FuzzRequestLine: a trace line's fast decoder and encoding/json accept
// the same lines and read them alike (unmarshalRequest trusts the fast
// one with every line it accepts).
func FuzzRequestLine(f *testing.F) {
	for _, s := range []string{
		`{"id":"r0","arrival_s":0.5,"prompt_tokens":12,"output_tokens":3}`,
		`{"id":"a","arrival_s":1e2,"prompt_tokens":1,"output_tokens":1,"prompt":"h\u00e9\"llo","output":"x","priority":-2,"predictions":[{"generated":0,"remaining":4.5}],"hash_ids":[1,2],"hash_block":16,"session":"s"}`,
		`{"ID":"r","Arrival_S":1,"PROMPT_TOKENS":2,"output_tokens":3,"id":"again"}`,
		`{"id":"r","arrival_s":1,"prompt_tokens":2.0,"output_tokens":3}`,
		`{"id":"r","arrival_s":1,"prompt_tokens":2,"output_tokens":3,"x":1}`,
		`{"id":"r","arrival_s":1,"prompt_tokens":2,"output_tokens":3} {}`,
		`{"id":"\xff","arrival_s":1,"prompt_tokens":2,"output_tokens":3}`,
		`{"id":null,"arrival_s":1,"prompt_tokens":99999999999999999999,"output_tokens":3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var std Request
		stdErr := decodeOne(line, &std)
		var fast Request
		rest, fastErr := segjson.Parse(line, &fast, segjson.DisallowUnknownFields)
		fastOK := fastErr == nil && len(bytes.TrimSpace(rest)) == 0
		if stdErr == nil && !fastOK {
			return // read again by encoding/json: the same result
		}
		if stdErr != nil && fastOK {
			t.Fatalf("the fast decoder accepts what encoding/json refuses (%v): %q", stdErr, line)
		}
		if stdErr == nil && !reflect.DeepEqual(std, fast) {
			t.Fatalf("decoded differently:\nencoding/json %+v\nfast          %+v\nline %q", std, fast, line)
		}
	})
}

// repeatedID reports the first repeated id as a map of the strings does:
// the first request whose id an earlier one has, and that earlier one,
// below smallTrace and above it.
func TestRepeatedIDAsAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 400 {
		n := rng.IntN(300)
		if round%4 == 0 {
			n = smallTrace + rng.IntN(smallTrace) // sorted by hash
		}
		reqs := make([]Request, n)
		for i := range reqs {
			reqs[i].ID = fmt.Sprintf("r%d", rng.IntN(1+n*(1+round%4)))
			if round%8 == 0 || round%8 == 4 {
				reqs[i].ID = fmt.Sprintf("r%d", i) // unique
			}
		}
		if round%8 == 4 { // one repeat
			j := rng.IntN(n - 1)
			reqs[j+1+rng.IntN(n-j-1)].ID = reqs[j].ID
		}
		wi, wj, want := 0, 0, false
		seen := map[string]int{}
		for i := range reqs {
			if j, ok := seen[reqs[i].ID]; ok {
				wi, wj, want = i, j, true
				break
			}
			seen[reqs[i].ID] = i
		}
		if i, j, dup := repeatedID(len(reqs), func(i int) string { return reqs[i].ID }); dup != want || dup && (i != wi || j != wj) {
			t.Fatalf("round %d: (%d, %d, %v), the map (%d, %d, %v)", round, i, j, dup, wi, wj, want)
		}
	}
}

func TestParseNamesARepeatedID(t *testing.T) {
	data := "{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":1,\"output_tokens\":1}\n" +
		"{\"id\":\"b\",\"arrival_s\":1,\"prompt_tokens\":1,\"output_tokens\":1}\n{\"id\":\"a\",\"arrival_s\":2,\"prompt_tokens\":1,\"output_tokens\":1}\n"
	_, err := Parse([]byte(data), "t.jsonl", true)
	if want := `trace t.jsonl: request 2: id "a" repeats request 0`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// A million-request trace's ids, checked for repeats.
func BenchmarkRepeatedID(b *testing.B) {
	reqs := make([]Request, 1_000_000)
	for i := range reqs {
		reqs[i].ID = "r" + strconv.Itoa(i)
	}
	for b.Loop() {
		if _, _, dup := repeatedID(len(reqs), func(i int) string { return reqs[i].ID }); dup {
			b.Fatal("a repeat among unique ids")
		}
	}
}
