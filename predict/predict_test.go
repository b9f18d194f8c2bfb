package predict

import (
	"math"
	"os"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/traces"
)

func rows(prompts, per int) []traces.ELISRow {
	var out []traces.ELISRow
	for p := 0; p < prompts; p++ {
		for g := 0; g < per; g++ {
			out = append(out, traces.ELISRow{Line: len(out) + 1, Prompt: string(rune('a'+p%26)) + string(rune('a'+p/26)), Total: 50 * per, Remaining: 50 * (per - g)})
		}
	}
	return out
}

// The 6:2:2 split keeps every row once; by prompt it never puts one
// prompt on two sides; the same seed gives the same split.
func TestSplit(t *testing.T) {
	rs := rows(50, 4)
	for _, byPrompt := range []bool{false, true} {
		tr, va, te := Split(rs, byPrompt, 42)
		if len(tr)+len(va)+len(te) != len(rs) || len(tr) < len(rs)/2 || len(te) == 0 {
			t.Fatalf("byPrompt=%v: %d/%d/%d of %d", byPrompt, len(tr), len(va), len(te), len(rs))
		}
		tr2, _, te2 := Split(rs, byPrompt, 42)
		if tr2[0] != tr[0] || te2[len(te2)-1] != te[len(te)-1] {
			t.Fatalf("byPrompt=%v: the same seed gave another split", byPrompt)
		}
		if byPrompt {
			side := map[string]int{}
			for k, part := range [][]traces.ELISRow{tr, va, te} {
				for _, r := range part {
					if s, ok := side[r.Prompt]; ok && s != k {
						t.Fatalf("prompt %q on sides %d and %d", r.Prompt, s, k)
					}
					side[r.Prompt] = k
				}
			}
		}
	}
}

// Evaluate's numbers are the hand computation's.
func TestEvaluateByHand(t *testing.T) {
	rs := []traces.ELISRow{{Total: 100, Remaining: 100}, {Total: 100, Remaining: 50}, {Total: 60, Remaining: 60}, {Total: 60, Remaining: 10}}
	preds := []float64{90, 70, 60, 20}
	r := Evaluate(rs, preds, 55, 8)
	if mae := (10 + 20 + 0 + 10) / 4.0; math.Abs(r.Network.MAE-mae) > 1e-12 {
		t.Fatalf("MAE %v, by hand %v", r.Network.MAE, mae)
	}
	if rmse := math.Sqrt((100 + 400 + 0 + 100) / 4.0); math.Abs(r.Network.RMSE-rmse) > 1e-12 {
		t.Fatalf("RMSE %v, by hand %v", r.Network.RMSE, rmse)
	}
	if mae := (45 + 5 + 5 + 45) / 4.0; math.Abs(r.Baseline.MAE-mae) > 1e-12 || !math.IsNaN(float64(r.Baseline.Tau)) {
		t.Fatalf("baseline %+v: MAE by hand %v, tau undefined", r.Baseline, mae)
	}
	// six pairs, one discordant (rows 1 and 2: truth 50 < 60, predicted 70 > 60)
	if math.Abs(float64(r.Network.Tau)-4.0/6) > 1e-12 {
		t.Fatalf("tau %v, by hand 4/6", r.Network.Tau)
	}
	if len(r.ByProgress) != 2 || r.ByProgress[0].Generated != 0 || r.ByProgress[1].Generated != 50 {
		t.Fatalf("groups %+v", r.ByProgress)
	}
	if got := MeanRemaining(rs); got != 55 {
		t.Fatalf("mean remaining %v", got)
	}
}

type words struct{}

// Encode gives [CLS]=1, one id a rune, [SEP]=2.
func (words) Encode(text string, special bool) ([]int, error) {
	out := []int{1}
	for range text {
		out = append(out, 5)
	}
	return append(out, 2), nil
}

// The input is the prompt and the text so far, cut to the network's
// positions with [SEP] kept last.
func TestInputKeepsSEP(t *testing.T) {
	r := traces.ELISRow{Prompt: "abcdef", Output: "ghij"}
	in, err := Input(words{}, &r, 8)
	if err != nil || len(in) != 8 || in[0] != 1 || in[7] != 2 {
		t.Fatalf("%v %v", in, err)
	}
	r.Output = ""
	if in, _ := Input(words{}, &r, 64); len(in) != 8 {
		t.Fatalf("prompt alone: %v", in)
	}
}

// fakeNet predicts ten tokens an input token.
type fakeNet struct{}

