package gpu

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nlpodyssey/gopickle/pytorch"
	"github.com/nlpodyssey/gopickle/types"
)

// LoadELISCheckpoint reads a predictor saved by the ELIS trainer
// (torch.save of {"model_state_dict": {"bge_model.*": ..., "predictor.N.*":
// ...}, ...}) with the encoder's Hugging Face config.json beside it or
// given. Pickle reading is gopickle's.
func LoadELISCheckpoint(path, configPath string) (*Predictor, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if configPath == "" {
		configPath = filepath.Join(filepath.Dir(path), "config.json")
	}
	cfg, err := loadBertConfig(configPath)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: its encoder's config.json beside it: %w", path, err)
	}
	obj, err := loadTorch(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	sd, err := stateDict(obj)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return predictorFromState(cfg, sd, path)
}

func loadBertConfig(path string) (BertConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return BertConfig{}, err
	}
	var c BertConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return BertConfig{}, fmt.Errorf("config %s: %w", path, err)
	}
	if c.Hidden < 1 || c.Heads < 1 || c.Hidden%c.Heads != 0 || c.Layers < 1 || c.Vocab < 1 || c.MaxPositions < 1 {
		return BertConfig{}, fmt.Errorf("config %s: not a BERT config (hidden_size, num_attention_heads, num_hidden_layers, vocab_size)", path)
	}
	if c.TypeVocab == 0 {
		c.TypeVocab = 2
	}
	if c.LNEps == 0 {
		c.LNEps = 1e-12
	}
	return c, nil
}

// stateDict finds model_state_dict in a torch.save'd object and returns
// its tensors as float32.
func stateDict(obj any) (map[string]*Tensor, error) {
	top, ok := asMap(obj)
	if !ok {
		return nil, fmt.Errorf("top level is %T, want a dict", obj)
	}
	sdObj, ok := top["model_state_dict"]
	if !ok {
		sdObj = obj // a bare state dict
	}
	sd, ok := asMap(sdObj)
	if !ok {
		return nil, fmt.Errorf("model_state_dict is %T, want a dict", sdObj)
	}
	out := map[string]*Tensor{}
	for k, v := range sd {
		t, ok := v.(*pytorch.Tensor)
		if !ok {
			continue
		}
		data, err := tensorData(t)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", k, err)
		}
		out[k] = &Tensor{Shape: t.Size, Data: data}
	}
	return out, nil
}

func asMap(obj any) (map[string]any, bool) {
	out := map[string]any{}
	switch d := obj.(type) {
	case *types.Dict:
		for _, e := range *d {
			if k, ok := e.Key.(string); ok {
				out[k] = e.Value
			}
		}
	case *types.OrderedDict:
		for k, e := range d.Map {
			if s, ok := k.(string); ok {
				out[s] = e.Value
			}
		}
	default:
		return nil, false
	}
	return out, true
}

