package cost

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Arch is a decoder's architecture: what the cost model needs to count
// FLOPs and bytes.
type Arch struct {
	Name         string `json:"name"`
	Layers       int    `json:"layers"`
	Hidden       int    `json:"hidden"`
	Heads        int    `json:"heads"`
	KVHeads      int    `json:"kv_heads"`
	Intermediate int    `json:"intermediate"`
	Vocab        int    `json:"vocab"`
	// Gated MLPs (SwiGLU: Llama) have three matrices, plain ones (OPT) two.
	Gated       bool `json:"gated"`
	DtypeBytes  int  `json:"dtype_bytes"`
	MaxModelLen int  `json:"max_model_len"`
}

// HeadDim is the size of one attention head.
func (a *Arch) HeadDim() int { return a.Hidden / a.Heads }

// splitsOver tells whether tensor parallelism of degree tp divides the
// model's heads, and its KV heads or their replicas.
func (a *Arch) splitsOver(tp int) bool {
	return tp >= 1 && a.Heads%tp == 0 && (a.KVHeads%tp == 0 || tp%a.KVHeads == 0)
}

// Params counts the weights, embeddings and LM head included.
func (a *Arch) Params() float64 {
	hd := a.HeadDim()
	attn := a.Hidden*(a.Heads+2*a.KVHeads)*hd + a.Heads*hd*a.Hidden
	mlp := 2 * a.Hidden * a.Intermediate
	if a.Gated {
		mlp = 3 * a.Hidden * a.Intermediate
	}
	return float64(a.Layers)*float64(attn+mlp) + 2*float64(a.Vocab)*float64(a.Hidden)
}

// WeightBytes is the memory the weights take.
func (a *Arch) WeightBytes() float64 { return a.Params() * float64(a.DtypeBytes) }

// KVBytesPerToken is the KV cache size of one token over all layers.
func (a *Arch) KVBytesPerToken() float64 {
	return float64(2 * a.Layers * a.KVHeads * a.HeadDim() * a.DtypeBytes)
}

// Archs are the model presets, from the models' Hugging Face configs.
var Archs = map[string]Arch{
	"llama-2-7b":   {Layers: 32, Hidden: 4096, Heads: 32, KVHeads: 32, Intermediate: 11008, Vocab: 32000, Gated: true, MaxModelLen: 4096},
	"llama-2-13b":  {Layers: 40, Hidden: 5120, Heads: 40, KVHeads: 40, Intermediate: 13824, Vocab: 32000, Gated: true, MaxModelLen: 4096},
	"vicuna-13b":   {Layers: 40, Hidden: 5120, Heads: 40, KVHeads: 40, Intermediate: 13824, Vocab: 32000, Gated: true, MaxModelLen: 4096},
	"opt-6.7b":     {Layers: 32, Hidden: 4096, Heads: 32, KVHeads: 32, Intermediate: 16384, Vocab: 50272, MaxModelLen: 2048},
	"opt-13b":      {Layers: 40, Hidden: 5120, Heads: 40, KVHeads: 40, Intermediate: 20480, Vocab: 50272, MaxModelLen: 2048},
	"llama-3.1-8b": {Layers: 32, Hidden: 4096, Heads: 32, KVHeads: 8, Intermediate: 14336, Vocab: 128256, Gated: true, MaxModelLen: 131072},
	"solar-10.7b":  {Layers: 48, Hidden: 4096, Heads: 32, KVHeads: 8, Intermediate: 14336, Vocab: 32000, Gated: true, MaxModelLen: 4096},
	"llama-2-70b":  {Layers: 80, Hidden: 8192, Heads: 64, KVHeads: 8, Intermediate: 28672, Vocab: 32000, Gated: true, MaxModelLen: 4096},
}

