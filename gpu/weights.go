package gpu

import (
	"fmt"
	"math/rand/v2"
)

// Layer holds one decoder layer's weights; matrices are [out][in] row-major
// as Hugging Face stores them.
type Layer struct {
	AttnNorm, MLPNorm []float32
	Wq, Wk, Wv, Wo    []float32
	Bq, Bk, Bv        []float32 // nil without QKV bias
	Wgate, Wup, Wdown []float32
}

// Weights is a whole decoder.
type Weights struct {
	Cfg    Config
	Embed  []float32 // [vocab][hidden]
	Layers []Layer
	Norm   []float32
	LMHead []float32 // [vocab][hidden]; the embedding when tied
}

// LoadWeights reads a Hugging Face model folder: config.json and
// safetensors weights.
func LoadWeights(dir string) (*Weights, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	ts, err := ReadModelTensors(dir)
	if err != nil {
		return nil, err
	}
	w := &Weights{Cfg: cfg}
	set := &tensorSet{ts: ts, from: "model " + dir}
	get := set.get
	c := &cfg
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	w.Embed = get("model.embed_tokens.weight", c.Vocab, c.Hidden)
	w.Norm = get("model.norm.weight", c.Hidden)
	if c.TiedEmbed {
		w.LMHead = w.Embed
	} else {
		w.LMHead = get("lm_head.weight", c.Vocab, c.Hidden)
	}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		l := Layer{
			AttnNorm: get(p+"input_layernorm.weight", c.Hidden),
			MLPNorm:  get(p+"post_attention_layernorm.weight", c.Hidden),
			Wq:       get(p+"self_attn.q_proj.weight", q, c.Hidden),
			Wk:       get(p+"self_attn.k_proj.weight", kv, c.Hidden),
			Wv:       get(p+"self_attn.v_proj.weight", kv, c.Hidden),
			Wo:       get(p+"self_attn.o_proj.weight", c.Hidden, q),
			Wgate:    get(p+"mlp.gate_proj.weight", c.Intermediate, c.Hidden),
			Wup:      get(p+"mlp.up_proj.weight", c.Intermediate, c.Hidden),
			Wdown:    get(p+"mlp.down_proj.weight", c.Hidden, c.Intermediate),
		}
		if c.QKVBias {
			l.Bq, l.Bk, l.Bv = get(p+"self_attn.q_proj.bias", q), get(p+"self_attn.k_proj.bias", kv), get(p+"self_attn.v_proj.bias", kv)
		}
		w.Layers = append(w.Layers, l)
	}
	if set.err != nil {
		return nil, set.err
	}
	return w, nil
}

// RandomWeights initialises a decoder with seeded normal weights (std
// 1/sqrt(fan-in)) and unit norms: step time does not depend on weight
// values, and the outputs are deterministic for tests.
func RandomWeights(cfg Config, seed uint64) (*Weights, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x6770752d72616e64))
	mat := func(out, in int) []float32 { return randMatrix(rng, out, in) }
	ones := func(n int) []float32 { return filled(n, 1) }
	c := &cfg
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	w := &Weights{Cfg: cfg, Embed: mat(c.Vocab, c.Hidden), Norm: ones(c.Hidden)}
	w.LMHead = w.Embed
	if !c.TiedEmbed {
		w.LMHead = mat(c.Vocab, c.Hidden)
	}
	for i := 0; i < c.Layers; i++ {
		l := Layer{AttnNorm: ones(c.Hidden), MLPNorm: ones(c.Hidden),
			Wq: mat(q, c.Hidden), Wk: mat(kv, c.Hidden), Wv: mat(kv, c.Hidden), Wo: mat(c.Hidden, q),
			Wgate: mat(c.Intermediate, c.Hidden), Wup: mat(c.Intermediate, c.Hidden), Wdown: mat(c.Hidden, c.Intermediate)}
		if c.QKVBias {
			l.Bq, l.Bk, l.Bv = mat(1, q), mat(1, kv), mat(1, kv)
		}
		w.Layers = append(w.Layers, l)
	}
	return w, nil
}