func (fakeNet) Predict(ids [][]int32, _ [][]int32) ([]float32, error) {
	out := make([]float32, len(ids))
	for i, s := range ids {
		out[i] = float32(10 * len(s))
	}
	return out, nil
}
func (fakeNet) Config() gpu.BertConfig { return gpu.BertConfig{MaxPositions: 512} }
func (fakeNet) Close() error           { return nil }

// RecordTrace gives every request a prediction at 0, K, 2K, ... generated
// tokens: the network's estimate of the whole answer less what was
// generated, never below 0; a request without its prompt text is refused.
func TestRecordTrace(t *testing.T) {
	tr := &traces.Trace{Requests: []traces.Request{
		{ID: "a", PromptTokens: 3, OutputTokens: 120, Prompt: "abc"},     // 5 input ids: predicts 50
		{ID: "b", PromptTokens: 1, OutputTokens: 40, Prompt: "abcdefgh"}, // 10 ids: 100
	}}
	if err := RecordTrace(fakeNet{}, words{}, tr, 50, 1); err != nil {
		t.Fatal(err)
	}
	a, b := tr.Requests[0].Predictions, tr.Requests[1].Predictions
	want := []traces.Prediction{{Generated: 0, Remaining: 50}, {Generated: 50, Remaining: 0}, {Generated: 100, Remaining: 0}}
	if len(a) != 3 || a[0] != want[0] || a[1] != want[1] || a[2] != want[2] {
		t.Fatalf("a: %+v", a)
	}
	if len(b) != 1 || b[0] != (traces.Prediction{Generated: 0, Remaining: 100}) {
		t.Fatalf("b: %+v", b)
	}
	tr.Requests[1].Prompt = ""
	if err := RecordTrace(fakeNet{}, words{}, tr, 50, 1); err == nil || !strings.Contains(err.Error(), "request b") {
		t.Fatalf("no prompt: %v", err)
	}
}

// With the answer's text in the trace, each point reads the prompt and
// the answer so far (the share of its words its tokens reach), and the
// network's output is the remaining tokens itself.
func TestRecordTraceReadsTheAnswerSoFar(t *testing.T) {
	tr := &traces.Trace{Requests: []traces.Request{
		// 100 tokens of answer, 4 words: at 0 tokens none, at 50 two ("w1 w2").
		{ID: "a", PromptTokens: 3, OutputTokens: 100, Prompt: "abc", Output: "w1 w2 w3 w4"},
	}}
	if err := RecordTrace(fakeNet{}, words{}, tr, 50, 4); err != nil {
		t.Fatal(err)
	}
	p := tr.Requests[0].Predictions
	// ids: [CLS] + runes + [SEP]; "abc" = 5 ids -> 50; "abc w1 w2" = 11 ids -> 110.
	if len(p) != 2 || p[0] != (traces.Prediction{Generated: 0, Remaining: 50}) || p[1] != (traces.Prediction{Generated: 50, Remaining: 110}) {
		t.Fatalf("%+v", p)
	}
}

// Scatter groups follow Evaluate's grouping: one a tokens-generated value,
// the rest merged into the last.
func TestScatterGroups(t *testing.T) {
	rs := rows(3, 4) // generated 0, 50, 100, 150 for each of 3 prompts
	preds := make([]float64, len(rs))
	g := ScatterGroups(rs, preds, 2)
	if len(g) != 2 || len(g[0].X) != 3 || len(g[1].X) != 9 || g[1].Label != "50 generated+" {
		t.Fatalf("%+v", g)
	}
}

// The cache keeps outputs by input content, survives a reopen, ignores a
// torn last record, and keeps networks apart.
func TestCache(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, []byte("net-a"), 1)
	if err != nil {
		t.Fatal(err)
	}
	c.put([]int32{1, 2, 3}, []float32{41.5})
	c.put([]int32{1, 2, 4}, []float32{7})
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	again, _ := OpenCache(dir, []byte("net-a"), 1)
	if v, ok := again.get([]int32{1, 2, 3}); !ok || v[0] != 41.5 || again.Len() != 2 {
		t.Fatalf("reopened: %v %v, %d entries", v, ok, again.Len())
	}
	other, _ := OpenCache(dir, []byte("net-b"), 1)
	if other.Len() != 0 {
		t.Fatal("another network sees this one's outputs")
	}
	f, _ := os.OpenFile(again.path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{1, 2, 3})
	f.Close()
	torn, err := OpenCache(dir, []byte("net-a"), 1)
	if err != nil || torn.Len() != 2 {
		t.Fatalf("torn file: %v, %d entries", err, torn.Len())
	}
}
