package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat"
)

// SweepRun is one cell of a load sweep: a run and where it sits in the grid.
type SweepRun struct {
	Run    *Run
	Policy string
	Load   float64 // multiplier of the arrival rate
	Seed   uint64
	MAE    float64  // target predictor error, 0 when the run's own
	Axes   []string // the values of the sweep's other axes, in its order
	Cell   string   // the cell's key: its record is cells/<key>.json
}

// WriteSweepCSV writes one row per run with its grid position (its
// values of the axes named, then its cell key last) and headline metrics.
func WriteSweepCSV(w io.Writer, axes []string, runs []SweepRun) error {
	cw := csv.NewWriter(w)
	head := []string{"label", "policy", "load", "seed", "predictor_mae_target"}
	head = append(head, axes...)
	head = append(head, "requests", "jct_mean_s", "jct_p50_s", "jct_p99_s",
		"ttft_mean_s", "ttft_p99_s", "tpot_mean_s", "queue_mean_s", "throughput_rps", "preemptions", "predictor_mae", "predictor_r2", "cell")
	cw.Write(head)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, sr := range runs {
		s := &sr.Run.Summary
		row := []string{sr.Run.Label, sr.Policy, f(sr.Load), strconv.FormatUint(sr.Seed, 10), f(sr.MAE)}
		for i := range axes {
			v := ""
			if i < len(sr.Axes) {
				v = sr.Axes[i]
			}
			row = append(row, v)
		}
		row = append(row, strconv.Itoa(s.Requests),
			f(s.JCT.Mean), f(s.JCT.P50), f(s.JCT.P99), f(s.TTFT.Mean), f(s.TTFT.P99), f(s.TPOT.Mean), f(s.Queue.Mean), f(s.RPS),
			strconv.Itoa(s.Preemptions), f(s.Predictor.MAE), f(s.Predictor.R2), sr.Cell)
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}

// Quantiles are x's values at quantiles 0, 1/n, ..., 1 (empirical): a
// run's distribution in n+1 numbers, what a CDF plot needs of it.
func Quantiles(x []float64, n int) []float64 {
	if len(x) == 0 {
		return nil
	}
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	out := make([]float64, n+1)
	for i := range out {
		out[i] = stat.Quantile(float64(i)/float64(n), stat.Empirical, s, nil)
	}
	return out
}

// SweepLoad is what a sweep shows at one load: the comparison table's rows
// (labels averaged over seeds) and every request's JCT per label.
type SweepLoad struct {
	Load float64
	Rows []Row
	JCTs []Series
}

// Sweep aggregates a sweep: per load, the comparison and the JCT samples;
// per label, mean and P99 JCT against load (with 95% intervals over
// seeds), in label order of first appearance.
func Sweep(runs []SweepRun, loads []float64) ([]SweepLoad, map[string][]LoadPoint, []string) {
	curves := map[string][]LoadPoint{}
	var order []string
	var out []SweepLoad
	for _, load := range loads {
		var at []*Run
		for _, sr := range runs {
			if sr.Load == load {
				at = append(at, sr.Run)
			}
		}
		sl := SweepLoad{Load: load, Rows: Compare(at)}
		for _, row := range sl.Rows {
			if _, ok := curves[row.Label]; !ok {
				order = append(order, row.Label)
			}
			var means, p99s, all []float64
			n := 0
			for _, r := range at {
				if r.Label == row.Label {
					means = append(means, r.Summary.JCT.Mean)
					p99s = append(p99s, r.Summary.JCT.P99)
					v, _ := Values(r, "jct")
					all = append(all, v...)
					n += r.Summary.JCT.N // the requests behind its stored quantiles
				}
			}
			curves[row.Label] = append(curves[row.Label], LoadPoint{Load: load, Mean: MeanCI(means), P99: MeanCI(p99s)})
			sl.JCTs = append(sl.JCTs, Series{Label: row.Label, Values: all, N: n})
		}
		out = append(out, sl)
	}
	return out, curves, order
}

// WriteSweepSummary writes the comparison table of every load.
func WriteSweepSummary(w io.Writer, head string, loads []SweepLoad) error {
	var sb strings.Builder
	sb.WriteString(head)
	for _, l := range loads {
		fmt.Fprintf(&sb, "\nload %gx\n", l.Load)
		if err := WriteCompare(&sb, l.Rows); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