// GPU is an accelerator's peak numbers and the fractions of them a serving
// engine achieves (fitted by calibration).
type GPU struct {
	Name      string  `json:"name"`
	PeakFLOPS float64 `json:"peak_flops"`   // dense bf16, FLOP/s
	MemBW     float64 `json:"mem_bw"`       // bytes/s
	MemBytes  float64 `json:"mem_bytes"`    // device memory
	LinkBW    float64 `json:"link_bw"`      // per-GPU all-reduce bandwidth for tensor parallelism, bytes/s
	Large     bool    `json:"large_memory"` // vLLM's >= 70 GiB non-A100 class (bigger default budgets)
	Eff       Eff     `json:"efficiency"`
}

// Eff holds achieved fractions of peak and fixed costs, per operator class.
type Eff struct {
	GemmFLOP     float64 `json:"gemm_flop"`
	GemmBW       float64 `json:"gemm_bw"`
	GemmLaunch   float64 `json:"gemm_launch_s"`
	AttnFLOP     float64 `json:"attn_flop"` // prefill attention
	AttnBW       float64 `json:"attn_bw"`   // decode attention reading the KV cache
	AttnLaunch   float64 `json:"attn_launch_s"`
	ElemBW       float64 `json:"elem_bw"` // norms, activations
	ElemLaunch   float64 `json:"elem_launch_s"`
	StepOverhead float64 `json:"step_overhead_s"` // scheduling, sampling, host work per step
	CommLatency  float64 `json:"comm_latency_s"`  // per all-reduce
	// Tensor parallelism's costs beyond the ideal: a GEMM whose sharded
	// dimension is s runs at gemm_flop x s/(s + gemm_half_shard) (small
	// shards use the GPU less well), and a ring all-reduce pays
	// comm_step_latency_s on each of its 2(tp-1) steps. Zero: ideal.
	GemmHalfShard   float64 `json:"gemm_half_shard,omitempty"`
	CommStepLatency float64 `json:"comm_step_latency_s,omitempty"`
}

// Stacks name the serving stacks the GPU presets price. vllm-v1 is vLLM's
// v1 engine as deployed today (CUDA graphs for decode, FlashAttention-class
// attention, fused kernels, chunked prefill); 2023 is the stack of
// Splitwise's measurements and of engines like the ELIS paper's vLLM 0.5.0
// (and PyTorch eager kernels on h200), kept so earlier results reproduce.
var Stacks = []string{"vllm-v1", "2023"}

// DefaultStack is the stack a GPU preset prices unless told otherwise.
const DefaultStack = "vllm-v1"

// GPUs are the accelerator presets of the vllm-v1 stack. Peaks are data-sheet
// values. Kernel efficiencies come from the H200 operator profile
// (../shared/profiles/h200-torch-ops.csv: cuBLAS GEMMs at 73.6% of peak
// FLOP/s and 84.5% of the bandwidth, SDPA/FlashAttention prefill at 53.7%
// of peak, decode attention at 94.4% of the bandwidth), which H100 shares
// (the same GH100 compute die); not its launch and elementwise costs,
// which are PyTorch eager's: under CUDA graphs a kernel costs a few
// microseconds of GPU time, and vLLM fuses norms and activations. The step
// overhead, 1 ms, is what brings one request's decode at 1k context on H100
// (llama-3.1-8b) to BLIS's fit on real vLLM (6.96 ms a token). A100 has no
// profile here: its GEMM and FlashAttention-2 efficiencies are typical
// published figures (70% and 55% of peak).
var GPUs = map[string]GPU{
	"a100-80g": {PeakFLOPS: 312e12, MemBW: 2.039e12, MemBytes: 80 * (1 << 30), LinkBW: 240e9,
		Eff: Eff{GemmFLOP: 0.70, GemmBW: 0.845, GemmLaunch: 3e-6, AttnFLOP: 0.55, AttnBW: 0.90, AttnLaunch: 4e-6,
			ElemBW: 0.7, ElemLaunch: 2e-6, StepOverhead: 1e-3, CommLatency: 25e-6}},
	"h100": {PeakFLOPS: 989e12, MemBW: 3.35e12, MemBytes: 80 * (1 << 30), LinkBW: 360e9, Large: true, Eff: hopperV1},
	"h200": {PeakFLOPS: 989e12, MemBW: 4.8e12, MemBytes: 143771 * (1 << 20), LinkBW: 360e9, Large: true, Eff: hopperV1},
}

