package gpu

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// golden is where ../shared keeps the reference outputs (ELIS_GOLDEN
// overrides it, for the GPU machine, where scripts/build-cuda carries a
// copy in bin/golden); tests that read it skip when it is absent.
var golden = func() string {
	if d := os.Getenv("ELIS_GOLDEN"); d != "" {
		return d
	}
	return "../../shared/golden"
}()

var goldenDecoders = []string{"tiny-llama2", "tiny-llama3", "tiny-qwen2"}

// decoderGolden is a tiny model's golden.json.
type decoderGolden struct {
	Prompts [][]int32   `json:"prompts"`
	Greedy  [][]int32   `json:"greedy"`
	First8  [][]float64 `json:"last_logits_first8"`
	Sum     []float64   `json:"prompt_logits_sum"`
}

// loadDecoderGolden reads a golden decoder and its reference outputs, or
// skips the test without ../shared.
func loadDecoderGolden(t *testing.T, name string) (*Weights, decoderGolden) {
	t.Helper()
	dir := filepath.Join(golden, name)
	if _, err := os.Stat(dir); err != nil {
		t.Skip("no ../shared/golden beside the checkout")
	}
	w, err := LoadWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	var g decoderGolden
	data, _ := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return w, g
}

// elisGolden is the ELIS checkpoint's golden.json.
type elisGolden struct {
	IDs   [][]int32 `json:"input_ids"`
	Mask  [][]int32 `json:"attention_mask"`
	Preds []float64 `json:"predictions"`
}

// loadELISGolden reads the tiny ELIS checkpoint and its reference
// predictions, or skips the test without ../shared.
func loadELISGolden(t *testing.T) (*Predictor, elisGolden) {
	t.Helper()
	dir := filepath.Join(golden, "elis-tiny")
	if _, err := os.Stat(dir); err != nil {
		t.Skip("no ../shared/golden beside the checkout")
	}
	p, err := LoadELISCheckpoint(filepath.Join(dir, "latest_model.pt"), "")
	if err != nil {
		t.Fatal(err)
	}
	var g elisGolden
	data, _ := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err := json.Unmarshal(data, &g); err != nil || len(g.Preds) == 0 {
		t.Fatalf("golden.json: %v", err)
	}
	return p, g
}
