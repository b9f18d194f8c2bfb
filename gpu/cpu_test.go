package gpu

import (
	"math"
	"testing"
)

// generate prefills prompt, then decodes n greedy tokens, one step each,
// in blocks given by table.
func generate(t *testing.T, e *CPU, prompt []int32, n int, table []int32) ([]int32, [][]float32) {
	t.Helper()
	logits, err := e.Forward([]SeqStep{{Tokens: prompt, Pos: 0, BlockTable: table, Sample: true}}, true)
	if err != nil {
		t.Fatal(err)
	}
	V := e.w.Cfg.Vocab
	last := logits[0][len(logits[0])-V:]
	out := []int32{e.sample(last)}
	pos := len(prompt)
	for len(out) < n {
		next := make([]int32, 1)
		if err := e.Step([]SeqStep{{Tokens: out[len(out)-1:], Pos: pos, BlockTable: table, Sample: true}}, next); err != nil {
			t.Fatal(err)
		}
		out = append(out, next[0])
		pos++
	}
	return out, logits
}

func seqTable(n int) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(i)
	}
	return t
}

// TestGoldenDecoders checks the CPU decoder against the outputs Hugging
// Face transformers computed for the tiny models in ../shared/golden.
func TestGoldenDecoders(t *testing.T) {
	for _, name := range goldenDecoders {
		t.Run(name, func(t *testing.T) {
			w, g := loadDecoderGolden(t, name)
			for i, prompt := range g.Prompts {
				e, _ := NewCPU(w, 16, 8, 0)
				toks, logits := generate(t, e, prompt, 16, seqTable(8))
				V := w.Cfg.Vocab
				last := logits[0][len(logits[0])-V:]
				for j, want := range g.First8[i] {
					if math.Abs(float64(last[j])-want) > 1e-3 {
						t.Errorf("prompt %d logit %d: %v, want %v", i, j, last[j], want)
					}
				}
				sum := 0.0
				for _, v := range logits[0] {
					sum += float64(v)
				}
				if math.Abs(sum-g.Sum[i]) > 1e-3*math.Max(1, math.Abs(g.Sum[i])) {
					t.Errorf("prompt %d: logits sum %v, want %v", i, sum, g.Sum[i])
				}
				for j := range g.Greedy[i] {
					if toks[j] != g.Greedy[i][j] {
						t.Errorf("prompt %d: greedy %v, want %v", i, toks, g.Greedy[i])
						break
					}
				}
			}
		})
	}
}
