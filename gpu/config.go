package gpu

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
)

// Config is a Llama-family decoder's shape.
type Config struct {
	Hidden       int     `json:"hidden_size"`
	Intermediate int     `json:"intermediate_size"`
	Layers       int     `json:"num_hidden_layers"`
	Heads        int     `json:"num_attention_heads"`
	KVHeads      int     `json:"num_key_value_heads"`
	HeadDim      int     `json:"head_dim"`
	Vocab        int     `json:"vocab_size"`
	RMSEps       float64 `json:"rms_norm_eps"`
	MaxPositions int     `json:"max_position_embeddings"`
	TiedEmbed    bool    `json:"tie_word_embeddings"`
	QKVBias      bool    `json:"attention_bias"`
	Rope         Rope    `json:"rope"`
	EOS          int     `json:"eos_token_id"`
}

// Rope holds rotary embedding settings. Type "llama3" rescales low
// frequencies as Llama 3.1 does.
type Rope struct {
	Theta         float64 `json:"rope_theta"`
	Type          string  `json:"rope_type"`
	Factor        float64 `json:"factor"`
	LowFreq       float64 `json:"low_freq_factor"`
	HighFreq      float64 `json:"high_freq_factor"`
	OrigPositions int     `json:"original_max_position_embeddings"`
}

// hfConfig is config.json as Hugging Face writes it, in both the older
// (rope_theta + rope_scaling) and the transformers 5 (rope_parameters)
// styles.
type hfConfig struct {
	Config
	ModelType      string          `json:"model_type"`
	RopeTheta      float64         `json:"rope_theta"`
	RopeScaling    *Rope           `json:"rope_scaling"`
	RopeParameters *Rope           `json:"rope_parameters"`
	EOSRaw         json.RawMessage `json:"eos_token_id"`
}

// LoadConfig reads a Hugging Face config.json (a file or a model folder).
func LoadConfig(path string) (Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path += "/config.json"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(data, path)
}

