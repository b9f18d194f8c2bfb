package gpu

import (
	"fmt"
	"os"
	"strings"
)

// Model is a decoder to execute: its shape, and its weights on the host
// (nil for a preset with random weights, which each executor makes itself:
// the CUDA one on the GPU, so an 8B-parameter timing run needs no host copy).
type Model struct {
	Cfg     Config
	Weights *Weights
	Seed    uint64
}

// LoadModel returns a decoder: a preset name gives seeded random weights,
// a Hugging Face model folder its config and weights.
func LoadModel(spec string, seed uint64) (*Model, error) {
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		w, err := LoadWeights(spec)
		if err != nil {
			return nil, err
		}
		return &Model{Cfg: w.Cfg, Weights: w, Seed: seed}, nil
	}
	cfg, err := Preset(spec)
	if err != nil {
		return nil, err
	}
	return &Model{Cfg: cfg, Seed: seed}, nil
}

// hostWeights returns m's weights, generating random ones on the host once.
func (m *Model) hostWeights() (*Weights, error) {
	if m.Weights == nil {
		w, err := RandomWeights(m.Cfg, m.Seed)
		if err != nil {
			return nil, err
		}
		m.Weights = w
	}
	return m.Weights, nil
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

// GPUCount reports how many CUDA devices this machine has; 0 in a build
// without CUDA.
func GPUCount() int {
	if cudaCount == nil {
		return 0
	}
	return cudaCount()
}

// cudaCount is set by the cuda build.
var cudaCount func() int

// newCUDA is set by the cuda build; w nil means random weights made on
// the GPU.
var newCUDA func(cfg Config, w *Weights, ordinal, blockSize, numBlocks int, seed uint64) (Executor, error)

// NewExecutor builds an executor of m for device "cpu" or "cuda" (on GPU
// ordinal; the CPU executor ignores it).
func NewExecutor(device string, ordinal int, m *Model, blockSize, numBlocks int) (Executor, error) {
	switch device {
	case "cpu":
		w, err := m.hostWeights()
		if err != nil {
			return nil, err
		}
		return NewCPU(w, blockSize, numBlocks, m.Seed)
	case "cuda":
		if newCUDA == nil {
			return nil, fmt.Errorf("device cuda: this binary was built without CUDA (build with -tags cuda and the kit in ../shared/cuda; see docs/replay.md)")
		}
		return newCUDA(m.Cfg, m.Weights, ordinal, blockSize, numBlocks, m.Seed)
	}
	return nil, fmt.Errorf("device %q: valid are %s", device, strings.Join(Devices(), ", "))
}

// Bytes estimates what a decoder of shape c needs on a device with
// bytesPer-byte values: its weights, a KV cache of numBlocks blocks, and
// the activations of a step of maxTokens.
func (c *Config) Bytes(bytesPer, blockSize, numBlocks, maxTokens int) (weights, kv, act float64) {
	q, kvw := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	perLayer := float64(c.Hidden*(q+2*kvw) + q*c.Hidden + 3*c.Hidden*c.Intermediate)
	weights = float64(c.Layers) * perLayer
	weights += float64(c.Vocab * c.Hidden)
	if !c.TiedEmbed {
		weights += float64(c.Vocab * c.Hidden)
	}
	weights *= float64(bytesPer)
	kv = float64(c.Layers) * 2 * float64(numBlocks*blockSize*kvw) * float64(bytesPer)
	act = float64(maxTokens) * float64(4*c.Hidden+2*c.Intermediate+q+2*kvw) * 4
	act += float64(maxTokens) * float64(c.Vocab) * 4
	return weights, kv, act
}

// PredictorNet is the predictor network on some device.
type PredictorNet interface {
	Predict(ids [][]int32, mask [][]int32) ([]float32, error)
	Config() BertConfig
	// Close releases what the network holds on its device.
	Close() error
}

// Config returns the encoder's shape.
func (p *Predictor) Config() BertConfig { return p.Cfg }

// Close does nothing: a host network holds no device.
func (p *Predictor) Close() error { return nil }

// newCUDAPredictor is set by the cuda build.
var newCUDAPredictor func(p *Predictor, ordinal int) (PredictorNet, error)

// OnDevice places the predictor network on device "cpu" (p itself) or
// "cuda" (GPU ordinal, in fp16). Close it when done.
func OnDevice(device string, ordinal int, p *Predictor) (PredictorNet, error) {
	switch device {
	case "cpu":
		return p, nil
	case "cuda":
		if newCUDAPredictor == nil {
			return nil, fmt.Errorf("device cuda: this binary was built without CUDA (build with -tags cuda)")
		}
		return newCUDAPredictor(p, ordinal)
	}
	return nil, fmt.Errorf("device %q: valid are %s", device, strings.Join(Devices(), ", "))
}
