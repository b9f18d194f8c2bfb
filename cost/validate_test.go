package cost

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/internal/tempfile"
	"github.com/elis-sim/elis-sim/policies"
)

// Every preset, on every stack, is a roofline Validate accepts: what
// "cost show" prints loads back.
func TestPresetsValidate(t *testing.T) {
	for _, model := range ArchNames() {
		for _, gpu := range GPUNames() {
			for _, stack := range Stacks {
				r, err := NewRooflineStack(model, gpu, stack, 1)
				if err != nil {
					continue // a pair the stack has no preset for
				}
				if err := r.Validate(); err != nil {
					t.Errorf("%s on %s (%s): %v", model, gpu, stack, err)
				}
			}
		}
	}
}

// A hand-written roofline that leaves its efficiencies out priced every
// step at infinity (the run reported nothing and exited 0): refused, with
// the field named.
func TestLoadCostFileRefusesWhatCannotPrice(t *testing.T) {
	r, err := NewRoofline("llama-2-13b", "a100-80g", 1)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		edit func(f *CostFile)
		want string
	}{
		{func(f *CostFile) { f.Roofline.GPU.Eff = Eff{} }, `"roofline.gpu.efficiency.gemm_flop": 0, want the fraction of peak`},
		{func(f *CostFile) { f.Roofline.GPU.Eff.AttnBW = 1.5 }, `"roofline.gpu.efficiency.attn_bw": 1.5`},
		{func(f *CostFile) { f.Roofline.GPU.Eff.StepOverhead = -1e-3 }, `"roofline.gpu.efficiency.step_overhead_s": -0.001`},
		{func(f *CostFile) { f.Roofline.Arch.Vocab = -5 }, `"roofline.model.vocab": -5`},
		{func(f *CostFile) { f.Roofline.Arch.KVHeads = 7 }, `"roofline.model.kv_heads": 7 KV heads do not divide 40 heads`},
		{func(f *CostFile) { f.Roofline.TP = 3 }, `"roofline.tensor_parallel": 3`},
		{func(f *CostFile) { f.Roofline.GPU.MemBytes = 0 }, `"roofline.gpu.mem_bytes": 0`},
		{func(f *CostFile) { f.Overheads = &Overheads{PerRequest: -1} }, `"overheads.per_request_s": -1`},
	}
	dir := t.TempDir()
	for i, c := range cases {
		cp := *r
		f := CostFile{Kind: "roofline", Roofline: &cp}
		c.edit(&f)
		data, _ := json.Marshal(f)
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadCostFile(path)
		if c.want == "" {
			if err != nil {
				t.Errorf("case %d: %v", i, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("case %d: %v, want an error naming %s and %s", i, err, path, c.want)
		}
	}
}

// FuzzLoadCostFile: whatever cost file loads prices steps of every kind at
// a finite number of seconds >= 0, which the simulator's clock needs.
func FuzzLoadCostFile(f *testing.F) {
	r, _ := NewRoofline("llama-3.1-8b", "h200", 1)
	for _, cf := range []CostFile{
		{Kind: "roofline", Roofline: r},
		{Kind: "linear", Linear: &Linear{Base: 5e-3, PerPrefillToken: 1e-5, PerDecodeSeq: 1e-4}, Overheads: &Overheads{PerRequest: 0.01}},
	} {
		data, _ := json.Marshal(cf)
		f.Add(data)
	}
	bare, _ := json.Marshal(r)
	f.Add(bare)
	f.Add([]byte(`{"kind":"linear","linear":{"per_prefill_token_s":1e308}}`)) // finite, but not times 2048
	f.Add([]byte(`{"kind":"roofline","roofline":{"model":{"layers":1,"hidden":8,"heads":1,"kv_heads":1,"intermediate":8,"vocab":8},` +
		`"gpu":{"peak_flops":1e-300,"mem_bw":1,"mem_bytes":1,"efficiency":{"gemm_flop":1,"gemm_bw":1,"attn_flop":1,"attn_bw":1,"elem_bw":1}}}}`))
	steps := []policies.Batch{
		{},
		{DecodeSeqs: 1, DecodeContext: 512},
		{DecodeSeqs: 256, DecodeContext: 256 * 4096, PrefillTokens: 2048, PrefillContext: 1 << 20, PrefillAttn: 4e6},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := tempfile.Write(t, "cost.json", data)
		cf, err := LoadCostFile(path)
		if err != nil {
			return
		}
		for i := range steps {
			if s := cf.Coster().StepTime(&steps[i]); math.IsNaN(s) || math.IsInf(s, 0) || s < 0 {
				t.Fatalf("step %+v priced at %v s by %s", steps[i], s, data)
			}
		}
	})
}
