package cost

import "fmt"

// Validate checks a roofline read from a file the way its presets hold:
// a model of positive sizes whose heads divide evenly, a GPU of positive
// rates, efficiencies that are fractions of peak, fixed costs in seconds
// >= 0, and a tensor-parallel degree the heads divide by. A field left out
// of a hand-written file is zero, and a zero efficiency prices every step
// at infinity: the run would report nothing and exit 0. The error names
// the field by its JSON path under the roofline.
func (r *Roofline) Validate() error { return r.check("") }

// check is Validate with the fields' paths under prefix.
func (r *Roofline) check(prefix string) error {
	a, g, e := &r.Arch, &r.GPU, &r.GPU.Eff
	for _, f := range []struct {
		name string
		v    int
	}{{"model.layers", a.Layers}, {"model.hidden", a.Hidden}, {"model.heads", a.Heads}, {"model.kv_heads", a.KVHeads},
		{"model.intermediate", a.Intermediate}, {"model.vocab", a.Vocab}, {"model.dtype_bytes", a.DtypeBytes}} {
		if f.v < 1 {
			return fmt.Errorf("field %q: %d, want a size >= 1", prefix+f.name, f.v)
		}
	}
	switch {
	case a.Hidden%a.Heads != 0:
		return fmt.Errorf("field %q: %d heads do not divide hidden size %d", prefix+"model.heads", a.Heads, a.Hidden)
	case a.Heads%a.KVHeads != 0:
		return fmt.Errorf("field %q: %d KV heads do not divide %d heads", prefix+"model.kv_heads", a.KVHeads, a.Heads)
	case a.DtypeBytes > 8:
		return fmt.Errorf("field %q: %d, want 1 to 8", prefix+"model.dtype_bytes", a.DtypeBytes)
	case a.MaxModelLen < 0:
		return fmt.Errorf("field %q: %d, want >= 0 (0: the engine's)", prefix+"model.max_model_len", a.MaxModelLen)
	case !a.splitsOver(r.TP):
		return fmt.Errorf("field %q: %d, want a degree >= 1 that divides the %d heads", prefix+"tensor_parallel", r.TP, a.Heads)
	}
	for _, f := range []struct {
		name   string
		v      float64
		zeroOK bool
	}{{"gpu.peak_flops", g.PeakFLOPS, false}, {"gpu.mem_bw", g.MemBW, false}, {"gpu.mem_bytes", g.MemBytes, false},
		{"gpu.link_bw", g.LinkBW, r.TP == 1}} {
		if !(f.v >= 1 && f.v <= 1e30 || f.v == 0 && f.zeroOK) {
			return fmt.Errorf("field %q: %v, want a rate from 1 to 1e30 (per second, or bytes)", prefix+f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"gemm_flop", e.GemmFLOP}, {"gemm_bw", e.GemmBW}, {"attn_flop", e.AttnFLOP}, {"attn_bw", e.AttnBW}, {"elem_bw", e.ElemBW}} {
		if !(f.v >= 1e-4 && f.v <= 1) {
			return fmt.Errorf("field %q: %v, want the fraction of peak achieved, from 0.0001 to 1", prefix+"gpu.efficiency."+f.name, f.v)
		}
	}
	pre := prefix + "gpu.efficiency."
	if h := e.GemmHalfShard; !(h >= 0 && h <= 1e9) {
		return fmt.Errorf("field %q: %v, want a shard size from 0 (ideal) to 1e9", pre+"gemm_half_shard", h)
	}
	return seconds([]field{{pre + "gemm_launch_s", e.GemmLaunch}, {pre + "attn_launch_s", e.AttnLaunch},
		{pre + "elem_launch_s", e.ElemLaunch}, {pre + "step_overhead_s", e.StepOverhead}, {pre + "comm_latency_s", e.CommLatency},
		{pre + "comm_step_latency_s", e.CommStepLatency}})
}

// field is a number read from a file, named by its JSON path.
type field struct {
	name string
	v    float64
}

// maxSeconds bounds a cost read from a file, per step, token or call: an
// hour is far past any real one, and below it no step's price overflows.
const maxSeconds = 3600

// seconds checks costs in seconds: each from 0 to maxSeconds (NaN is
// neither); the first that is not is the error.
func seconds(fields []field) error {
	for _, f := range fields {
		if !(f.v >= 0 && f.v <= maxSeconds) {
			return fmt.Errorf("field %q: %v, want seconds from 0 to %d", f.name, f.v, maxSeconds)
		}
	}
	return nil
}
