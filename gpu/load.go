package gpu

import (
	"fmt"
	"os"
	"strings"
)

// LoadModel returns a decoder: a preset name gives seeded random weights
// (timing runs), a Hugging Face model folder gives its config and weights.
func LoadModel(spec string, seed uint64) (*Weights, error) {
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		return LoadWeights(spec)
	}
	cfg, err := Preset(spec)
	if err != nil {
		return nil, err
	}
	return RandomWeights(cfg, seed)
}

// TinyBert is a small BERT shape for tests and CPU runs.
var TinyBert = BertConfig{Hidden: 32, Intermediate: 64, Layers: 2, Heads: 4, Vocab: 30522, MaxPositions: 512, TypeVocab: 2, LNEps: 1e-12}

// ELISHead is the ELIS predictor's head after the encoder: six hidden
// layers of 1024 and the scalar.
var ELISHead = []int{1024, 1024, 1024, 1024, 1024, 1024, 1024, 1}

// LoadPredictorNet returns the predictor network: "bge-base" (the ELIS
// shape, random weights), "tiny" (random, for CPU runs and tests), or an
// ELIS trainer checkpoint (.pt) with config.json beside it.
func LoadPredictorNet(spec string, seed uint64) (*Predictor, error) {
	switch {
	case spec == "bge-base":
		return RandomPredictor(BgeBase, ELISHead, seed), nil
	case spec == "tiny":
		return RandomPredictor(TinyBert, []int{64, 64, 1}, seed), nil
	case strings.HasSuffix(spec, ".pt"):
		return LoadELISCheckpoint(spec, "")
	}
	return nil, fmt.Errorf("predictor model %q: valid are bge-base, tiny, or an ELIS checkpoint .pt", spec)
}

// Devices lists the executors this build has.
func Devices() []string {
	if newCUDA != nil {
		return []string{"cpu", "cuda"}
	}
	return []string{"cpu"}
}

// newCUDA is set by the cuda build.
var newCUDA func(w *Weights, ordinal, blockSize, numBlocks int) (Executor, error)

// NewExecutor builds an executor for device "cpu" or "cuda" (on GPU
// ordinal; the CPU executor ignores it).
func NewExecutor(device string, ordinal int, w *Weights, blockSize, numBlocks int, seed uint64) (Executor, error) {
	switch device {
	case "cpu":
		return NewCPU(w, blockSize, numBlocks, seed)
	case "cuda":
		if newCUDA == nil {
			return nil, fmt.Errorf("device cuda: this binary was built without CUDA (build with -tags cuda and the kit in ../shared/cuda; see the README)")
		}
		return newCUDA(w, ordinal, blockSize, numBlocks)
	}
	return nil, fmt.Errorf("device %q: valid are %s", device, strings.Join(Devices(), ", "))
}

// Bytes estimates what a decoder needs on a device: its weights, a KV
// cache of numBlocks blocks, and the activations of a step of maxTokens.
func (w *Weights) Bytes(blockSize, numBlocks, maxTokens int) (weights, kv, act float64) {
	c := &w.Cfg
	for _, l := range w.Layers {
		weights += float64(len(l.Wq)+len(l.Wk)+len(l.Wv)+len(l.Wo)+len(l.Wgate)+len(l.Wup)+len(l.Wdown)) * 4
	}
	weights += float64(len(w.Embed)) * 4
	if &w.LMHead[0] != &w.Embed[0] {
		weights += float64(len(w.LMHead)) * 4
	}
	kv = float64(c.Layers) * 2 * float64(numBlocks*blockSize*c.KVHeads*c.HeadDim) * 4
	act = float64(maxTokens) * float64(4*c.Hidden+2*c.Intermediate+c.Heads*c.HeadDim+2*c.KVHeads*c.HeadDim) * 4
	act += float64(maxTokens) * float64(c.Vocab) * 4
	return weights, kv, act
}

// PredictorNet is the predictor network on some device.
type PredictorNet interface {
	Predict(ids [][]int32, mask [][]int32) ([]float32, error)
	Config() BertConfig
}

// Config returns the encoder's shape.
func (p *Predictor) Config() BertConfig { return p.Cfg }

// newCUDAPredictor is set by the cuda build.
var newCUDAPredictor func(p *Predictor) (PredictorNet, error)

// OnDevice places the predictor network on device "cpu" (p itself) or
// "cuda".
func OnDevice(device string, p *Predictor) (PredictorNet, error) {
	switch device {
	case "cpu":
		return p, nil
	case "cuda":
		if newCUDAPredictor == nil {
			return nil, fmt.Errorf("device cuda: this binary was built without CUDA (build with -tags cuda)")
		}
		return newCUDAPredictor(p)
	}
	return nil, fmt.Errorf("device %q: valid are %s", device, strings.Join(Devices(), ", "))
}
