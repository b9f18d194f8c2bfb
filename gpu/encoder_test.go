package gpu

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestGoldenELISPredictor loads the ELIS-format checkpoint and checks its
// predictions against the PyTorch reference.
func TestGoldenELISPredictor(t *testing.T) {
	dir := filepath.Join(golden, "elis-tiny")
	if _, err := os.Stat(dir); err != nil {
		t.Skip("no ../shared/golden beside the checkout")
	}
	p, err := LoadELISCheckpoint(filepath.Join(dir, "latest_model.pt"), "")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		IDs   [][]int32 `json:"input_ids"`
		Mask  [][]int32 `json:"attention_mask"`
		Preds []float64 `json:"predictions"`
	}
	data, _ := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Preds) == 0 {
		var raw map[string]json.RawMessage
		json.Unmarshal(data, &raw)
		t.Fatalf("golden.json keys: %v", keysOf(raw))
	}
	got, err := p.Predict(g.IDs, g.Mask)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range g.Preds {
		if math.Abs(float64(got[i])-want) > 1e-4*math.Max(1, math.Abs(want)) {
			t.Errorf("text %d: predicted %v, reference %v", i, got[i], want)
		}
	}
}

func keysOf(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Padding must not change a prediction: the same text alone and padded
// inside a batch give the same value.
func TestPredictorPaddingInvariance(t *testing.T) {
	cfg := BertConfig{Hidden: 32, Intermediate: 64, Layers: 2, Heads: 4, Vocab: 100, MaxPositions: 64, TypeVocab: 2, LNEps: 1e-12}
	p := RandomPredictor(cfg, []int{64, 64, 1}, 5)
	alone, err := p.Predict([][]int32{{1, 5, 9, 2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := p.Predict([][]int32{{1, 7, 8, 9, 10, 2}, {1, 5, 9, 2, 0, 0}}, [][]int32{{1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0}})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(alone[0]-batch[1])) > 1e-5 {
		t.Fatalf("alone %v, padded %v", alone[0], batch[1])
	}
	if _, err := p.Predict([][]int32{{1, 500}}, nil); err == nil {
		t.Fatal("accepted a token outside the vocabulary")
	}
}
