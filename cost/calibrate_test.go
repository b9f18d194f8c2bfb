package cost

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/internal/tempfile"
)

// The presets were fitted to the measurements in ../shared; this test keeps
// them honest when the files are there (CI has them beside the clone).
func TestPresetsMatchMeasurements(t *testing.T) {
	const profile = "../../shared/profiles/h200-torch-ops.csv"
	const splitwise = "../../shared/data/splitwise/perf_model.csv"
	if _, err := os.Stat(profile); err != nil {
		t.Skip("no ../shared beside the checkout")
	}
	ms, err := ReadTorchProfile(profile, "h200")
	if err != nil {
		t.Fatal(err)
	}
	sw, err := ReadSplitwise(splitwise)
	if err != nil {
		t.Fatal(err)
	}
	bound := map[string]float64{"gemm": 7, "attn_prefill": 15, "attn_decode": 15, "elem": 40, "prefill_step": 20, "decode_step": 20}
	for _, name := range []string{"h200", "a100-80g", "h100"} {
		// The measurements are of the 2023 stack (Splitwise's engine) and of
		// PyTorch eager kernels (the operator profile).
		g, _ := LookupGPUStack(name, "2023")
		var sub []Measurement
		for _, m := range append(ms, sw...) {
			if m.GPU == name {
				sub = append(sub, m)
			}
		}
		for _, r := range Errors(g, sub) {
			if r.MeanAbsPct > bound[r.Class] {
				t.Errorf("%s %s: mean error %.1f%% > %.0f%% (worst: %s)", name, r.Class, r.MeanAbsPct, bound[r.Class], r.WorstLabel)
			}
		}
	}
}

func TestFitRecoversKnownEfficiencies(t *testing.T) {
	truth, _ := LookupGPU("h100")
	truth.Eff = Eff{GemmFLOP: 0.6, GemmBW: 0.7, GemmLaunch: 15e-6, AttnFLOP: 0.4, AttnBW: 0.8, AttnLaunch: 20e-6, ElemBW: 0.5, ElemLaunch: 10e-6}
	var ms []Measurement
	for _, m := range []float64{1, 8, 64, 512, 4096} {
		ms = append(ms, Measurement{Model: "llama-3.1-8b", TP: 1, Class: "gemm", A: m, B: 6144, C: 4096},
			Measurement{Model: "llama-3.1-8b", TP: 1, Class: "gemm", A: m, B: 4096, C: 14336},
			Measurement{Model: "llama-3.1-8b", TP: 1, Class: "attn_decode", A: m, B: 1, C: 2048},
			Measurement{Model: "llama-3.1-8b", TP: 1, Class: "attn_prefill", A: 1, B: m * 2, C: m * 2})
	}
	for i := range ms {
		ms[i].Measured = rooflineFor(truth, &ms[i]).Predict(&ms[i])
	}
	start, _ := LookupGPU("h100")
	fit := Fit(start, ms)
	for _, r := range Errors(fit, ms) {
		if r.MaxAbsPct > 1 {
			t.Errorf("%s: fit misses its own synthetic data by up to %.2f%%", r.Class, r.MaxAbsPct)
		}
	}
}

func TestReadTorchProfileErrors(t *testing.T) {
	p := t.TempDir() + "/p.csv"
	os.WriteFile(p, []byte("model,op,m,n,k,batch,q_len,kv_len,ms\nllama-2-7b,qkv,x,1,1,1,,,0.1\n"), 0o644)
	if _, err := ReadTorchProfile(p, "h200"); err == nil || !strings.Contains(err.Error(), "line 2: column m") {
		t.Fatalf("got %v", err)
	}
}

// The vllm-v1 presets meet the targets on the vLLM reference
// shapes (one request, llama-3.1-8b, H100).
func TestVLLMReference(t *testing.T) {
	rows, err := VLLMReference()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		t.Logf("%-30s v1 %8.2f ms  2023 %8.2f ms  ref %6.2f ms  floor %8.2f ms  FA %8.2f ms", r.Shape, r.Preset*1e3, r.Preset2023*1e3, r.Reference*1e3, r.Floor*1e3, r.FARoofline*1e3)
		if !r.OK {
			t.Errorf("%s: %.2f ms misses its target (%s)", r.Shape, r.Preset*1e3, r.Target)
		}
	}
}

