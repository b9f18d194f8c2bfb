//go:build cuda

package gpu

import (
	"math"
	"testing"
)

// relErr is max |a-b| / max |b| over two logit vectors.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i]-b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / math.Max(den, 1e-9)
}

// cudaGenerate prefills prompt, then decodes n greedy tokens; it returns the
// tokens and the logits after the prompt.
func cudaGenerate(t *testing.T, e *CUDA, prompt []int32, n int, table []int32) ([]int32, []float32) {
	t.Helper()
	l, err := e.Logits([]SeqStep{{Tokens: prompt, BlockTable: table, Sample: true}})
	if err != nil {
		t.Fatal(err)
	}
	best := 0
	for i, v := range l[0] {
		if v > l[0][best] {
			best = i
		}
	}
	out := []int32{int32(best)}
	next := make([]int32, 1)
	for pos := len(prompt); len(out) < n; pos++ {
		if err := e.Step([]SeqStep{{Tokens: out[len(out)-1:], Pos: pos, BlockTable: table, Sample: true}}, next); err != nil {
			t.Fatal(err)
		}
		out = append(out, next[0])
	}
	return out, l[0]
}

// The CUDA executor agrees with the CPU one on tiny random models within
// bf16 rounding, through a prefill and a mixed batch.
func TestCUDAMatchesCPU(t *testing.T) {
	for _, preset := range []string{"tiny", "tiny-gqa", "small"} {
		cfg, _ := Preset(preset)
		w, _ := RandomWeights(cfg, 11)
		cpu, _ := NewCPU(w, 4, 64, 0)
		gpu, err := NewCUDA(w, 4, 64)
		if err != nil {
			t.Fatal(err)
		}
		p := prompt(23, 5, cfg.Vocab)
		want, _ := cpu.Forward([]SeqStep{{Tokens: p, BlockTable: seqTable(8), Sample: true}}, false)
		got, err := gpu.Logits([]SeqStep{{Tokens: p, BlockTable: seqTable(8), Sample: true}})
		if err != nil {
			t.Fatal(err)
		}
		if e := relErr(got[0], want[0]); e > 2e-2 {
			t.Errorf("%s prefill: relative error %.3g > 2e-2", preset, e)
		}
		// a decode beside a fresh prefill in one step
		q := prompt(9, 6, cfg.Vocab)
		steps := []SeqStep{{Tokens: []int32{p[3]}, Pos: len(p), BlockTable: seqTable(8), Sample: true}, {Tokens: q, BlockTable: []int32{40, 41, 42}, Sample: true}}
		want, _ = cpu.Forward(steps, false)
		got, err = gpu.Logits(steps)
		if err != nil {
			t.Fatal(err)
		}
		for i := range steps {
			if e := relErr(got[i], want[i]); e > 2e-2 {
				t.Errorf("%s mixed step, sequence %d: relative error %.3g > 2e-2", preset, i, e)
			}
		}
		gpu.Close()
	}
}

// The golden tiny models through the CUDA executor: logits within bf16
// error of the reference, and the greedy tokens until bf16 rounding first
// flips an argmax.
func TestCUDAGolden(t *testing.T) {
	for _, name := range goldenDecoders {
		w, g := loadDecoderGolden(t, name)
		for i, p := range g.Prompts {
			e, err := NewCUDA(w, 16, 8)
			if err != nil {
				t.Fatal(err)
			}
			toks, logits := cudaGenerate(t, e, p, 16, seqTable(8))
			scale := 0.0
			for _, v := range g.First8[i] {
				scale = math.Max(scale, math.Abs(v))
			}
			for j, want := range g.First8[i] {
				if math.Abs(float64(logits[j])-want) > 3e-2*scale {
					t.Errorf("%s prompt %d logit %d: %v, reference %v", name, i, j, logits[j], want)
				}
			}
			if toks[0] != g.Greedy[i][0] {
				t.Errorf("%s prompt %d: first greedy token %d, reference %d", name, i, toks[0], g.Greedy[i][0])
			}
			same := 0
			for same < len(toks) && toks[same] == g.Greedy[i][same] {
				same++
			}
			t.Logf("%s prompt %d: %d of 16 greedy tokens equal the reference", name, i, same)
			e.Close()
		}
	}
}

