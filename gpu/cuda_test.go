//go:build cuda

package gpu

import (
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"gorgonia.org/cu"
)

// First contact: the device answers, NVRTC compiles for its architecture,
// cuBLAS runs, and models share the device's primary context: opening and
// closing executors and predictors many times leaves no memory behind.
func TestCUDAContext(t *testing.T) {
	dev, err := cu.GetDevice(0)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := dev.Name()
	major, minor, _ := dev.ComputeCapability()
	t.Logf("device 0: %s, compute capability %d.%d", name, major, minor)
	cfg, _ := Preset("tiny-gqa")
	w, _ := RandomWeights(cfg, 1)
	p := RandomPredictor(BertConfig{Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, Vocab: 1000, MaxPositions: 128, TypeVocab: 2, LNEps: 1e-12}, []int{64, 1}, 1)
	free := func() int64 {
		var f int64
		d, _ := newDeviceThread(0)
		d.do(func() error { f, _, err = cu.MemInfo(); return err })
		d.stop()
		return f
	}
	// Warm up: the first executor loads cuBLAS, whose handles keep a pool.
	for i := 0; i < 2; i++ {
		e, err := NewCUDA(w, 4, 64)
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
	}
	before := free()
	for i := 0; i < 20; i++ {
		e, err := NewCUDA(w, 4, 64)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := NewCUDAPredictor(p)
		if err != nil {
			t.Fatal(err)
		}
		next := make([]int32, 1)
		if err := e.Step([]SeqStep{{Tokens: []int32{1, 2, 3}, BlockTable: seqTable(1), Sample: true}}, next); err != nil {
			t.Fatal(err)
		}
		if err := e.Step(nil, nil); err != nil { // an empty step computes nothing
			t.Fatal(err)
		}
		if _, err := pr.Predict([][]int32{{101, 7, 102}}, nil); err != nil {
			t.Fatal(err)
		}
		e.Close()
		e.Close() // twice is harmless
		pr.Close()
	}
	after := free()
	t.Logf("free device memory before %d MiB, after 20 open/close rounds %d MiB", before>>20, after>>20)
	if before-after > 64<<20 {
		t.Errorf("20 executors and predictors leaked %d MiB", (before-after)>>20)
	}
}

// exactness counts the cases of a test that matched their emulation to
// tolExact, and fails the test when fewer than exactShare did.
type exactness struct{ exact, cases int }

func (x *exactness) add(e float64) {
	x.cases++
	if e <= tolExact {
		x.exact++
	}
}

func (x *exactness) check(t *testing.T) {
	t.Logf("%d of %d cases match the emulation to %g", x.exact, x.cases, tolExact)
	if float64(x.exact) < exactShare*float64(x.cases) {
		t.Errorf("only %d of %d cases match the emulation to %g: a rounding is made where the emulation makes none, or a kernel is wrong", x.exact, x.cases, tolExact)
	}
}

// The CUDA executor computes what the bf16-emulating CPU executor does,
// through a prefill, a mixed step (a decode beside a fresh prefill and a
// chunk continuing a sequence) and greedy decodes, on random models of
// each family shape (GQA, QKV bias): each case closer to the emulation
// than bf16 itself is to float32 on that input, a quarter of them exactly.
func TestCUDAMatchesBF16Reference(t *testing.T) {
	var x exactness
	for _, preset := range []string{"tiny", "tiny-gqa", "small"} {
		for _, bias := range []bool{false, true} {
			cfg, _ := Preset(preset)
			cfg.QKVBias = bias
			w, _ := RandomWeights(cfg, 11)
			ref, _ := NewCPUEmulating(w, BF16, 4, 256)
			f32, _ := NewCPU(w, 4, 256, 0)
			gpu, err := NewCUDA(w, 4, 256)
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s bias=%v", preset, bias)
			check := func(what string, steps []SeqStep) {
				want, err := ref.Forward(steps, false)
				if err != nil {
					t.Fatal(err)
				}
				exact, _ := f32.Forward(steps, false)
				got, err := gpu.Logits(steps)
				if err != nil {
					t.Fatal(err)
				}
				for i := range steps {
					if !steps[i].Sample {
						continue
					}
					e, cost := maxRel(got[i], f64(want[i])), maxRel(want[i], f64(exact[i]))
					x.add(e)
					t.Logf("%s %s seq %d: %.2e from the bf16 emulation (bf16 costs %.2e here)", name, what, i, e, cost)
					if e > cost || math.IsNaN(e) {
						t.Errorf("%s %s seq %d: %.3g from the bf16 emulation, more than bf16's own cost %.3g", name, what, i, e, cost)
					}
				}
			}
			p := prompt(23, 5, cfg.Vocab)
			check("prefill", []SeqStep{{Tokens: p, BlockTable: seqTable(8), Sample: true}})
			q, r := prompt(9, 6, cfg.Vocab), prompt(30, 7, cfg.Vocab)
			check("mixed", []SeqStep{{Tokens: []int32{p[3]}, Pos: len(p), BlockTable: seqTable(8), Sample: true},
				{Tokens: q, BlockTable: []int32{40, 41, 42}, Sample: true},
				{Tokens: r[:13], BlockTable: []int32{50, 51, 52, 53, 54, 55, 56, 57}}})
			check("chunk", []SeqStep{{Tokens: r[13:], Pos: 13, BlockTable: []int32{50, 51, 52, 53, 54, 55, 56, 57}, Sample: true}})
			// a long context: several attention chunks, then a decode on it
			long := prompt(600, 8, cfg.Vocab)
			check("long", []SeqStep{{Tokens: long, BlockTable: seqRange(100, 251), Sample: true}})
			check("long decode", []SeqStep{{Tokens: []int32{long[7]}, Pos: 600, BlockTable: seqRange(100, 251), Sample: true}})
			gpu.Close()
		}
	}
	x.check(t)
}