// tensorData copies a (possibly strided) tensor into row-major float32.
func tensorData(t *pytorch.Tensor) ([]float32, error) {
	var src []float32
	switch s := t.Source.(type) {
	case *pytorch.FloatStorage:
		src = s.Data
	case *pytorch.HalfStorage:
		src = s.Data
	case *pytorch.BFloat16Storage:
		src = s.Data
	case *pytorch.DoubleStorage:
		src = make([]float32, len(s.Data))
		for i, v := range s.Data {
			src[i] = float32(v)
		}
	default:
		return nil, fmt.Errorf("storage %T is not floating point", t.Source)
	}
	// The shape and strides are the file's word: check them against the
	// storage before allocating or indexing.
	if len(t.Stride) != len(t.Size) {
		return nil, fmt.Errorf("%d strides for %d dimensions", len(t.Stride), len(t.Size))
	}
	n, last := 1, t.StorageOffset
	for d, size := range t.Size {
		if size < 0 || t.Stride[d] < 0 || t.Stride[d] > len(src) {
			return nil, fmt.Errorf("dimension %d: size %d, stride %d over a storage of %d", d, size, t.Stride[d], len(src))
		}
		if size == 0 {
			return []float32{}, nil
		}
		if n > len(src)/size {
			return nil, fmt.Errorf("shape %v holds more elements than its storage's %d", t.Size, len(src))
		}
		n *= size
		last += (size - 1) * t.Stride[d]
	}
	if t.StorageOffset < 0 || last >= len(src) {
		return nil, fmt.Errorf("shape %v, strides %v at offset %d reach outside a storage of %d", t.Size, t.Stride, t.StorageOffset, len(src))
	}
	out := make([]float32, n)
	idx := make([]int, len(t.Size))
	for i := range out {
		off := t.StorageOffset
		for d, v := range idx {
			off += v * t.Stride[d]
		}
		out[i] = src[off]
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < t.Size[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out, nil
}

// predictorFromState maps ELIS's state-dict names onto the predictor.
func predictorFromState(cfg BertConfig, sd map[string]*Tensor, name string) (*Predictor, error) {
	set := &tensorSet{ts: sd, from: "checkpoint " + name}
	get := set.get
	H, I := cfg.Hidden, cfg.Intermediate
	lin := func(prefix string, out, in int) linear {
		return linear{get(prefix+".weight", out, in), get(prefix+".bias", out)}
	}
	e := "bge_model.embeddings."
	p := &Predictor{Cfg: cfg,
		word: get(e+"word_embeddings.weight", cfg.Vocab, H), pos: get(e+"position_embeddings.weight", cfg.MaxPositions, H),
		typ: get(e+"token_type_embeddings.weight", cfg.TypeVocab, H), embLNW: get(e+"LayerNorm.weight", H), embLNB: get(e+"LayerNorm.bias", H)}
	for i := 0; i < cfg.Layers; i++ {
		l := fmt.Sprintf("bge_model.encoder.layer.%d.", i)
		p.layers = append(p.layers, bertLayer{
			q: lin(l+"attention.self.query", H, H), k: lin(l+"attention.self.key", H, H), v: lin(l+"attention.self.value", H, H),
			o: lin(l+"attention.output.dense", H, H), up: lin(l+"intermediate.dense", I, H), down: lin(l+"output.dense", H, I),
			ln1W: get(l+"attention.output.LayerNorm.weight", H), ln1B: get(l+"attention.output.LayerNorm.bias", H),
			ln2W: get(l+"output.LayerNorm.weight", H), ln2B: get(l+"output.LayerNorm.bias", H)})
	}
	// The head: predictor.N for the Linear layers (ReLUs sit between them).
	var idx []int
	for k := range sd {
		if rest, ok := strings.CutPrefix(k, "predictor."); ok {
			if n, e := strconv.Atoi(strings.SplitN(rest, ".", 2)[0]); e == nil && strings.HasSuffix(k, ".weight") {
				idx = append(idx, n)
			}
		}
	}
	sort.Ints(idx)
	if len(idx) == 0 {
		return nil, fmt.Errorf("checkpoint %s: no predictor.N.weight layers", name)
	}
	in := H
	for _, n := range idx {
		w := sd[fmt.Sprintf("predictor.%d.weight", n)]
		if len(w.Shape) != 2 {
			return nil, fmt.Errorf("checkpoint %s: predictor.%d.weight is not a matrix", name, n)
		}
		p.head = append(p.head, lin(fmt.Sprintf("predictor.%d", n), w.Shape[0], in))
		in = w.Shape[0]
	}
	if set.err != nil {
		return nil, set.err
	}
	return p, nil
}

// NamedTensor is one entry of a state dict: float32, row-major.
type NamedTensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// ReadStateDict reads a checkpoint's model_state_dict in its file order,
// every entry as float32: what a fine-tune rewrites with a new head,
// keeping the rest (the encoder, its unused pooler) as it was.
func ReadStateDict(path string) ([]NamedTensor, error) {
	obj, err := loadTorch(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	top, ok := asMap(obj)
	if !ok {
		return nil, fmt.Errorf("checkpoint %s: top level is %T, want a dict", path, obj)
	}
	sdObj, ok := top["model_state_dict"]
	if !ok {
		sdObj = obj
	}
	var out []NamedTensor
	add := func(k, v any) error {
		name, _ := k.(string)
		t, ok := v.(*pytorch.Tensor)
		if !ok {
			return fmt.Errorf("checkpoint %s: %s is %T, not a tensor", path, name, v)
		}
		data, err := tensorData(t)
		if err != nil {
			return fmt.Errorf("checkpoint %s: tensor %s: %w", path, name, err)
		}
		out = append(out, NamedTensor{Name: name, Shape: append([]int(nil), t.Size...), Data: data})
		return nil
	}
	switch d := sdObj.(type) {
	case *types.OrderedDict:
		for el := d.List.Front(); el != nil; el = el.Next() {
			e := el.Value.(*types.OrderedDictEntry)
			if err := add(e.Key, e.Value); err != nil {
				return nil, err
			}
		}
	case *types.Dict:
		for _, e := range *d {
			if err := add(e.Key, e.Value); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("checkpoint %s: model_state_dict is %T, want a dict", path, sdObj)
	}
	return out, nil
}

// StateDict is p's weights under the ELIS trainer's names, in its order
// (bge_model.* for the encoder, predictor.0, .2, ... for the head's
// Linear layers, ReLUs between them); the pooler, which the predictor
// does not use, is left out.
func (p *Predictor) StateDict() []NamedTensor {
	c := &p.Cfg
	H, I := c.Hidden, c.Intermediate
	var out []NamedTensor
	add := func(name string, data []float32, shape ...int) {
		out = append(out, NamedTensor{Name: name, Shape: shape, Data: data})
	}
	e := "bge_model.embeddings."
	add(e+"word_embeddings.weight", p.word, c.Vocab, H)
	add(e+"position_embeddings.weight", p.pos, c.MaxPositions, H)
	add(e+"token_type_embeddings.weight", p.typ, c.TypeVocab, H)
	add(e+"LayerNorm.weight", p.embLNW, H)
	add(e+"LayerNorm.bias", p.embLNB, H)
	lin := func(name string, l linear, o, i int) {
		add(name+".weight", l.W, o, i)
		add(name+".bias", l.B, o)
	}
	for n, l := range p.layers {
		pre := fmt.Sprintf("bge_model.encoder.layer.%d.", n)
		lin(pre+"attention.self.query", l.q, H, H)
		lin(pre+"attention.self.key", l.k, H, H)
		lin(pre+"attention.self.value", l.v, H, H)
		lin(pre+"attention.output.dense", l.o, H, H)
		add(pre+"attention.output.LayerNorm.weight", l.ln1W, H)
		add(pre+"attention.output.LayerNorm.bias", l.ln1B, H)
		lin(pre+"intermediate.dense", l.up, I, H)
		lin(pre+"output.dense", l.down, H, I)
		add(pre+"output.LayerNorm.weight", l.ln2W, H)
		add(pre+"output.LayerNorm.bias", l.ln2B, H)
	}
	in := H
	for k, l := range p.head {
		lin(fmt.Sprintf("predictor.%d", 2*k), l, len(l.B), in)
		in = len(l.B)
	}
	return out
}
