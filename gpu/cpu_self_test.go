package gpu

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/x448/float16"
)

func tinyCPU(t *testing.T, preset string, blocks int) *CPU {
	t.Helper()
	cfg, err := Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	w, err := RandomWeights(cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewCPU(w, 4, blocks, 0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func prompt(n int, seed uint64, vocab int) []int32 {
	rng := rand.New(rand.NewPCG(seed, 3))
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(rng.IntN(vocab))
	}
	return p
}

func TestPagedEqualsContiguous(t *testing.T) {
	p := prompt(21, 1, 300)
	a := tinyCPU(t, "tiny-gqa", 32)
	b := tinyCPU(t, "tiny-gqa", 32)
	ta, _ := generate(t, a, p, 12, seqTable(9))
	tb, _ := generate(t, b, p, 12, []int32{30, 2, 17, 5, 28, 11, 0, 23, 8})
	for i := range ta {
		if ta[i] != tb[i] {
			t.Fatalf("contiguous %v, shuffled blocks %v", ta, tb)
		}
	}
}

func TestChunkedPrefillEqualsWhole(t *testing.T) {
	p := prompt(19, 2, 300)
	e1 := tinyCPU(t, "tiny-gqa", 16)
	whole, err := e1.Forward([]SeqStep{{Tokens: p, BlockTable: seqTable(5), Sample: true}}, false)
	if err != nil {
		t.Fatal(err)
	}
	e2 := tinyCPU(t, "tiny-gqa", 16)
	var last [][]float32
	for lo := 0; lo < len(p); lo += 7 {
		hi := min(lo+7, len(p))
		last, err = e2.Forward([]SeqStep{{Tokens: p[lo:hi], Pos: lo, BlockTable: seqTable(5), Sample: hi == len(p)}}, false)
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range whole[0] {
		if math.Abs(float64(whole[0][i]-last[0][i])) > 1e-4 {
			t.Fatalf("logit %d: whole %v, chunked %v", i, whole[0][i], last[0][i])
		}
	}
}

// A sequence decoded alone gives the same greedy tokens as inside a batch
// of mixed prefills and decodes.
func TestBatchInvariance(t *testing.T) {
	pa, pb, pc := prompt(9, 3, 300), prompt(14, 4, 300), prompt(5, 5, 300)
	alone := tinyCPU(t, "tiny-gqa", 40)
	want, _ := generate(t, alone, pa, 10, seqTable(8))

	e := tinyCPU(t, "tiny-gqa", 40)
	ta, tb, tc := seqTable(8), []int32{8, 9, 10, 11, 12, 13, 14, 15}, []int32{16, 17, 18, 19, 20, 21}
	next := make([]int32, 3)
	// Step 1: a's prompt and b's first chunk; step 2: a decodes, b finishes
	// its prompt, c prefills; then all decode.
	if err := e.Step([]SeqStep{{Tokens: pa, BlockTable: ta, Sample: true}, {Tokens: pb[:6], BlockTable: tb}}, next[:2]); err != nil {
		t.Fatal(err)
	}
	got := []int32{next[0]}
	if err := e.Step([]SeqStep{{Tokens: got[:1], Pos: 9, BlockTable: ta, Sample: true}, {Tokens: pb[6:], Pos: 6, BlockTable: tb, Sample: true},
		{Tokens: pc, BlockTable: tc, Sample: true}}, next); err != nil {
		t.Fatal(err)
	}
	got = append(got, next[0])
	lb, lc := next[1], next[2]
	for pos, posB, posC := 10, 14, 5; len(got) < 10; pos, posB, posC = pos+1, posB+1, posC+1 {
		if err := e.Step([]SeqStep{{Tokens: []int32{lc}, Pos: posC, BlockTable: tc, Sample: true},
			{Tokens: got[len(got)-1:], Pos: pos, BlockTable: ta, Sample: true},
			{Tokens: []int32{lb}, Pos: posB, BlockTable: tb, Sample: true}}, next); err != nil {
			t.Fatal(err)
		}
		lc, lb = next[0], next[2]
		got = append(got, next[1])
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("alone %v, in a batch %v", want, got)
		}
	}
}

func TestKernelsAgainstFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	T, I, O := 5, 37, 23
	x, W, b := make([]float32, T*I), make([]float32, O*I), make([]float32, O)
	for _, s := range [][]float32{x, W, b} {
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
	}
	out := make([]float32, T*O)
	matmul(out, x, W, b, T, I, O)
	for r := 0; r < T; r++ {
		for o := 0; o < O; o++ {
			want := float64(b[o])
			for i := 0; i < I; i++ {
				want += float64(x[r*I+i]) * float64(W[o*I+i])
			}
			if math.Abs(float64(out[r*O+o])-want) > 1e-4*math.Max(1, math.Abs(want)) {
				t.Fatalf("matmul[%d][%d] = %v, want %v", r, o, out[r*O+o], want)
			}
		}
	}
	norm := make([]float32, T*I)
	w := W[:I]
	rmsNorm(norm, x, w, I, 1e-5)
	for r := 0; r < T; r++ {
		ss := 0.0
		for i := 0; i < I; i++ {
			ss += float64(x[r*I+i]) * float64(x[r*I+i])
		}
		inv := 1 / math.Sqrt(ss/float64(I)+1e-5)
		for i := 0; i < I; i++ {
			want := float64(w[i]) * float64(x[r*I+i]) * inv
			if math.Abs(float64(norm[r*I+i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
				t.Fatalf("rmsnorm[%d][%d] = %v, want %v", r, i, norm[r*I+i], want)
			}
		}
	}
}

// writeSafetensors encodes tensors (all with the given dtype) for tests.
func writeSafetensors(t testing.TB, path string, dtype string, ts map[string]*Tensor) {
	head := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var body []byte
	for name, tt := range ts {
		start := len(body)
		for _, v := range tt.Data {
			switch dtype {
			case "F32":
				body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
			case "F16":
				body = binary.LittleEndian.AppendUint16(body, float16.Fromfloat32(v).Bits())
			case "BF16":
				body = binary.LittleEndian.AppendUint16(body, uint16(math.Float32bits(v)>>16))
			}
		}
		head[name] = map[string]any{"dtype": dtype, "shape": tt.Shape, "data_offsets": []int{start, len(body)}}
	}
	hj, _ := json.Marshal(head)
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hj)))
	out = append(append(out, hj...), body...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSafetensorsDtypes(t *testing.T) {
	vals := []float32{1, -2.5, 0.15625, 3e-3}
	for _, dt := range []string{"F32", "F16", "BF16"} {
		p := filepath.Join(t.TempDir(), "m.safetensors")
		writeSafetensors(t, p, dt, map[string]*Tensor{"a": {Shape: []int{2, 2}, Data: vals}})
		ts, err := ReadSafetensors(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range ts["a"].Data {
			tol := map[string]float64{"F32": 0, "F16": 1e-3, "BF16": 1e-2}[dt]
			if math.Abs(float64(v-vals[i])) > tol*math.Max(1, math.Abs(float64(vals[i]))) {
				t.Errorf("%s: %v, want %v", dt, v, vals[i])
			}
		}
	}
}

// RandomWeights saved as safetensors with a config.json load back to the
// same decoder: the loading path is tested without ../shared.
func TestLoadWeightsRoundTrip(t *testing.T) {
	cfg, _ := Preset("tiny-gqa")
	w, _ := RandomWeights(cfg, 3)
	dir := t.TempDir()
	ts := map[string]*Tensor{
		"model.embed_tokens.weight": {Shape: []int{cfg.Vocab, cfg.Hidden}, Data: w.Embed},
		"model.norm.weight":         {Shape: []int{cfg.Hidden}, Data: w.Norm},
		"lm_head.weight":            {Shape: []int{cfg.Vocab, cfg.Hidden}, Data: w.LMHead},
	}
	q, kv := cfg.Heads*cfg.HeadDim, cfg.KVHeads*cfg.HeadDim
	for i, l := range w.Layers {
		p := "model.layers." + string(rune('0'+i)) + "."
		ts[p+"input_layernorm.weight"] = &Tensor{[]int{cfg.Hidden}, l.AttnNorm}
		ts[p+"post_attention_layernorm.weight"] = &Tensor{[]int{cfg.Hidden}, l.MLPNorm}
		ts[p+"self_attn.q_proj.weight"] = &Tensor{[]int{q, cfg.Hidden}, l.Wq}
		ts[p+"self_attn.k_proj.weight"] = &Tensor{[]int{kv, cfg.Hidden}, l.Wk}
		ts[p+"self_attn.v_proj.weight"] = &Tensor{[]int{kv, cfg.Hidden}, l.Wv}
		ts[p+"self_attn.q_proj.bias"] = &Tensor{[]int{q}, l.Bq}
		ts[p+"self_attn.k_proj.bias"] = &Tensor{[]int{kv}, l.Bk}
		ts[p+"self_attn.v_proj.bias"] = &Tensor{[]int{kv}, l.Bv}
		ts[p+"self_attn.o_proj.weight"] = &Tensor{[]int{cfg.Hidden, q}, l.Wo}
		ts[p+"mlp.gate_proj.weight"] = &Tensor{[]int{cfg.Intermediate, cfg.Hidden}, l.Wgate}
		ts[p+"mlp.up_proj.weight"] = &Tensor{[]int{cfg.Intermediate, cfg.Hidden}, l.Wup}
		ts[p+"mlp.down_proj.weight"] = &Tensor{[]int{cfg.Hidden, cfg.Intermediate}, l.Wdown}
	}
	writeSafetensors(t, filepath.Join(dir, "model.safetensors"), "F32", ts)
	conf := `{"model_type": "qwen2", "hidden_size": 96, "intermediate_size": 200, "num_hidden_layers": 3, "num_attention_heads": 6,
	 "num_key_value_heads": 2, "vocab_size": 300, "rms_norm_eps": 1e-5, "max_position_embeddings": 512, "eos_token_id": [2, 3],
	 "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(conf), 0o644)
	got, err := LoadWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Cfg.Rope != cfg.Rope || got.Cfg.EOS != 2 || !got.Cfg.QKVBias || got.Cfg.HeadDim != 16 {
		t.Fatalf("config %+v, want %+v", got.Cfg, cfg)
	}
	a, _ := NewCPU(w, 4, 8, 0)
	b, _ := NewCPU(got, 4, 8, 0)
	p := prompt(10, 6, 300)
	ta, _ := generate(t, a, p, 5, seqTable(8))
	tb, _ := generate(t, b, p, 5, seqTable(8))
	for i := range ta {
		if ta[i] != tb[i] {
			t.Fatalf("loaded model differs: %v vs %v", ta, tb)
		}
	}
}

func TestStepRejectsBadInput(t *testing.T) {
	e := tinyCPU(t, "tiny", 4)
	next := make([]int32, 1)
	for _, s := range []SeqStep{
		{Tokens: []int32{1, 2}, BlockTable: nil},
		{Tokens: []int32{9999}, BlockTable: []int32{0}},
		{Tokens: []int32{1}, BlockTable: []int32{7}},
		{Tokens: nil, BlockTable: []int32{0}},
	} {
		if err := e.Step([]SeqStep{s}, next); err == nil {
			t.Errorf("accepted %+v", s)
		}
	}
}

func FuzzParseSafetensors(f *testing.F) {
	p := filepath.Join(f.TempDir(), "s.safetensors")
	writeSafetensors(f, p, "BF16", map[string]*Tensor{"a": {Shape: []int{3}, Data: []float32{1, 2, 3}}})
	seed, _ := os.ReadFile(p)
	f.Add(seed)
	// A shape whose byte size overflows to 0 must be refused, not allocated.
	huge := []byte(`{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}`)
	f.Add(append(binary.LittleEndian.AppendUint64(nil, uint64(len(huge))), huge...))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := ParseSafetensors(data, "fuzz")
		if err != nil {
			return
		}
		for name, tt := range ts {
			if len(tt.Data) != tt.Numel() {
				t.Fatalf("%s: %d values for shape %v", name, len(tt.Data), tt.Shape)
			}
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}`))
	f.Add([]byte(`{"model_type": "qwen2", "hidden_size": 96, "intermediate_size": 200, "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 300, "eos_token_id": [2, 3], "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "fuzz")
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		for _, f := range c.InvFreq() {
			if math.IsNaN(f) || f < 0 {
				t.Fatalf("inverse frequency %v", f)
			}
		}
	})
}

// matmul's four-row kernel sums each output in the one-row loop's order:
// the same bits for every row, remainder rows included.
func TestMatmulRowsAgreeToTheBit(t *testing.T) {
	T, I, O := 7, 37, 11
	rng := rand.New(rand.NewPCG(5, 6))
	x, W, b := make([]float32, T*I), make([]float32, O*I), make([]float32, O)
	for _, v := range [][]float32{x, W, b} {
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
	}
	out := make([]float32, T*O)
	matmul(out, x, W, b, T, I, O)
	for r := 0; r < T; r++ {
		for o := 0; o < O; o++ {
			if want := dot(x[r*I:(r+1)*I], W[o*I:(o+1)*I]) + b[o]; out[r*O+o] != want {
				t.Fatalf("row %d output %d: %v, one row at a time %v", r, o, out[r*O+o], want)
			}
		}
	}
}

// BenchmarkMatmul is a bge-base MLP product over 256 tokens (SetBytes
// counts FLOPs, so MB/s reads as MFLOP/s).
func BenchmarkMatmul(b *testing.B) {
	T, I, O := 256, 768, 3072
	x, W, bias, out := make([]float32, T*I), make([]float32, O*I), make([]float32, O), make([]float32, T*O)
	for i := range x {
		x[i] = float32(i%7) * 0.1
	}
	for i := range W {
		W[i] = float32(i%5) * 0.01
	}
	b.SetBytes(int64(2 * T * I * O))
	for b.Loop() {
		matmul(out, x, W, bias, T, I, O)
	}
}