func seqRange(lo, hi int) []int32 {
	t := make([]int32, 0, hi-lo)
	for b := lo; b < hi; b++ {
		t = append(t, int32(b))
	}
	return t
}

// The golden tiny models: logits closer to the bf16 emulation than bf16
// costs, within the derived bound of the float32 reference, and greedy
// tokens equal to the emulation's wherever the logits match exactly.
func TestCUDAGolden(t *testing.T) {
	var x exactness
	for _, name := range goldenDecoders {
		w, g := loadDecoderGolden(t, name)
		for i, p := range g.Prompts {
			e, err := NewCUDA(w, 16, 8)
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := NewCPUEmulating(w, BF16, 16, 8)
			want, _ := ref.Forward([]SeqStep{{Tokens: p, BlockTable: seqTable(8), Sample: true}}, false)
			toks, logits := cudaGenerate(t, e, p, 16, seqTable(8))
			et, eg := maxRel(logits, f64(want[0])), maxRel(logits[:8], g.First8[i])
			x.add(et)
			t.Logf("%s prompt %d: %.2e from the bf16 emulation, %.4f from float32 (bound %.4f)", name, i, et, eg, 2*costBF16Decoder)
			if et > costBF16Decoder {
				t.Errorf("%s prompt %d: %.3g from the bf16 emulation > %g", name, i, et, costBF16Decoder)
			}
			if eg > 2*costBF16Decoder {
				t.Errorf("%s prompt %d: %.3g from float32 > %g", name, i, eg, 2*costBF16Decoder)
			}
			wantToks, _ := generate(t, ref, p, 16, seqTable(8))
			same := 0
			for same < len(toks) && toks[same] == wantToks[same] {
				same++
			}
			ref2 := 0
			for ref2 < len(toks) && toks[ref2] == g.Greedy[i][ref2] {
				ref2++
			}
			t.Logf("%s prompt %d: %d of 16 greedy tokens equal the emulation's, %d the float32 reference's", name, i, same, ref2)
			if et <= tolExact && same < 16 {
				t.Errorf("%s prompt %d: greedy tokens %v, emulation %v", name, i, toks, wantToks)
			}
			e.Close()
		}
	}
	x.check(t)
}