// FitServer recovers a known step model and per-request overhead from
// exact client-side timings: decode steps and lone requests' first tokens
// (the prompt in chunks of the budget).
func TestFitServerRecoversTruth(t *testing.T) {
	truth := Linear{Base: 0.02, PerPrefillToken: 5e-5, PerDecodeSeq: 5e-4, PerDecodeContext: 1e-7}
	const overhead, budget = 0.003, 512
	var steps []StepSample
	for _, b := range []int{1, 4, 16} {
		for _, c := range []int64{128, 1024} {
			s := StepSample{DecodeSeqs: b, DecodeContext: int64(b) * c}
			s.Seconds = truth.predict(&s)
			steps = append(steps, s)
		}
	}
	var reqs []RequestSample
	for _, n := range []int{16, 128, 512, 1024, 2048} {
		tt := overhead
		for p := 0; p < n; p += budget {
			c := min(budget, n-p)
			tt += truth.predict(&StepSample{PrefillTokens: c, PrefillContext: int64(p), PrefillAttn: float64(c) * (float64(p) + float64(c+1)/2)})
		}
		reqs = append(reqs, RequestSample{PromptTokens: n, KVCells: -1, Seconds: tt})
	}
	// The profile file keeps request rows.
	p := fitsTruth(t, steps, reqs, budget, truth, overhead)
	if len(p.Requests) != len(reqs) || p.Requests[2].PromptTokens != 512 {
		t.Fatalf("round trip: %+v", p)
	}
}

// On a server whose attention reads every occupied KV cell (llama.cpp's,
// idle slots' kept prompts included), the profile's cell counts let the
// fit separate a token's cost per cell from the rest: lone prompts sent
// behind different amounts of kept cells, decode steps at several.
func TestFitServerRecoversCellCost(t *testing.T) {
	truth := Linear{Base: 2e-3, PerPrefillToken: 4e-5, PerDecodeSeq: 3e-4, PerTokenCell: 2e-8}
	const overhead, budget = 0.001, 2048
	var steps []StepSample
	for _, b := range []int{1, 2, 4, 8} {
		for _, c := range []int64{128, 1024} {
			for _, kept := range []int64{0, 6000} {
				s := StepSample{DecodeSeqs: b, DecodeContext: int64(b) * c, KVCells: kept + int64(b)*c}
				s.Seconds = truth.predict(&s)
				steps = append(steps, s)
			}
		}
	}
	var reqs []RequestSample
	for i, n := range []int{16, 64, 256, 512, 1024, 1536} {
		r := RequestSample{PromptTokens: n, KVCells: int64(i * 900)}
		r.Seconds = overhead
		for _, s := range r.Chunks(budget) {
			r.Seconds += truth.predict(&s)
		}
		reqs = append(reqs, r)
	}
	p := fitsTruth(t, steps, reqs, budget, truth, overhead)
	if p.Requests[3].KVCells != 2700 || p.Steps[1].KVCells != 6128 {
		t.Fatalf("round trip: %+v", p)
	}
}

// fitsTruth fits steps and reqs and checks every coefficient and the
// overhead against the truth that timed them, then returns the profile
// read back from its file.
func fitsTruth(t *testing.T, steps []StepSample, reqs []RequestSample, budget int, truth Linear, overhead float64) *DeviceProfile {
	t.Helper()
	lin, oh, err := FitServer(steps, reqs, budget)
	if err != nil {
		t.Fatal(err)
	}
	got, want := append(lin.coef(), oh.PerRequest), append(truth.coef(), overhead)
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-6*math.Abs(want[i])+1e-15 {
			t.Errorf("%s: fitted %g, want %g", append(linearFields, "overhead")[i], got[i], want[i])
		}
	}
	var buf bytes.Buffer
	WriteDeviceProfile(&buf, &DeviceProfile{Meta: map[string]string{"device": "x"}, Steps: steps, Requests: reqs})
	p, err := ParseDeviceProfile(buf.Bytes(), "p.csv")
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	return p
}

