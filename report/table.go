package report

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// metricRow is one line of the side-by-side table.
type metricRow struct {
	name string
	unit string
	get  func(*Summary) float64
}

// rowKinds are the rows that are not measures.
var rowKinds = map[string]rowKind{"preemptions": count, "rejected": count, "not sent": count, "requests meeting the SLO": share,
	"prefill tokens computed": count, "prefix cache hit rate": share}

// rowKind says how a row's values print and change.
type rowKind int

const (
	measure rowKind = iota // a quantity: 3 significant digits, change in %
	count                  // a whole number: no decimals, change in %
	share                  // a percentage: change in percentage points
)

func distRows(name string, d func(*Summary) *Dist, unit string, scale float64) []metricRow {
	// An empty distribution is unmeasured (bench cannot see queueing), not 0.
	val := func(v func(*Dist) float64) func(*Summary) float64 {
		return func(s *Summary) float64 {
			if d(s).N == 0 {
				return math.NaN()
			}
			return v(d(s)) * scale
		}
	}
	return []metricRow{
		{name + " mean", unit, val(func(d *Dist) float64 { return d.Mean })},
		{name + " p50", unit, val(func(d *Dist) float64 { return d.P50 })},
		{name + " p90", unit, val(func(d *Dist) float64 { return d.P90 })},
		{name + " p95", unit, val(func(d *Dist) float64 { return d.P95 })},
		{name + " p99", unit, val(func(d *Dist) float64 { return d.P99 })},
	}
}

func tableRows() []metricRow {
	var rows []metricRow
	rows = append(rows, distRows("JCT (end-to-end)", func(s *Summary) *Dist { return &s.JCT }, "s", 1)...)
	rows = append(rows, distRows("queueing delay", func(s *Summary) *Dist { return &s.Queue }, "s", 1)...)
	rows = append(rows, distRows("TTFT", func(s *Summary) *Dist { return &s.TTFT }, "s", 1)...)
	rows = append(rows, distRows("TPOT", func(s *Summary) *Dist { return &s.TPOT }, "ms", 1e3)...)
	rows = append(rows, distRows("inter-token gap", func(s *Summary) *Dist { return &s.ITL }, "ms", 1e3)...)
	rows = append(rows,
		metricRow{"throughput", "req/s", func(s *Summary) float64 { return s.RPS }},
		metricRow{"throughput", "tok/s", func(s *Summary) float64 { return s.TPS }},
		metricRow{"goodput", "req/s", func(s *Summary) float64 {
			if s.Goodput == nil {
				return math.NaN()
			}
			return s.Goodput.RPS
		}},
		metricRow{"requests meeting the SLO", "%", func(s *Summary) float64 {
			if s.Goodput == nil {
				return math.NaN()
			}
			return s.Goodput.Fraction * 100
		}},
		metricRow{"preemptions", "", preemptions},
		metricRow{"rejected", "", func(s *Summary) float64 { return float64(s.Rejected) }},
		metricRow{"not sent", "", func(s *Summary) float64 { return nanIfZero(s.NotSent, float64(s.NotSent)) }},
		metricRow{"prefill tokens computed", "", func(s *Summary) float64 {
			if s.PrefixCache == nil {
				return math.NaN()
			}
			return float64(s.PrefixCache.Computed)
		}},
		metricRow{"prefix cache hit rate", "%", func(s *Summary) float64 {
			if s.PrefixCache == nil {
				return math.NaN()
			}
			return s.PrefixCache.HitRate * 100
		}},
		metricRow{"worst queueing delay", "s", func(s *Summary) float64 { return nanIfZero(s.Queue.N, s.MaxWait) }},
		metricRow{"Jain fairness (norm. latency)", "", func(s *Summary) float64 { return s.JainJCT }},
		metricRow{"predictor MAE", "tokens", func(s *Summary) float64 { return nanIfZero(s.Predictor.N, s.Predictor.MAE) }},
		metricRow{"predictor R^2", "", func(s *Summary) float64 { return nanIfZero(s.Predictor.N, s.Predictor.R2) }},
	)
	return rows
}

// preemptions is NaN (shown "-", not measured) where the run could not
// see them.
func preemptions(s *Summary) float64 {
	if s.PreemptionsUnmeasured {
		return math.NaN()
	}
	return float64(s.Preemptions)
}

func nanIfZero(n int, v float64) float64 {
	if n == 0 {
		return math.NaN()
	}
	return v
}

// SideBySide writes one column per run and, for each run after the first
// (the baseline), its change against the baseline: in percent, or in
// percentage points for a share (the requests meeting the SLO).
func SideBySide(w io.Writer, runs []*Run) error {
	if len(runs) == 0 {
		return nil
	}
	const first = 32
	width := 12
	for _, r := range runs {
		width = max(width, len(r.Label)+2)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-*s", first, "metric")
	for _, r := range runs {
		fmt.Fprintf(&sb, "%*s", width, r.Label)
	}
	for _, r := range runs[1:] {
		fmt.Fprintf(&sb, "%*s", width+2, "Δ"+r.Label)
	}
	sb.WriteByte('\n')
	for _, row := range tableRows() {
		name := row.name
		if row.unit != "" {
			name += " (" + row.unit + ")"
		}
		vals := make([]float64, len(runs))
		allNaN := true
		for i, r := range runs {
			vals[i] = row.get(&r.Summary)
			allNaN = allNaN && math.IsNaN(vals[i])
		}
		if allNaN {
			continue
		}
		fmt.Fprintf(&sb, "%-*s", first, name)
		for _, v := range vals {
			f := formatNum(v)
			if rowKinds[row.name] == count && !math.IsNaN(v) {
				f = fmt.Sprintf("%.0f", v)
			}
			fmt.Fprintf(&sb, "%*s", width, f)
		}
		for _, v := range vals[1:] {
			c := change(vals[0], v)
			if rowKinds[row.name] == share && !math.IsNaN(vals[0]) && !math.IsNaN(v) {
				c = fmt.Sprintf("%+.1f pt", v-vals[0])
			}
			fmt.Fprintf(&sb, "%*s", width+1, c)
		}
		sb.WriteByte('\n')
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

func change(base, v float64) string {
	if math.IsNaN(base) || math.IsNaN(v) || base == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.1f%%", (v-base)/base*100)
}

func formatNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 0.1:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.4f", v)
}
