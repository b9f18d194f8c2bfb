package report

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// FidelityRow is the simulator's error on one metric of one policy:
// (simulated - replayed) / replayed, in percent.
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

// CheckFidelity pairs replay and sim runs (Setup["source"]) by label and
// measures the simulator's error. It returns nil unless both kinds are
// present.
func CheckFidelity(runs []*Run) *Fidelity {
	rep, sim := map[string]*Run{}, map[string]*Run{}
	var order []string
	for _, r := range runs {
		switch r.Setup["source"] {
		case "replay":
			if _, ok := rep[r.Label]; !ok {
				order = append(order, r.Label)
			}
			rep[r.Label] = r
		case "sim":
			sim[r.Label] = r
		}
	}
	f := &Fidelity{ChangeError: map[string]Num{}}
	var paired []string
	for _, l := range order {
		s, ok := sim[l]
		if !ok {
			continue
		}
		paired = append(paired, l)
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
	sb.WriteString("simulator fidelity: simulated against replayed, per policy\n")
	fmt.Fprintf(&sb, "%-12s", "metric")
	for _, l := range labels {
		fmt.Fprintf(&sb, "%14s %10s %9s", l+" replay", "sim", "error")
	}
	sb.WriteByte('\n')
	for _, m := range fidelityMetrics {
		fmt.Fprintf(&sb, "%-12s", m.name)
		for _, l := range labels {
			for _, r := range f.Rows {
				if r.Label == l && r.Metric == m.name {
					fmt.Fprintf(&sb, "%14s %10s %8.1f%%", formatNum(r.Replay), formatNum(r.Sim), float64(r.ErrorPct))
				}
			}
		}
		sb.WriteByte('\n')
	}
	for _, l := range labels {
		if e, ok := f.ChangeError[l]; ok {
			fmt.Fprintf(&sb, "change of mean JCT, %s against %s: simulated minus replayed = %+.1f percentage points\n", l, f.Baseline, float64(e))
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
