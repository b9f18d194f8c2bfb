package report

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Metric is one column of a comparison: a number read off a summary.
type Metric struct {
	Name string `json:"name"`
	Unit string `json:"unit"`
	get  func(*Summary) float64
}

// CompareMetrics are the columns of "elis-sim compare". Names end in
// their unit and values are in SI units, as in run's JSON (tpot_s) and
// sweep's CSV (tpot_mean_s).
var CompareMetrics = []Metric{
	{"jct_mean_s", "s", func(s *Summary) float64 { return s.JCT.Mean }},
	{"jct_p99_s", "s", func(s *Summary) float64 { return s.JCT.P99 }},
	{"ttft_mean_s", "s", func(s *Summary) float64 { return s.TTFT.Mean }},
	{"ttft_p99_s", "s", func(s *Summary) float64 { return s.TTFT.P99 }},
	{"tpot_mean_s", "s", func(s *Summary) float64 { return s.TPOT.Mean }},
	{"queue_mean_s", "s", func(s *Summary) float64 { return nanIfZero(s.Queue.N, s.Queue.Mean) }}, // a client cannot see queueing
	{"throughput_rps", "req/s", func(s *Summary) float64 { return s.RPS }},
	{"goodput_rps", "req/s", func(s *Summary) float64 {
		if s.Goodput == nil {
			return math.NaN()
		}
		return s.Goodput.RPS
	}},
	{"preemptions", "", preemptions},
}

// Comparable reports whether runs can be set side by side: none was
// interrupted, and all cover the same number of requests. Its error names
// each run that differs and how.
func Comparable(runs []*Run, names []string) error {
	var bad []string
	for i, r := range runs {
		name := r.Label
		if i < len(names) {
			name = names[i]
		}
		switch {
		case r.Setup["interrupted"] != "":
			bad = append(bad, fmt.Sprintf("%s was interrupted (%s)", name, r.Setup["interrupted"]))
		case r.Summary.Requests != runs[0].Summary.Requests:
			bad = append(bad, fmt.Sprintf("%s covers %d requests, %s %d", name, r.Summary.Requests, first(names, runs), runs[0].Summary.Requests))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the runs did not cover the same requests: %s", strings.Join(bad, "; "))
	}
	return nil
}

func first(names []string, runs []*Run) string {
	if len(names) > 0 {
		return names[0]
	}
	return runs[0].Label
}

// Row is one run (or one label's runs over several seeds) in a comparison.
type Row struct {
	Label  string              `json:"label"`
	Runs   int                 `json:"runs"`
	Values map[string]Estimate `json:"values"`
	// Change is the relative change of each metric's mean against the
	// first row, in percent.
	Change map[string]Num `json:"change_pct"`
}

// Compare groups runs by label, in order of first appearance, and
// estimates each metric's mean over a group's runs (its seeds).
func Compare(runs []*Run) []Row {
	var rows []Row
	index := map[string]int{}
	var groups [][]*Run
	key := func(r *Run) string {
		if r.Setup["source"] == "replay" { // replayed and simulated runs of a policy stay apart
			return r.Label + " (replay)"
		}
		return r.Label
	}
	for _, r := range runs {
		i, ok := index[key(r)]
		if !ok {
			i = len(groups)
			index[key(r)] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	for _, g := range groups {
		row := Row{Label: key(g[0]), Runs: len(g), Values: map[string]Estimate{}, Change: map[string]Num{}}
		for _, m := range CompareMetrics {
			x := make([]float64, 0, len(g))
			for _, r := range g {
				if v := m.get(&r.Summary); !math.IsNaN(v) {
					x = append(x, v)
				}
			}
			if len(x) > 0 {
				row.Values[m.Name] = MeanCI(x)
			}
		}
		rows = append(rows, row)
	}
	for i := range rows {
		for name, e := range rows[i].Values {
			if base, ok := rows[0].Values[name]; ok && base.Mean != 0 {
				rows[i].Change[name] = Num((e.Mean - base.Mean) / base.Mean * 100)
			}
		}
	}
	return rows
}

// WriteCompare writes rows as a table: one row per run, each metric as
// mean (± 95% CI when there are seeds), then its change against the first
// row.
func WriteCompare(w io.Writer, rows []Row) error {
	var cols []Metric
	for _, m := range CompareMetrics {
		for _, r := range rows {
			if _, ok := r.Values[m.Name]; ok {
				cols = append(cols, m)
				break
			}
		}
	}
	labelW := 8
	for _, r := range rows {
		labelW = max(labelW, len(r.Label)+2)
	}
	cells := make([][]string, len(rows))
	widths := make([]int, len(cols))
	heads := make([]string, len(cols))
	for j, m := range cols {
		heads[j] = m.Name // its name ends in its unit
		widths[j] = len(heads[j])
	}
	for i, r := range rows {
		cells[i] = make([]string, len(cols))
		for j, m := range cols {
			e, ok := r.Values[m.Name]
			s := "-"
			if ok {
				s = formatNum(e.Mean)
				if m.Unit == "" && e.Mean == math.Trunc(e.Mean) { // a count
					s = fmt.Sprintf("%.0f", e.Mean)
				}
				if ci := float64(e.CI95); !math.IsNaN(ci) {
					s += " ±" + formatNum(ci)
				}
				if i > 0 {
					s += " (" + change(rows[0].Values[m.Name].Mean, e.Mean) + ")"
				}
			}
			cells[i][j] = s
			widths[j] = max(widths[j], len(s))
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-*s%6s", labelW, "run", "seeds")
	for j := range cols {
		fmt.Fprintf(&sb, "  %*s", widths[j], heads[j])
	}
	sb.WriteByte('\n')
	for i, r := range rows {
		fmt.Fprintf(&sb, "%-*s%6d", labelW, r.Label, r.Runs)
		for j := range cols {
			fmt.Fprintf(&sb, "  %*s", widths[j], cells[i][j])
		}
		sb.WriteByte('\n')
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
