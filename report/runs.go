package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/internal/hist"
	"github.com/elis-sim/elis-sim/policies"
)

// NewRun summarises a run's records into a run file's contents: every
// driver (the simulator, replay, serve, bench) makes its runs so. errs,
// when the records keep no prediction history, gives the predictor's
// accuracy instead; gaps, every inter-token gap, gives the ITL rows and
// the quantiles the CDF plots read.
func NewRun(label string, setup map[string]string, recs []policies.Record, gaps *hist.H, errs *policies.PredictionErrors, slo SLO) *Run {
	z := NewSummarizer(slo)
	for i := range recs {
		z.Add(&recs[i])
	}
	return RunFrom(label, setup, z, gaps, errs, recs)
}

// RunFrom is a run's contents from a Summarizer that saw its records
// (recs nil when they were streamed out).
func RunFrom(label string, setup map[string]string, z *Summarizer, gaps *hist.H, errs *policies.PredictionErrors, recs []policies.Record) *Run {
	sum := z.Summary(gaps, errs)
	var itl []float64
	if gaps.N() > 0 {
		for i := 0; i <= 200; i++ {
			itl = append(itl, gaps.Quantile(float64(i)/200))
		}
	}
	return &Run{Label: label, Setup: setup, Summary: sum, ITLQuantiles: itl, Records: recs}
}

// RunPath is where an --out of out puts the run labelled label among n:
// out itself for a single run named .json, else LABEL.json in the
// directory out.
func RunPath(out, label string, n int) string {
	if n == 1 && strings.HasSuffix(out, ".json") {
		return out
	}
	return filepath.Join(out, strings.ReplaceAll(label, "/", "-")+".json")
}

// WriteRunIn writes one of n runs under out (RunPath), making the
// directory it goes in.
func WriteRunIn(out string, r *Run, n int) error {
	path := RunPath(out, r.Label, n)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return WriteRun(path, r)
}

// PlotRuns draws the CDF of metric, one line per run, into path (.png,
// .svg or .pdf). Its errors are the runs' or the path's: bad input.
func PlotRuns(runs []*Run, metric string, logX bool, path string) error {
	xlabel, ok := PlotMetrics[metric]
	if !ok {
		return fmt.Errorf("%q: valid are %s", metric, strings.Join(PlotMetricNames(), ", "))
	}
	var series []Series
	for _, r := range runs {
		v, err := Values(r, metric)
		if err != nil {
			return err
		}
		series = append(series, Series{Label: r.Label, Values: v})
	}
	title := "CDF of " + strings.SplitN(xlabel, " (", 2)[0]
	if len(runs) > 0 && runs[0].Setup["workload"] != "" {
		title += "\n" + Wrap(runs[0].Setup["engine"]+", "+runs[0].Setup["workload"], 80, 2)
	}
	p, err := CDF(title, xlabel, logX, series)
	if err != nil {
		return err // what the runs hold cannot be drawn
	}
	return Save(p, path)
}

// LogPredictions writes the prediction log of the predictive runs to
// path, atomically, and their accuracy by tokens generated so far to
// summary.
func LogPredictions(path string, runs []*Run, summary io.Writer) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		for _, r := range runs {
			acc := AccuracyByProgress(r.Records, 8)
			if len(acc) == 0 {
				continue
			}
			fmt.Fprintf(w, "# %s\n", r.Label)
			if err := WritePredictionLog(w, r.Records); err != nil {
				return err
			}
			fmt.Fprintf(summary, "\npredictor accuracy of %s by tokens generated so far:\n", r.Label)
			if err := WriteAccuracy(summary, acc); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteBriefs writes runs as JSON without their records: each run's
// label, setup and summary (what --json prints).
func WriteBriefs(w io.Writer, runs []*Run) error {
	type brief struct {
		Label   string            `json:"label"`
		Setup   map[string]string `json:"setup"`
		Summary Summary           `json:"summary"`
	}
	out := make([]brief, len(runs))
	for i, r := range runs {
		out[i] = brief{r.Label, r.Setup, r.Summary}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// ReadRuns reads run files, in order.
func ReadRuns(paths []string) ([]*Run, error) {
	var runs []*Run
	for _, p := range paths {
		r, err := ReadRun(p)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// WriteCompareJSON writes a comparison's rows, and the simulator's
// fidelity when there is one, as compare --json prints them.
func WriteCompareJSON(w io.Writer, rows []Row, fid *Fidelity) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Rows     []Row     `json:"rows"`
		Fidelity *Fidelity `json:"fidelity,omitempty"`
	}{rows, fid})
}

// SplitInterrupted takes an interrupted last run out of runs: it covers
// fewer requests than the runs before it, so it is shown alone, never
// tabled against them. It returns the runs to table and the interrupted
// one (nil when none was); a lone interrupted run stays in the table.
func SplitInterrupted(runs []*Run) ([]*Run, *Run) {
	last := runs[len(runs)-1]
	if last.Setup["interrupted"] == "" {
		return runs, nil
	}
	if len(runs) > 1 {
		runs = runs[:len(runs)-1]
	}
	return runs, last
}

// Rejections say, of each run that rejected requests, how many, since
// its latency rows describe the others.
func Rejections(runs []*Run) []string {
	var out []string
	for _, r := range runs {
		if s := r.Summary; s.Rejected > 0 {
			out = append(out, fmt.Sprintf("%s: %d of %d requests rejected (longer than the context or the whole KV cache); the latency rows describe the %d that finished",
				r.Label, s.Rejected, s.Requests, s.Finished))
		}
	}
	return out
}
