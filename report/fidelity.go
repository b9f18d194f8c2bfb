package report

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/gonum/stat"

	"github.com/elis-sim/elis-sim/policies"
)

// FidelityRow is the simulator's error on one metric of one policy:
// (simulated - measured) / measured, in percent. Replay holds the measured
// value, whichever driver measured it (replay on a device, bench on a
// server).
type FidelityRow struct {
	Label    string  `json:"label"`
	Metric   string  `json:"metric"`
	Replay   float64 `json:"replay"`
	Sim      float64 `json:"sim"`
	ErrorPct Num     `json:"error_pct"`
}

// Fidelity is the simulator checked against replay.
type Fidelity struct {
	Rows []FidelityRow `json:"rows"`
	// ChangeError is, for each policy after the baseline, the simulated
	// change of mean JCT against the baseline minus the replayed one, in
	// percentage points.
	ChangeError map[string]Num `json:"jct_change_error_pp,omitempty"`
	Baseline    string         `json:"baseline,omitempty"`
	// Measured names, per policy, what measured it: replay or bench.
	Measured map[string]string `json:"measured_by,omitempty"`
	// Requests pairs, per policy, the measured and simulated records of
	// the same requests (by id).
	Requests map[string]PerRequest `json:"per_request,omitempty"`
}

// PerRequest is the simulator against a measurement request by request:
// how many requests both finished, the correlation of their JCTs, and the
// mean and the 90th percentile of the absolute per-request JCT error.
type PerRequest struct {
	Paired      int `json:"paired"`
	Correlation Num `json:"jct_correlation"`
	MeanAbsPct  Num `json:"jct_mean_abs_error_pct"`
	P90AbsPct   Num `json:"jct_p90_abs_error_pct"`
}

// perRequest pairs two runs' finished records by id.
func perRequest(meas, sim *Run) (PerRequest, bool) {
	byID := map[string]*policies.Record{}
	for i := range sim.Records {
		if r := &sim.Records[i]; r.Finish >= 0 && r.Rejected == "" {
			byID[r.ID] = r
		}
	}
	var x, y, errs []float64
	for i := range meas.Records {
		m := &meas.Records[i]
		s, ok := byID[m.ID]
		if !ok || m.Finish < 0 || m.Rejected != "" {
			continue
		}
		mj, sj := m.Finish-m.Arrival, s.Finish-s.Arrival
		x, y = append(x, mj), append(y, sj)
		if mj > 0 {
			errs = append(errs, math.Abs(sj-mj)/mj*100)
		}
	}
	if len(x) < 2 {
		return PerRequest{}, false
	}
	sort.Float64s(errs)
	pr := PerRequest{Paired: len(x), Correlation: Num(stat.Correlation(x, y, nil)), MeanAbsPct: Num(math.NaN()), P90AbsPct: Num(math.NaN())}
	if len(errs) > 0 {
		pr.MeanAbsPct, pr.P90AbsPct = Num(stat.Mean(errs, nil)), Num(errs[len(errs)*9/10])
	}
	return pr, true
}

var fidelityMetrics = []struct {
	name string
	get  func(*Summary) float64
}{
	{"ttft mean", func(s *Summary) float64 { return s.TTFT.Mean }},
	{"ttft p50", func(s *Summary) float64 { return s.TTFT.P50 }},
	{"ttft p90", func(s *Summary) float64 { return s.TTFT.P90 }},
	{"ttft p99", func(s *Summary) float64 { return s.TTFT.P99 }},
	{"tpot mean", func(s *Summary) float64 { return s.TPOT.Mean }},
	{"tpot p50", func(s *Summary) float64 { return s.TPOT.P50 }},
	{"tpot p90", func(s *Summary) float64 { return s.TPOT.P90 }},
	{"tpot p99", func(s *Summary) float64 { return s.TPOT.P99 }},
	{"jct mean", func(s *Summary) float64 { return s.JCT.Mean }},
	{"jct p50", func(s *Summary) float64 { return s.JCT.P50 }},
	{"jct p90", func(s *Summary) float64 { return s.JCT.P90 }},
	{"jct p99", func(s *Summary) float64 { return s.JCT.P99 }},
}

