package traces

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// drain reads the whole stream of the trace at path: its requests (copied:
// a stream reuses its chunks), its error, and the stream.
func drain(t testing.TB, path string) ([]Request, *Stream, error) {
	t.Helper()
	st, err := OpenStream(path)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	var got []Request
	for {
		r, ok := st.Peek()
		if !ok {
			break
		}
		if i := st.Taken(); i != len(got) {
			t.Fatalf("Taken %d before request %d", i, len(got))
		}
		got = append(got, *r)
		st.Pop()
	}
	return got, st, st.Err()
}

func writeTrace(t testing.TB, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.jsonl")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A stream gives what ReadFile gives, in order, and describes it alike:
// traces of a few requests and of many chunks, with blank lines, every
// field, and lines longer than the reader's buffer.
func TestStreamReadsAsReadFile(t *testing.T) {
	big, err := Generate(GenConfig{N: 3*streamChunk + 17, Seed: 5, Arrivals: Poisson{Rate: 10}, RateMultiplier: 1,
		Prompt: Uniform{1, 500}, Output: Uniform{1, 500}})
	if err != nil {
		t.Fatal(err)
	}
	big.Requests[7].Prompt = strings.Repeat("long prompt ", 200_000) // 2.4 MB on one line
	for _, tr := range []*Trace{sample(), big} {
		var buf bytes.Buffer
		if err := Encode(&buf, tr, true); err != nil {
			t.Fatal(err)
		}
		data := bytes.ReplaceAll(buf.Bytes(), []byte("\n{\"id\":\"b\""), []byte("\n\n  \n{\"id\":\"b\"")) // blank lines
		path := writeTrace(t, data)
		want, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, st, err := drain(t, path)
		if err != nil {
			t.Fatalf("%d requests: %v", len(tr.Requests), err)
		}
		if !reflect.DeepEqual(got, want.Requests) {
			t.Fatalf("%d requests: the stream's differ from ReadFile's", len(tr.Requests))
		}
		if st.Name != want.Name || st.Len() != len(want.Requests) || st.Duration() != want.Duration() || st.Rate() != want.Rate() {
			t.Fatalf("stream %q: %d over %v s (%v/s); ReadFile %q: %d over %v s (%v/s)", st.Name, st.Len(), st.Duration(), st.Rate(),
				want.Name, len(want.Requests), want.Duration(), want.Rate())
		}
	}
}

// A stream fails where ReadFile fails, with ReadFile's message, or says
// the trace must be read whole where only the whole can tell: arrivals
// that go back (ReadFile sorts them) and an id that repeats (ReadFile
// names it).
func TestStreamFailsAsReadFile(t *testing.T) {
	line := func(id string, arrival string) string {
		return `{"id":"` + id + `","arrival_s":` + arrival + `,"prompt_tokens":3,"output_tokens":1}` + "\n"
	}
	cases := []struct {
		name, in string
		whole    bool // the stream ends with ErrReadWhole
	}{
		{"bad line", "{\"elis_trace\":1}\n" + line("a", "0") + "\n" + `{"id":"b","arrival":0}` + "\n", false},
		{"bad value deep", "{\"elis_trace\":1}\n" + strings.Repeat("\n", 5000) + line("a", "0") + line("b", "-1"), false},
		{"wrong version", "{\"elis_trace\":7}\n" + line("a", "0"), false},
		{"header field", "\n\n{\"elis_trace\":1,\"nmae\":\"x\"}\n" + line("a", "0"), false},
		{"empty", "", false},
		{"blank", "\n \n", false},
		{"no requests", "{\"elis_trace\":1}\n\n", false},
		{"repeated id", "{\"elis_trace\":1}\n" + line("a", "0") + line("b", "1") + line("a", "2"), true},
		{"back in time", "{\"elis_trace\":1}\n" + line("a", "5") + line("b", "1"), true},
	}
	for _, c := range cases {
		path := writeTrace(t, []byte(c.in))
		_, werr := ReadFile(path)
		_, _, err := drain(t, path)
		switch {
		case c.whole && !errors.Is(err, ErrReadWhole):
			t.Errorf("%s: stream error %v, want ErrReadWhole", c.name, err)
		case !c.whole && (err == nil || werr == nil || err.Error() != werr.Error()):
			t.Errorf("%s: stream error %v, ReadFile's %v", c.name, err, werr)
		}
	}
}

// Closing a stream before its end stops its reader; Close may come twice.
func TestStreamCloseStopsTheReader(t *testing.T) {
	tr, err := Generate(GenConfig{N: 20 * streamChunk, Seed: 1, Arrivals: Poisson{Rate: 10}, RateMultiplier: 1,
		Prompt: Uniform{1, 50}, Output: Uniform{1, 50}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Encode(&buf, tr, true); err != nil {
		t.Fatal(err)
	}
	st, err := OpenStream(writeTrace(t, buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Peek(); !ok {
		t.Fatal("no first request")
	}
	st.Pop()
	st.Close() // returns once the reader has: it would block sending otherwise
	st.Close()
	if _, ok := st.Peek(); ok {
		t.Fatal("a closed stream gave a request")
	}
}

// Whatever ReadFile reads, a stream reads the same or says to read it
// whole; whatever it rejects, a stream rejects with its words.
func FuzzStream(f *testing.F) {
	var buf bytes.Buffer
	Encode(&buf, sample(), true)
	f.Add(buf.Bytes())
	f.Add([]byte("{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival_s\":1,\"prompt_tokens\":3,\"output_tokens\":1}\n{\"id\":\"b\",\"arrival_s\":0,\"prompt_tokens\":3,\"output_tokens\":1}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := writeTrace(t, data)
		want, werr := ReadFile(path)
		got, _, err := drain(t, path)
		switch {
		case errors.Is(err, ErrReadWhole):
		case werr != nil:
			if err == nil || err.Error() != werr.Error() {
				t.Fatalf("stream error %v, ReadFile's %v", err, werr)
			}
		case err != nil:
			t.Fatalf("stream error %v, ReadFile read %d requests", err, len(want.Requests))
		case !reflect.DeepEqual(got, want.Requests):
			t.Fatalf("the stream's %d requests differ from ReadFile's %d", len(got), len(want.Requests))
		}
	})
}
