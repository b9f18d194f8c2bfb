package replay

import (
	"testing"

	"github.com/elis-sim/elis-sim/gpu"
)

// budgetWatch is an executor that records the largest step it was given.
type budgetWatch struct {
	gpu.Executor
	most int
}

func (b *budgetWatch) Step(seqs []gpu.SeqStep, next []int32) error {
	n := 0
	for _, s := range seqs {
		n += len(s.Tokens)
	}
	b.most = max(b.most, n)
	return b.Executor.Step(seqs, next)
}

// A profile never runs a step over the engine's token budget: caches are
// filled in chunks, and shapes over the budget are skipped, as the engine
// would never run them.
func TestProfileRespectsBudget(t *testing.T) {
	mc, _ := gpu.Preset("tiny")
	w, err := gpu.RandomWeights(mc, 1)
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := gpu.NewCPU(w, 4, 256, 0)
	if err != nil {
		t.Fatal(err)
	}
	exec := &budgetWatch{Executor: cpu}
	sh := Shapes{Prefill: []int{8, 16, 64}, Batches: []int{1, 4, 40}, Contexts: []int{100}, Reps: 1, Budget: 32}
	steps, err := Profile(exec, mc.Vocab, sh)
	if err != nil {
		t.Fatal(err)
	}
	if exec.most > sh.Budget {
		t.Fatalf("a profile step carried %d tokens, over the budget of %d", exec.most, sh.Budget)
	}
	for _, s := range steps {
		if s.PrefillTokens+s.DecodeSeqs > sh.Budget {
			t.Fatalf("profiled a shape over the budget: %+v", s)
		}
	}
	if len(steps) == 0 {
		t.Fatal("no shape profiled")
	}
}