// hopperV1 are the vllm-v1 efficiencies of H100 and H200, which share the
// GH100 compute die (they differ in memory, not in kernels).
var hopperV1 = Eff{GemmFLOP: 0.736, GemmBW: 0.845, GemmLaunch: 3e-6, AttnFLOP: 0.537, AttnBW: 0.944, AttnLaunch: 4e-6,
	ElemBW: 0.7, ElemLaunch: 2e-6, StepOverhead: 1e-3, CommLatency: 20e-6}

// GPUs2023 are the presets of the 2023 stack: a100-80g and h100 fitted to
// Splitwise's perf_model.csv (a vLLM-like engine of 2023: 13.5 ms of host
// overhead a step on H100, prefill attention at 7.8% of peak), h200 to the
// operator profile's PyTorch eager kernels with an assumed 2 ms a step
// (see "elis-sim cost check").
var GPUs2023 = map[string]GPU{
	"a100-80g": {PeakFLOPS: 312e12, MemBW: 2.039e12, MemBytes: 80 * (1 << 30), LinkBW: 240e9,
		Eff: Eff{GemmFLOP: 0.592, GemmBW: 1.0, GemmLaunch: 76.5e-6, AttnFLOP: 0.250, AttnBW: 0.183, AttnLaunch: 12e-6,
			ElemBW: 0.5, ElemLaunch: 8e-6, StepOverhead: 0, CommLatency: 25e-6}},
	"h100": {PeakFLOPS: 989e12, MemBW: 3.35e12, MemBytes: 80 * (1 << 30), LinkBW: 360e9, Large: true,
		Eff: Eff{GemmFLOP: 0.522, GemmBW: 1.0, GemmLaunch: 10e-6, AttnFLOP: 0.0784, AttnBW: 0.189, AttnLaunch: 12e-6,
			ElemBW: 0.5, ElemLaunch: 8e-6, StepOverhead: 13.5e-3, CommLatency: 20e-6}},
	"h200": {PeakFLOPS: 989e12, MemBW: 4.8e12, MemBytes: 143771 * (1 << 20), LinkBW: 360e9, Large: true,
		Eff: Eff{GemmFLOP: 0.736, GemmBW: 0.845, GemmLaunch: 18.3e-6, AttnFLOP: 0.537, AttnBW: 0.944, AttnLaunch: 27.7e-6,
			ElemBW: 0.353, ElemLaunch: 23.3e-6, StepOverhead: 2e-3, CommLatency: 20e-6}},
}

// LookupArch returns a model preset with its name filled in.
func LookupArch(name string) (Arch, error) {
	a, ok := Archs[name]
	if !ok {
		return Arch{}, fmt.Errorf("unknown model %q (valid: %s)", name, strings.Join(keys(Archs), ", "))
	}
	a.Name = name
	if a.DtypeBytes == 0 {
		a.DtypeBytes = 2
	}
	return a, nil
}

// LookupGPU returns a GPU preset of the vllm-v1 stack with its name
// filled in.
func LookupGPU(name string) (GPU, error) { return LookupGPUStack(name, DefaultStack) }

// LookupGPUStack returns a GPU preset of a stack.
func LookupGPUStack(name, stack string) (GPU, error) {
	presets := GPUs
	switch stack {
	case "", DefaultStack:
	case "2023":
		presets = GPUs2023
	default:
		return GPU{}, fmt.Errorf("unknown stack %q (valid: %s)", stack, strings.Join(Stacks, ", "))
	}
	g, ok := presets[name]
	if !ok {
		return GPU{}, fmt.Errorf("unknown GPU %q (valid: %s)", name, strings.Join(keys(GPUs), ", "))
	}
	g.Name = name
	if stack == "2023" {
		g.Name += " (2023 stack)"
	}
	return g, nil
}

// ArchNames and GPUNames list the presets, sorted.
func ArchNames() []string { return keys(Archs) }
func GPUNames() []string  { return keys(GPUs) }

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
