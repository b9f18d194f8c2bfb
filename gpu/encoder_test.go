package gpu

import (
	"math"
	"testing"
)

// TestGoldenELISPredictor loads the ELIS-format checkpoint and checks its
// predictions against the PyTorch reference.
func TestGoldenELISPredictor(t *testing.T) {
	p, g := loadELISGolden(t)
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