// The physical rule: a step faster than its FLOPs at every GPU's peak, or
// than one read of the weights at every GPU's bandwidth, is impossible.
func TestImpossible(t *testing.T) {
	g, _ := LookupGPUStack("a100-80g", "2023")
	// 64 x 512 prefill tokens of llama-2-70b on 2 A100s: at least ~4.4 s of
	// compute at peak; 0.794 s cannot be.
	if !Impossible(g, &Measurement{Model: "llama-2-70b", TP: 2, Class: "prefill_step", A: 64, B: 512, Measured: 0.794}) {
		t.Error("a prefill 5x faster than peak passed")
	}
	if Impossible(g, &Measurement{Model: "llama-2-70b", TP: 2, Class: "prefill_step", A: 1, B: 512, Measured: 0.196}) {
		t.Error("a plausible prefill was refused")
	}
	if !Impossible(g, &Measurement{Model: "llama-2-70b", TP: 8, Class: "decode_step", A: 1, B: 1, Measured: 0.001}) {
		t.Error("a decode faster than reading the weights passed")
	}
}

// A Splitwise row is one run: when its prefill is impossible, its decode
// time is not trusted either, and both are excluded.
func TestReadSplitwiseFailedRun(t *testing.T) {
	path := t.TempDir() + "/perf_model.csv"
	csv := "model,hardware,prompt_size,batch_size,token_size,prompt_time,token_time,tensor_parallel\n" +
		"llama2-70b,a100-80gb,512,64,128,795.9,67.3,2\n" + // 32k prefill tokens in 0.8 s on 2 A100s
		"llama2-70b,a100-80gb,512,1,128,195.6,58.5,2\n"
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	ms, err := ReadSplitwise(path)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := LookupGPUStack("a100-80g", "2023")
	var bad, good int
	for i := range ms {
		if Impossible(g, &ms[i]) {
			bad++
			if ms[i].A != 64 {
				t.Errorf("%s excluded", ms[i].Label)
			}
		} else {
			good++
		}
	}
	// The b=64 row's prefill is beyond a step's 16k tokens and not read;
	// its decode is read and excluded; the b=1 row gives two good ones.
	if bad != 1 || good != 2 {
		t.Errorf("excluded %d, kept %d; want 1 and 2", bad, good)
	}
}

// FuzzReadProfiles: the operator-profile and Splitwise readers take any
// bytes; every measurement they return is a finite time > 0 of a shape of
// finite sizes >= 0, which is what the fit and the error tables divide by.
func FuzzReadProfiles(f *testing.F) {
	f.Add([]byte("model,op,m,n,k,batch,q_len,kv_len,ms\nllama-2-7b,qkv,1,12288,4096,1,,,0.04237\nllama-2-7b,attn_decode,,,,8,1,512,0.02\n"), false)
	f.Add([]byte("model,hardware,prompt_size,batch_size,token_size,prompt_time,token_time,tensor_parallel\nllama2-70b,a100-80gb,512,1,128,196.25,54.88,2\n"), true)
	f.Add([]byte("model,op,m,n,k,batch,q_len,kv_len,ms\nllama-2-7b,qkv,1,12288,4096,1,,,NaN\n"), false)
	f.Add([]byte("model,op,m,n,k,batch,q_len,kv_len,ms\nllama-2-7b,rmsnorm,1e308,1e308,0,1,,,1\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, splitwise bool) {
		path := tempfile.Write(t, "p.csv", data)
		var ms []Measurement
		var err error
		if splitwise {
			ms, err = ReadSplitwise(path)
		} else {
			ms, err = ReadTorchProfile(path, "h200")
		}
		if err != nil {
			return
		}
		for _, m := range ms {
			if !(m.Measured > 0 && m.Measured < math.Inf(1)) || !(m.A >= 0 && m.B >= 0 && m.C >= 0) || math.IsInf(m.A+m.B+m.C, 0) {
				t.Fatalf("measurement %+v", m)
			}
		}
	})
}