// Decode steps run as captured CUDA graphs, and a graph computes exactly
// what the same launches made directly compute.
func TestCUDAGraphs(t *testing.T) {
	cfg, _ := Preset("small")
	w, _ := RandomWeights(cfg, 5)
	e, err := NewCUDA(w, 4, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ref, _ := NewCPUEmulating(w, BF16, 4, 256)
	p, q := prompt(40, 3, cfg.Vocab), prompt(70, 4, cfg.Vocab)
	prefill := []SeqStep{{Tokens: p, BlockTable: seqRange(0, 20), Sample: true}, {Tokens: q, BlockTable: seqRange(20, 40), Sample: true}}
	if _, err := e.Logits(prefill); err != nil {
		t.Fatal(err)
	}
	ref.Forward(prefill, false)
	dec := []SeqStep{{Tokens: []int32{5}, Pos: 40, BlockTable: seqRange(0, 20), Sample: true},
		{Tokens: []int32{9}, Pos: 70, BlockTable: seqRange(20, 40), Sample: true}}
	want, _ := ref.Forward(dec, false)
	var runs [][][]float32
	for range 3 { // captured, then replayed twice
		got, err := e.Logits(dec)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, got)
	}
	// ProfileKernels launches directly.
	if _, err := e.ProfileKernels(func() error {
		got, err := e.Logits(dec)
		runs = append(runs, got)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if e.graphErr != nil || len(e.graphs) == 0 {
		t.Fatalf("decode steps not captured (%d graphs): %v", len(e.graphs), e.graphErr)
	}
	for r := 1; r < len(runs); r++ {
		for i := range dec {
			if !slices.Equal(runs[r][i], runs[0][i]) {
				t.Errorf("run %d sequence %d differs from the first (run 3 is direct launches): %.3g", r, i, maxRel(runs[r][i], f64(runs[0][i])))
			}
		}
	}
	for i := range dec {
		t.Logf("graph decode, sequence %d: %.2e from the bf16 emulation", i, maxRel(runs[0][i], f64(want[i])))
	}
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

// The predictor network on the GPU, in fp16 (the default) and bf16,
// matches its CPU emulation (padding included) closer than the format
// costs, and the ELIS golden checkpoint within the derived bound.
func TestCUDAPredictor(t *testing.T) {
	cfg := BertConfig{Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, Vocab: 1000, MaxPositions: 128, TypeVocab: 2, LNEps: 1e-12}
	host := RandomPredictor(cfg, []int{64, 64, 1}, 3)
	ids := [][]int32{{101, 5, 9, 33, 102, 0, 0}, {101, 7, 8, 9, 10, 11, 102}}
	mask := [][]int32{{1, 1, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 1, 1}}
	exact, _ := host.Predict(ids, mask)
	gp, g := loadELISGolden(t)
	var x exactness
	for _, c := range []struct {
		prec Precision
		cost float64
	}{{FP16, costFP16Predictor}, {BF16, costBF16Predictor}} {
		dev, err := NewCUDAPredictorOn(0, host, c.prec)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := host.Emulating(c.prec).Predict(ids, mask)
		got, err := dev.Predict(ids, mask)
		if err != nil {
			t.Fatal(err)
		}
		e, cost := predRel(got, f64(want)), predRel(want, f64(exact))
		x.add(e)
		t.Logf("random predictor in %s: %.2e from the emulation (%s costs %.2e here)", c.prec, e, c.prec, cost)
		if e > max(cost, tolExact) || math.IsNaN(e) {
			t.Errorf("random predictor in %s: %.3g from the emulation, more than %s's own cost %.3g", c.prec, e, c.prec, cost)
		}
		dev.Close()
		gd, err := NewCUDAPredictorOn(0, gp, c.prec)
		if err != nil {
			t.Fatal(err)
		}
		out, err := gd.Predict(g.IDs, g.Mask)
		if err != nil {
			t.Fatal(err)
		}
		emu, _ := gp.Emulating(c.prec).Predict(g.IDs, g.Mask)
		et, eg := predRel(out, f64(emu)), predRel(out, g.Preds)
		x.add(et)
		t.Logf("ELIS golden in %s: %.2e from the emulation, %.4f from float32 (bound %.4f)", c.prec, et, eg, 2*c.cost)
		if et > c.cost {
			t.Errorf("ELIS golden in %s: %.3g from the emulation > %g", c.prec, et, c.cost)
		}
		if eg > 2*c.cost {
			t.Errorf("ELIS golden in %s: %.3g from float32 > %g", c.prec, eg, 2*c.cost)
		}
		gd.Close()
	}
	x.check(t)
}

// benchStep times one scheduler step shape on llama-3.1-8b with random
// bf16 weights: batch sequences with ctx cached tokens decoding, or one
// prefill of prefill tokens. It returns the executor and the step for a
// kernel breakdown.
func setupStep(tb testing.TB, batch, ctx, prefill int) (*CUDA, []SeqStep) {
	cfg, _ := Preset("llama-3.1-8b")
	const bs = 16
	per := (ctx + 64 + bs) / bs
	need := max(batch*per, (prefill+bs)/bs)
	e, err := NewCUDARandom(cfg, bs, need, 1)
	if err != nil {
		tb.Fatal(err)
	}
	next := make([]int32, max(batch, 1))
	if prefill > 0 {
		return e, []SeqStep{{Tokens: prompt(prefill, 1, cfg.Vocab), BlockTable: seqTable((prefill + bs) / bs), Sample: true}}
	}
	seqs := make([]SeqStep, batch)
	for i := range seqs {
		table := make([]int32, per)
		for j := range table {
			table[j] = int32(i*per + j)
		}
		// fill the cache in chunks of up to 2048 tokens (a step budget)
		for lo := 0; lo < ctx; lo += 2048 {
			hi := min(lo+2048, ctx)
			if err := e.Step([]SeqStep{{Tokens: prompt(hi-lo, uint64(i), cfg.Vocab), Pos: lo, BlockTable: table, Sample: hi == ctx}}, next[:1]); err != nil {
				tb.Fatal(err)
			}
		}
		seqs[i] = SeqStep{Tokens: []int32{1}, Pos: ctx, BlockTable: table, Sample: true}
	}
	return e, seqs
}

func benchStep(b *testing.B, batch, ctx, prefill int) {
	e, steps := setupStep(b, batch, ctx, prefill)
	defer e.Close()
	next := make([]int32, len(steps))
	e.Step(steps, next) // warm up
	b.ResetTimer()
	for b.Loop() {
		// the same work each time: decodes rewrite the same position
		if err := e.Step(steps, next); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/step")
}

func BenchmarkCUDADecodeB1Ctx512(b *testing.B)  { benchStep(b, 1, 512, 0) }
func BenchmarkCUDADecodeB64Ctx512(b *testing.B) { benchStep(b, 64, 512, 0) }
func BenchmarkCUDAPrefill2048(b *testing.B)     { benchStep(b, 0, 0, 2048) }

// BenchmarkCUDABgeBase128 times the ELIS predictor (bge-base shape, the
// 8-layer head, fp16) on one 128-token input.
func BenchmarkCUDABgeBase128(b *testing.B) {
	e, ids := bgeBase128(b)
	defer e.Close()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Predict(ids, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/step")
}

// TestCUDABreakdown prints where the device time of the timed step shapes
// goes, by kernel and product (each timed alone with events, so launch
// gaps are left out: compare the sum with the benchmark's wall time).
// It runs only when ELIS_GPU_BREAKDOWN is set: it needs an 8B model's
// memory.
func TestCUDABreakdown(t *testing.T) {
	if os.Getenv("ELIS_GPU_BREAKDOWN") == "" {
		t.Skip("set ELIS_GPU_BREAKDOWN=1 to profile the 8B step shapes")
	}
	for _, s := range []struct {
		name                string
		batch, ctx, prefill int
	}{{"decode b=1 ctx=512", 1, 512, 0}, {"decode b=64 ctx=512", 64, 512, 0}, {"prefill 2048", 0, 0, 2048}} {
		e, steps := setupStep(t, s.batch, s.ctx, s.prefill)
		next := make([]int32, len(steps))
		e.Step(steps, next)
		const reps = 5
		times, err := e.ProfileKernels(func() error {
			for range reps {
				if err := e.Step(steps, next); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		printBreakdown(s.name, times, reps)
		e.Close()
	}
	pr, ids := bgeBase128(t)
	defer pr.Close()
	times, err := pr.ProfileKernels(func() error { _, err := pr.Predict(ids, nil); return err })
	if err != nil {
		t.Fatal(err)
	}
	printBreakdown("bge-base 1x128", times, 1)
}

// bgeBase128 is the ELIS predictor of bge-base shape with random weights
// on GPU 0, warmed up on the 128-token input it returns.
func bgeBase128(tb testing.TB) (*CUDAPredictor, [][]int32) {
	e, err := NewCUDAPredictor(RandomPredictor(BgeBase, ELISHead, 1))
	if err != nil {
		tb.Fatal(err)
	}
	ids := [][]int32{prompt(128, 2, BgeBase.Vocab)}
	if _, err := e.Predict(ids, nil); err != nil {
		tb.Fatal(err)
	}
	return e, ids
}

// printBreakdown prints kernel times per step of reps profiled steps.
func printBreakdown(name string, times []KernelTime, reps int) {
	var total float64
	for _, k := range times {
		total += k.Ms
	}
	fmt.Printf("breakdown %s: %.3f ms of kernel time per step\n", name, total/float64(reps))
	for _, k := range times {
		fmt.Printf("  %-18s %5d calls/step %9.3f ms/step %5.1f%%\n", k.Name, k.Calls/reps, k.Ms/float64(reps), 100*k.Ms/total)
	}
}