// ParseConfig decodes a Hugging Face config.json; path is used in errors.
func ParseConfig(data []byte, path string) (Config, error) {
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	c := h.Config
	if h.ModelType == "qwen2" {
		c.QKVBias = true // Qwen2 always has q/k/v biases
	}
	switch {
	case h.RopeParameters != nil:
		c.Rope = *h.RopeParameters
	case h.RopeScaling != nil:
		c.Rope = *h.RopeScaling
	}
	if c.Rope.Theta == 0 {
		c.Rope.Theta = h.RopeTheta
	}
	if c.Rope.Theta == 0 {
		c.Rope.Theta = 10000
	}
	// eos_token_id may be a number or a list; the first is enough here.
	var eos any
	json.Unmarshal(h.EOSRaw, &eos)
	switch v := eos.(type) {
	case float64:
		c.EOS = int(v)
	case []any:
		if len(v) > 0 {
			if f, ok := v[0].(float64); ok {
				c.EOS = int(f)
			}
		}
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 && c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.RMSEps == 0 {
		c.RMSEps = 1e-6
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Validate reports a shape the decoder cannot run.
func (c *Config) Validate() error {
	switch {
	case c.Hidden < 1 || c.Intermediate < 1 || c.Layers < 1 || c.Vocab < 1:
		return fmt.Errorf("hidden_size, intermediate_size, num_hidden_layers and vocab_size must be >= 1")
	case c.Heads < 1 || c.KVHeads < 1 || c.Heads%c.KVHeads != 0:
		return fmt.Errorf("num_attention_heads %d must be a multiple of num_key_value_heads %d", c.Heads, c.KVHeads)
	case c.HeadDim < 2 || c.HeadDim%2 != 0:
		return fmt.Errorf("head_dim %d must be even", c.HeadDim)
	case !(c.Rope.Theta > 0) || math.IsInf(c.Rope.Theta, 0):
		return fmt.Errorf("rope_theta %v must be a positive number", c.Rope.Theta)
	case c.Rope.Type == "llama3" && (c.Rope.Factor <= 0 || c.Rope.OrigPositions <= 0 || c.Rope.HighFreq <= c.Rope.LowFreq):
		return fmt.Errorf("llama3 rope scaling needs factor, original_max_position_embeddings and high_freq_factor > low_freq_factor")
	}
	return nil
}

// InvFreq returns the rotary inverse frequencies, scaled per c.Rope.
func (c *Config) InvFreq() []float64 {
	half := c.HeadDim / 2
	f := make([]float64, half)
	for i := range f {
		f[i] = 1 / math.Pow(c.Rope.Theta, float64(2*i)/float64(c.HeadDim))
	}
	if c.Rope.Type != "llama3" {
		return f
	}
	r := c.Rope
	lowWave := float64(r.OrigPositions) / r.LowFreq
	highWave := float64(r.OrigPositions) / r.HighFreq
	for i, freq := range f {
		wave := 2 * math.Pi / freq
		switch {
		case wave < highWave:
		case wave > lowWave:
			f[i] = freq / r.Factor
		default:
			smooth := (float64(r.OrigPositions)/wave - r.LowFreq) / (r.HighFreq - r.LowFreq)
			f[i] = (1-smooth)*freq/r.Factor + smooth*freq
		}
	}
	return f
}

// Presets are decoder shapes for timing runs with random weights.
var Presets = map[string]Config{
	"llama-2-7b":   {Hidden: 4096, Intermediate: 11008, Layers: 32, Heads: 32, KVHeads: 32, HeadDim: 128, Vocab: 32000, RMSEps: 1e-5, MaxPositions: 4096, Rope: Rope{Theta: 1e4}, EOS: 2},
	"llama-2-13b":  {Hidden: 5120, Intermediate: 13824, Layers: 40, Heads: 40, KVHeads: 40, HeadDim: 128, Vocab: 32000, RMSEps: 1e-5, MaxPositions: 4096, Rope: Rope{Theta: 1e4}, EOS: 2},
	"llama-3.1-8b": {Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 128256, RMSEps: 1e-5, MaxPositions: 131072, EOS: 128001, Rope: Rope{Theta: 5e5, Type: "llama3", Factor: 8, LowFreq: 1, HighFreq: 4, OrigPositions: 8192}},
	"solar-10.7b":  {Hidden: 4096, Intermediate: 14336, Layers: 48, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 32000, RMSEps: 1e-5, MaxPositions: 4096, Rope: Rope{Theta: 1e4}, EOS: 2},
	// small and tiny shapes for CPU runs and tests
	"small":    {Hidden: 256, Intermediate: 688, Layers: 4, Heads: 8, KVHeads: 4, HeadDim: 32, Vocab: 2048, RMSEps: 1e-5, MaxPositions: 2048, Rope: Rope{Theta: 1e4}, EOS: 2},
	"tiny":     {Hidden: 64, Intermediate: 172, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, Vocab: 512, RMSEps: 1e-5, MaxPositions: 256, Rope: Rope{Theta: 1e4}, EOS: 2},
	"tiny-gqa": {Hidden: 96, Intermediate: 200, Layers: 3, Heads: 6, KVHeads: 2, HeadDim: 16, Vocab: 300, RMSEps: 1e-5, MaxPositions: 512, QKVBias: true, Rope: Rope{Theta: 5e5, Type: "llama3", Factor: 8, LowFreq: 1, HighFreq: 4, OrigPositions: 64}, EOS: 2},
}

// PresetNames lists the presets, sorted.
func PresetNames() []string { return slices.Sorted(maps.Keys(Presets)) }

// Preset returns a named decoder shape.
func Preset(name string) (Config, error) {
	c, ok := Presets[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown model preset %q (valid: %s, or a Hugging Face model folder)", name, strings.Join(PresetNames(), ", "))
	}
	return c, nil
}
