package cost

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/optimize"
)

// Measurement is one measured timing a cost model should reproduce: an
// operator of the H200 profile or a step of the Splitwise table.
type Measurement struct {
	Source string // file:line
	Model  string // preset name
	GPU    string
	TP     int
	Class  string // gemm, attn_prefill, attn_decode, elem, prefill_step, decode_step
	Label  string // short description for tables
	// Shape, by class: gemm m,n,k; elem bytes; attention batch, q_len,
	// kv_len; steps batch, prompt, context.
	A, B, C  float64
	Measured float64 // seconds
	// FailedRun marks a measurement whose run also produced a physically
	// impossible timing (see Impossible): the run is not trusted at all.
	FailedRun bool
}

// Predict prices m with the cost model r (whose Arch must be m's model).
func (r *Roofline) Predict(m *Measurement) float64 {
	switch m.Class {
	case "gemm":
		return r.gemm(m.A, m.B, m.C)
	case "elem":
		return r.elem(m.A)
	case "attn_decode":
		return r.attention(int(m.A), int64(m.A*m.C), 0, 0)
	case "attn_prefill":
		q := m.B
		return r.attention(0, 0, int(m.A*q), m.A*q*(q+1)/2)
	case "prefill_step":
		n, p := m.A, m.B
		return r.stepTime(n*p, int(n), 0, 0, int(n*p), n*p*(p+1)/2)
	case "decode_step":
		n, ctx := m.A, m.C
		return r.stepTime(n, int(n), int(n), int64(n*ctx), 0, 0)
	}
	return math.NaN()
}

func readCSV(path string) ([]map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(bytes.NewReader(data))
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s line 1: %w", path, err)
	}
	var rows []map[string]string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		row := map[string]string{"_line": strconv.Itoa(len(rows) + 2)}
		for i, h := range head {
			if i < len(rec) {
				row[h] = rec[i]
			}
		}
		rows = append(rows, row)
	}
}

// num reads a column of a profile: a size or a time, so a number from 0
// to 1e15 (a negative or NaN time would steer a fit anywhere; a larger
// size is no real shape, and its products overflow).
func num(row map[string]string, path, col string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(row[col]), 64)
	if err != nil || !(v >= 0 && v <= 1e15) {
		return 0, fmt.Errorf("%s line %s: column %s: %q is not a number from 0 to 1e15", path, row["_line"], col, row[col])
	}
	return v, nil
}

