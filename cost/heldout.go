package cost

import (
	"fmt"
	"math"
	"sort"
)

// Impossible reports a measurement no engine could have made: a step
// faster than its FLOPs at every GPU's peak rate, or than reading the
// weights once at every GPU's peak bandwidth. Such rows (Splitwise's
// table has some at TP2, batch 64) are left out of fits and checks by this
// rule, not by hand, and so are the other timings of the same run
// (Measurement.FailedRun).
func Impossible(g GPU, m *Measurement) bool {
	if m.FailedRun {
		return true
	}
	a, ok := Archs[m.Model]
	if !ok {
		return false
	}
	a.DtypeBytes = max(a.DtypeBytes, 2)
	tp := float64(max(m.TP, 1))
	layerParams := a.Params() - 2*float64(a.Vocab)*float64(a.Hidden)
	var floor float64
	switch m.Class {
	case "prefill_step":
		tokens := m.A * m.B
		attn := 4 * float64(a.Heads*a.HeadDim()) * m.A * m.B * (m.B + 1) / 2 * float64(a.Layers)
		floor = (2*layerParams*tokens + attn) / (tp * g.PeakFLOPS)
	case "decode_step":
		floor = layerParams * float64(a.DtypeBytes) / (tp * g.MemBW)
	default:
		return false
	}
	return m.Measured < floor
}

// HeldOutRow is the error of a fit on measurements it did not see.
type HeldOutRow struct {
	Split            string // what was fitted, and on what it is judged
	N, Excluded      int
	Median, P90, Max float64 // |error|, percent
	Within15         float64 // share of rows within 15%, percent
	Worst            string
	MedianTarget, OK bool
}

// HeldOut fits the efficiencies of the 2023 stack on part of ms and
// judges them on the rest: fitted on one GPU, predicting the other (the
// same engine on a different card), and, per GPU, each tensor-parallel
// degree left out of the fit. Targets: median <= 8%, 90% within 15%, none
// beyond 25%. Physically impossible rows are excluded first.
func HeldOut(ms []Measurement, evals int) ([]HeldOutRow, error) {
	byGPU := map[string][]Measurement{}
	excluded := map[string]int{}   // by GPU
	excludedTP := map[string]int{} // by GPU and TP degree
	for _, m := range ms {
		g, err := LookupGPUStack(m.GPU, "2023")
		if err != nil {
			return nil, err
		}
		if Impossible(g, &m) {
			excluded[m.GPU]++
			excludedTP[fmt.Sprint(m.GPU, m.TP)]++
			continue
		}
		byGPU[m.GPU] = append(byGPU[m.GPU], m)
	}
	gpus := make([]string, 0, len(byGPU))
	for k := range byGPU {
		gpus = append(gpus, k)
	}
	sort.Strings(gpus)
	judge := func(split string, g GPU, test []Measurement, excl int) HeldOutRow {
		var errs []float64
		worst, worstE := "", -1.0
		for i := range test {
			m := &test[i]
			e := math.Abs(rooflineFor(g, m).Predict(m)-m.Measured) / m.Measured * 100
			errs = append(errs, e)
			if e > worstE {
				worst, worstE = m.Label, e
			}
		}
		sort.Float64s(errs)
		within := 0
		for _, e := range errs {
			if e <= 15 {
				within++
			}
		}
		r := HeldOutRow{Split: split, N: len(errs), Excluded: excl, Median: median(errs), P90: errs[len(errs)*9/10],
			Max: errs[len(errs)-1], Within15: 100 * float64(within) / float64(len(errs)), Worst: worst}
		r.OK = r.Median <= 8 && r.Within15 >= 90 && r.Max <= 25
		return r
	}
	var out []HeldOutRow
	if len(gpus) == 2 {
		for k, train := range gpus {
			test := gpus[1-k]
			start, _ := LookupGPUStack(train, "2023")
			fit := FitEvals(start, byGPU[train], evals)
			target, _ := LookupGPUStack(test, "2023")
			target.Eff = fit.Eff
			out = append(out, judge(fmt.Sprintf("fit %s, predict %s", train, test), target, byGPU[test], excluded[test]))
		}
	}
	for _, name := range gpus {
		// The same fit judged on what it saw: no held-out split can be
		// expected to do better than this, so it says how much of a miss
		// is the model's shape and how much is extrapolation.
		start, _ := LookupGPUStack(name, "2023")
		out = append(out, judge(fmt.Sprintf("%s: fit all, judge all (in sample)", name), FitEvals(start, byGPU[name], evals), byGPU[name], excluded[name]))
		tps := map[int]bool{}
		for _, m := range byGPU[name] {
			tps[m.TP] = true
		}
		var list []int
		for tp := range tps {
			list = append(list, tp)
		}
		sort.Ints(list)
		for _, tp := range list {
			var train, test []Measurement
			for _, m := range byGPU[name] {
				if m.TP == tp {
					test = append(test, m)
				} else {
					train = append(train, m)
				}
			}
			start, _ := LookupGPUStack(name, "2023")
			fit := FitEvals(start, train, evals)
			out = append(out, judge(fmt.Sprintf("%s: fit other TPs, predict TP%d", name, tp), fit, test, excludedTP[fmt.Sprint(name, tp)]))
		}
	}
	return out, nil
}