// benchStep times one scheduler step shape on llama-3.1-8b with random
// bf16 weights: batch sequences with ctx cached tokens decoding, or one
// prefill of prefill tokens.
func benchStep(b *testing.B, batch, ctx, prefill int) {
	cfg, _ := Preset("llama-3.1-8b")
	const bs = 16
	per := (ctx + 64 + bs) / bs
	need := max(batch*per, (prefill+bs)/bs)
	e, err := NewCUDARandom(cfg, bs, need, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	next := make([]int32, max(batch, 1))
	if prefill > 0 {
		steps := []SeqStep{{Tokens: prompt(prefill, 1, cfg.Vocab), BlockTable: seqTable((prefill + bs) / bs), Sample: true}}
		e.Step(steps, next) // warm up
		b.ResetTimer()
		for b.Loop() {
			if err := e.Step(steps, next); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/step")
		return
	}
	seqs := make([]SeqStep, batch)
	for i := range seqs {
		table := make([]int32, per)
		for j := range table {
			table[j] = int32(i*per + j)
		}
		// fill the cache in chunks of up to 2048 tokens
		for lo := 0; lo < ctx; lo += 2048 {
			hi := min(lo+2048, ctx)
			if err := e.Step([]SeqStep{{Tokens: prompt(hi-lo, uint64(i), cfg.Vocab), Pos: lo, BlockTable: table, Sample: hi == ctx}}, next[:1]); err != nil {
				b.Fatal(err)
			}
		}
		seqs[i] = SeqStep{Tokens: []int32{1}, Pos: ctx, BlockTable: table, Sample: true}
	}
	e.Step(seqs, next)
	b.ResetTimer()
	for b.Loop() {
		// decode at the same position each time: same work, no growth
		if err := e.Step(seqs, next); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/step")
}

func BenchmarkCUDADecodeB1Ctx512(b *testing.B)  { benchStep(b, 1, 512, 0) }
func BenchmarkCUDADecodeB64Ctx512(b *testing.B) { benchStep(b, 64, 512, 0) }
func BenchmarkCUDAPrefill2048(b *testing.B)     { benchStep(b, 0, 0, 2048) }

// The predictor network on the GPU agrees with the CPU one within bf16
// rounding, padding included, and reproduces the ELIS golden checkpoint.
func TestCUDAPredictorMatchesCPU(t *testing.T) {
	cfg := BertConfig{Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, Vocab: 1000, MaxPositions: 128, TypeVocab: 2, LNEps: 1e-12}
	host := RandomPredictor(cfg, []int{64, 64, 1}, 3)
	dev, err := NewCUDAPredictor(host)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ids := [][]int32{{101, 5, 9, 33, 102, 0, 0}, {101, 7, 8, 9, 10, 11, 102}}
	mask := [][]int32{{1, 1, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 1, 1}}
	want, _ := host.Predict(ids, mask)
	got, err := dev.Predict(ids, mask)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 2e-2*math.Max(1, math.Abs(float64(want[i]))) {
			t.Errorf("input %d: GPU %v, CPU %v", i, got[i], want[i])
		}
	}
	p, g := loadELISGolden(t)
	gd, err := NewCUDAPredictor(p)
	if err != nil {
		t.Fatal(err)
	}
	defer gd.Close()
	out, err := gd.Predict(g.IDs, g.Mask)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range g.Preds {
		if math.Abs(float64(out[i])-w) > 2e-2*math.Max(1, math.Abs(w)) {
			t.Errorf("golden text %d: GPU %v, reference %v", i, out[i], w)
		}
	}
}

// BenchmarkCUDABgeBase128 times the ELIS predictor (bge-base shape, the
// 8-layer head) on one 128-token input.
func BenchmarkCUDABgeBase128(b *testing.B) {
	host := RandomPredictor(BgeBase, ELISHead, 1)
	e, err := NewCUDAPredictor(host)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ids := [][]int32{prompt(128, 2, BgeBase.Vocab)}
	e.Predict(ids, nil)
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Predict(ids, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/step")
}