// CheckFidelity pairs measured runs (Setup["source"] replay or bench) and
// sim runs by label and measures the simulator's error, per metric and,
// where both keep their records, request by request. It returns nil unless
// both kinds are present.
func CheckFidelity(runs []*Run) *Fidelity {
	rep, sim := map[string]*Run{}, map[string]*Run{}
	var order []string
	for _, r := range runs {
		switch r.Setup["source"] {
		case "replay", "bench":
			if _, ok := rep[r.Label]; !ok {
				order = append(order, r.Label)
			}
			rep[r.Label] = r
		case "sim":
			sim[r.Label] = r
		}
	}
	f := &Fidelity{ChangeError: map[string]Num{}, Measured: map[string]string{}, Requests: map[string]PerRequest{}}
	var paired []string
	for _, l := range order {
		s, ok := sim[l]
		if !ok {
			continue
		}
		paired = append(paired, l)
		f.Measured[l] = rep[l].Setup["source"]
		if pr, ok := perRequest(rep[l], s); ok {
			f.Requests[l] = pr
		}
		for _, m := range fidelityMetrics {
			rv, sv := m.get(&rep[l].Summary), m.get(&s.Summary)
			f.Rows = append(f.Rows, FidelityRow{Label: l, Metric: m.name, Replay: rv, Sim: sv, ErrorPct: Num(pct(sv, rv))})
		}
	}
	if len(paired) == 0 {
		return nil
	}
	if len(paired) > 1 {
		f.Baseline = paired[0]
		b := paired[0]
		for _, l := range paired[1:] {
			dr := pct(rep[l].Summary.JCT.Mean, rep[b].Summary.JCT.Mean)
			ds := pct(sim[l].Summary.JCT.Mean, sim[b].Summary.JCT.Mean)
			f.ChangeError[l] = Num(ds - dr)
		}
	}
	return f
}

func pct(v, base float64) float64 {
	if base == 0 {
		return math.NaN()
	}
	return (v - base) / base * 100
}

// WriteFidelity writes the fidelity table: one row per metric, a column
// pair (replay, sim error) per policy.
func WriteFidelity(w io.Writer, f *Fidelity) error {
	var labels []string
	seen := map[string]bool{}
	for _, r := range f.Rows {
		if !seen[r.Label] {
			seen[r.Label] = true
			labels = append(labels, r.Label)
		}
	}
	var sb strings.Builder
	sb.WriteString("simulator fidelity: simulated against measured, per policy\n")
	fmt.Fprintf(&sb, "%-12s", "metric")
	for _, l := range labels {
		fmt.Fprintf(&sb, "%14s %10s %9s", l+" "+f.Measured[l], "sim", "error")
	}
	sb.WriteByte('\n')
	for _, m := range fidelityMetrics {
		fmt.Fprintf(&sb, "%-12s", m.name)
		for _, l := range labels {
			for _, r := range f.Rows {
				if r.Label == l && r.Metric == m.name {
					fmt.Fprintf(&sb, "%14s %10s %+8.1f%%", formatNum(r.Replay), formatNum(r.Sim), float64(r.ErrorPct))
				}
			}
		}
		sb.WriteByte('\n')
	}
	for _, l := range labels {
		if e, ok := f.ChangeError[l]; ok {
			fmt.Fprintf(&sb, "change of mean JCT, %s against %s: simulated minus measured = %+.1f percentage points\n", l, f.Baseline, float64(e))
		}
	}
	for _, l := range labels {
		if pr, ok := f.Requests[l]; ok {
			fmt.Fprintf(&sb, "%s request by request (%d paired by id): JCT correlation %.3f, absolute JCT error mean %.1f%%, p90 %.1f%%\n",
				l, pr.Paired, float64(pr.Correlation), float64(pr.MeanAbsPct), float64(pr.P90AbsPct))
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