// ReadTorchProfile reads an operator profile in the format of
// ../shared/profiles/h200-torch-ops.csv (model,op,m,n,k,batch,q_len,kv_len,ms).
func ReadTorchProfile(path, gpu string) ([]Measurement, error) {
	rows, err := readCSV(path)
	if err != nil {
		return nil, err
	}
	var out []Measurement
	for _, row := range rows {
		a, err := LookupArch(row["model"])
		if err != nil {
			return nil, fmt.Errorf("%s line %s: %w", path, row["_line"], err)
		}
		ms, err := num(row, path, "ms")
		if err != nil {
			return nil, err
		}
		if ms == 0 {
			return nil, fmt.Errorf("%s line %s: column ms: 0, want the time the operator took", path, row["_line"])
		}
		m := Measurement{Source: path + ":" + row["_line"], Model: a.Name, GPU: gpu, TP: 1, Measured: ms / 1e3}
		get := func(col string) float64 {
			if err != nil {
				return 0
			}
			var v float64
			v, err = num(row, path, col)
			return v
		}
		switch op := row["op"]; op {
		case "qkv", "o", "gate_up", "down", "lm_head":
			m.Class, m.A, m.B, m.C = "gemm", get("m"), get("n"), get("k")
			m.Label = fmt.Sprintf("%s m=%g", op, m.A)
		case "rmsnorm":
			m.Class = "elem"
			m.A = 2 * get("m") * get("n") * 2
			m.Label = fmt.Sprintf("rmsnorm m=%s", row["m"])
		case "silu_mul":
			m.Class = "elem"
			m.A = 3 * get("m") * get("n") * 2
			m.Label = fmt.Sprintf("silu_mul m=%s", row["m"])
		case "attn_prefill", "attn_decode":
			m.Class, m.A, m.B, m.C = op, get("batch"), get("q_len"), get("kv_len")
			m.Label = fmt.Sprintf("%s b=%g q=%g kv=%g", op, m.A, m.B, m.C)
		default:
			return nil, fmt.Errorf("%s line %s: unknown op %q", path, row["_line"], op)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// splitwiseHardware maps Splitwise's hardware names to presets.
var splitwiseHardware = map[string]string{"a100-80gb": "a100-80g", "h100-80gb": "h100"}

// ReadSplitwise reads Splitwise's perf_model.csv, keeping the rows of
// models and GPUs that have presets: each gives a prefill step (batch
// prompts of prompt_size) and a decode step (batch sequences at the
// average context over token_size generated tokens).
func ReadSplitwise(path string) ([]Measurement, error) {
	rows, err := readCSV(path)
	if err != nil {
		return nil, err
	}
	var out []Measurement
	for _, row := range rows {
		gpu, ok := splitwiseHardware[row["hardware"]]
		model := strings.Replace(row["model"], "llama2", "llama-2", 1)
		if _, known := Archs[model]; !ok || !known {
			continue
		}
		var v [6]float64
		for i, col := range []string{"prompt_size", "batch_size", "token_size", "prompt_time", "token_time", "tensor_parallel"} {
			if v[i], err = num(row, path, col); err != nil {
				return nil, err
			}
		}
		p, n, t, tp := v[0], v[1], v[2], int(v[5])
		if v[3] == 0 || v[4] == 0 || tp < 1 || tp > 1024 {
			return nil, fmt.Errorf("%s line %s: prompt_time %g, token_time %g, tensor_parallel %g: want times > 0 and a degree from 1 to 1024", path, row["_line"], v[3], v[4], v[5])
		}
		src := path + ":" + row["_line"]
		pre := Measurement{Source: src, Model: model, GPU: gpu, TP: tp, Class: "prefill_step", A: n, B: p, Measured: v[3] / 1e3,
			Label: fmt.Sprintf("prefill tp%d b=%g p=%g", tp, n, p)}
		dec := Measurement{Source: src, Model: model, GPU: gpu, TP: tp, Class: "decode_step", A: n, B: p, C: p + t/2, Measured: v[4] / 1e3,
			Label: fmt.Sprintf("decode tp%d b=%g ctx=%g", tp, n, p+t/2)}
		// A row is one run: when its prefill is faster than the cards'
		// peak allows (TP2, batch 64), its decode time is not trusted
		// either.
		g, _ := LookupGPUStack(gpu, "2023")
		if Impossible(g, &pre) {
			pre.FailedRun, dec.FailedRun = true, true
		}
		// Prefills of more than 16k tokens in one step are beyond what a
		// vLLM token budget schedules: they are left out.
		if n*p <= 16384 {
			out = append(out, pre)
		}
		out = append(out, dec)
	}
	return out, nil
}

// ErrorRow summarises the cost model's error on one class of measurements.
type ErrorRow struct {
	GPU, Class string
	N          int
	MeanAbsPct float64 // mean |predicted-measured|/measured, percent
	MedianPct  float64
	MaxAbsPct  float64
	WorstLabel string
}

// Errors compares gpu (with its current efficiencies) against ms.
func Errors(gpu GPU, ms []Measurement) []ErrorRow {
	byClass := map[string][]float64{}
	worst := map[string]string{}
	var order []string
	for i := range ms {
		m := &ms[i]
		r := rooflineFor(gpu, m)
		e := math.Abs(r.Predict(m)-m.Measured) / m.Measured * 100
		if _, ok := byClass[m.Class]; !ok {
			order = append(order, m.Class)
		}
		errs := byClass[m.Class]
		if len(errs) == 0 || e > maxOf(errs) {
			worst[m.Class] = m.Model + " " + m.Label
		}
		byClass[m.Class] = append(errs, e)
	}
	var out []ErrorRow
	for _, c := range order {
		e := byClass[c]
		out = append(out, ErrorRow{GPU: gpu.Name, Class: c, N: len(e), MeanAbsPct: mean(e), MedianPct: median(e), MaxAbsPct: maxOf(e), WorstLabel: worst[c]})
	}
	return out
}

func rooflineFor(gpu GPU, m *Measurement) *Roofline {
	a, _ := LookupArch(m.Model)
	return &Roofline{Arch: a, GPU: gpu, TP: max(m.TP, 1)}
}

// Fit tunes the efficiencies of gpu to ms by minimising the squared log
// error (Nelder-Mead over the parameters the measurements constrain).
// Parameters stay within physical ranges.
func Fit(gpu GPU, ms []Measurement) GPU { return FitEvals(gpu, ms, 20000) }

// FitEvals is Fit with a budget of loss evaluations.
func FitEvals(gpu GPU, ms []Measurement, evals int) GPU {
	type param struct {
		p      *float64
		lo, hi float64
	}
	g := gpu
	e := &g.Eff
	classes := map[string]bool{}
	for _, m := range ms {
		classes[m.Class] = true
	}
	var ps []param
	if classes["gemm"] || classes["prefill_step"] || classes["decode_step"] {
		ps = append(ps, param{&e.GemmFLOP, 0.05, 1}, param{&e.GemmBW, 0.05, 1}, param{&e.GemmLaunch, 0, 1e-3})
	}
	if classes["attn_prefill"] || classes["prefill_step"] {
		ps = append(ps, param{&e.AttnFLOP, 0.02, 1})
	}
	if classes["attn_decode"] || classes["decode_step"] {
		ps = append(ps, param{&e.AttnBW, 0.02, 1})
	}
	if classes["attn_prefill"] || classes["attn_decode"] {
		ps = append(ps, param{&e.AttnLaunch, 0, 1e-3})
	}
	if classes["elem"] {
		ps = append(ps, param{&e.ElemBW, 0.02, 1}, param{&e.ElemLaunch, 0, 1e-3})
	}
	if classes["prefill_step"] || classes["decode_step"] {
		ps = append(ps, param{&e.StepOverhead, 0, 0.1})
	}
	tps := map[int]bool{}
	for _, m := range ms {
		tps[max(m.TP, 1)] = true
	}
	if len(tps) > 1 || !tps[1] {
		// Tensor parallelism's costs beyond the ideal, when the
		// measurements span TP degrees.
		if e.GemmHalfShard == 0 {
			e.GemmHalfShard = 256
		}
		if e.CommStepLatency == 0 {
			e.CommStepLatency = 5e-6
		}
		ps = append(ps, param{&e.GemmHalfShard, 0, 20000}, param{&e.CommStepLatency, 0, 500e-6}, param{&e.CommLatency, 0, 500e-6})
	}
	// Optimise in a logit/log space so the bounds hold.
	set := func(x []float64) {
		for i, p := range ps {
			s := 1 / (1 + math.Exp(-x[i]))
			*p.p = p.lo + (p.hi-p.lo)*s
		}
	}
	x0 := make([]float64, len(ps))
	for i, p := range ps {
		s := (*p.p - p.lo) / (p.hi - p.lo)
		s = math.Min(math.Max(s, 1e-3), 1-1e-3)
		x0[i] = math.Log(s / (1 - s))
	}
	loss := func(x []float64) float64 {
		set(x)
		sum := 0.0
		for i := range ms {
			m := &ms[i]
			d := math.Log(rooflineFor(g, m).Predict(m) / m.Measured)
			sum += d * d
		}
		return sum
	}
	// Minimize returns its best point even when it stops on the
	// evaluation limit, so res is what counts, not err.
	res, _ := optimize.Minimize(optimize.Problem{Func: loss}, x0, &optimize.Settings{FuncEvaluations: evals}, &optimize.NelderMead{})
	if res != nil {
		set(res.X)
	} else {
		set(x0)
	}
	return g
}

func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func maxOf(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	return m
}

func median(x []float64) float64 {
	c := append([]float64(nil), x...)
	sort.Float64s(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}
