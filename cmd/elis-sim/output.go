package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/internal/hist"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/report"
)

// emitRuns does what run and replay both do with their results: --out
// files (unless written already), --plot, then JSON or the setup line and
// the side-by-side table.
func emitRuns(c *cli.Context, runs []*report.Run, written bool) error {
	if out := c.String("out"); out != "" && !written {
		for _, r := range runs {
			if err := writeRun(out, r, len(runs)); err != nil {
				return err
			}
		}
	}
	if p := c.String("plot"); p != "" {
		if err := plotRuns(runs, c.String("plot-metric"), c.Bool("log-x"), p); err != nil {
			return err
		}
	}
	// An interrupted run covers fewer requests than the runs before it:
	// it is written and shown alone, never tabled against them, and the
	// command fails.
	last := runs[len(runs)-1]
	interrupted := last.Setup["interrupted"]
	if interrupted != "" && len(runs) > 1 {
		runs = runs[:len(runs)-1]
	}
	if c.Bool("json") {
		if err := printJSON(runs); err != nil {
			return err
		}
	} else {
		fmt.Println(runs[0].Setup["summary"])
		if err := report.SideBySide(os.Stdout, runs); err != nil {
			return err
		}
	}
	if interrupted != "" {
		left := ""
		if runs[len(runs)-1] != last {
			left = "; it is left out of the table"
		}
		return &exitStatus{exitInterrupted, fmt.Errorf("interrupted: %s: %s%s (its run file is marked)", last.Label, interrupted, left)}
	}
	return nil
}

// The exit statuses of commands that stop short of their work (bad input
// is 2): interrupted by a signal (the shell's 128 + SIGINT), and a bench
// whose requests failed beyond what --max-failure-rate allows.
const (
	exitInterrupted = 130
	exitFailed      = 1
)

// exitStatus is an error that ends the command with its own status (not
// urfave/cli's ExitCoder, which would exit from inside the app).
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string { return e.err.Error() }
func (e *exitStatus) Unwrap() error { return e.err }

// logPredictions writes the prediction log of the predictive runs and
// prints their accuracy by tokens generated so far.
func logPredictions(path string, runs []*report.Run) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		for _, r := range runs {
			acc := report.AccuracyByProgress(r.Records, 8)
			if len(acc) == 0 {
				continue
			}
			fmt.Fprintf(w, "# %s\n", r.Label)
			if err := report.WritePredictionLog(w, r.Records); err != nil {
				return err
			}
			fmt.Printf("\npredictor accuracy of %s by tokens generated so far:\n", r.Label)
			if err := report.WriteAccuracy(os.Stdout, acc); err != nil {
				return err
			}
		}
		return nil
	})
}

// plotRuns draws one CDF line per run.
func plotRuns(runs []*report.Run, metric string, logX bool, path string) error {
	xlabel, ok := report.PlotMetrics[metric]
	if !ok {
		return badf("--plot-metric %q: valid are %s", metric, strings.Join(report.PlotMetricNames(), ", "))
	}
	var series []report.Series
	for _, r := range runs {
		v, err := report.Values(r, metric)
		if err != nil {
			return bad(err)
		}
		series = append(series, report.Series{Label: r.Label, Values: v})
	}
	title := "CDF of " + strings.SplitN(xlabel, " (", 2)[0]
	if len(runs) > 0 && runs[0].Setup["workload"] != "" {
		title += "\n" + report.Wrap(runs[0].Setup["engine"]+", "+runs[0].Setup["workload"], 80, 2)
	}
	p, err := report.CDF(title, xlabel, logX, series)
	if err != nil {
		return bad(err) // what the runs hold cannot be drawn
	}
	if err := report.Save(p, path); err != nil {
		return bad(err)
	}
	return nil
}

// makeRun summarises records into a run file's contents. errs, when the
// records keep no prediction history, gives the predictor's accuracy
// instead.
func makeRun(label string, setup map[string]string, recs []policies.Record, gaps *hist.H, errs *policies.PredictionErrors, slo report.SLO) *report.Run {
	z := report.NewSummarizer(slo)
	for i := range recs {
		z.Add(&recs[i])
	}
	return summaryRun(label, setup, z, gaps, errs, recs)
}

// summaryRun is a run's contents from its summarizer (records nil when
// they were streamed out).
func summaryRun(label string, setup map[string]string, z *report.Summarizer, gaps *hist.H, errs *policies.PredictionErrors, recs []policies.Record) *report.Run {
	sum := z.Summary(gaps, errs)
	var itl []float64
	if gaps.N() > 0 {
		for i := 0; i <= 200; i++ {
			itl = append(itl, gaps.Quantile(float64(i)/200))
		}
	}
	return &report.Run{Label: label, Setup: setup, Summary: sum, ITLQuantiles: itl, Records: recs}
}

// writeRun writes one of n runs to --out.
func writeRun(out string, r *report.Run, n int) error {
	path := runPath(out, r.Label, n)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return report.WriteRun(path, r)
}

// runPath is where --out puts the run labelled label among n: out itself
// for a single run named .json, else LABEL.json in the directory out.
func runPath(out, label string, n int) string {
	if n == 1 && strings.HasSuffix(out, ".json") {
		return out
	}
	return filepath.Join(out, strings.ReplaceAll(label, "/", "-")+".json")
}

func printJSON(runs []*report.Run) error {
	type brief struct {
		Label   string            `json:"label"`
		Setup   map[string]string `json:"setup"`
		Summary report.Summary    `json:"summary"`
	}
	out := make([]brief, len(runs))
	for i, r := range runs {
		out[i] = brief{r.Label, r.Setup, r.Summary}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// checkOut refuses an output file flag whose path could not be written.
func checkOut(c *cli.Context, flag string) error {
	if err := atomicfile.Check(c.String(flag)); err != nil {
		return badf("--%s: %w", flag, err)
	}
	return nil
}

// checkRunOutputs refuses, before any work, outputs of run or replay that
// could not be written: --out (a .json file for one policy, a directory
// for several), --plot and --log-predictions. Whatever fails here would
// otherwise fail after the run, with some outputs already written.
func checkRunOutputs(c *cli.Context) error {
	n := len(strings.Split(c.String("policy"), ","))
	if out := c.String("out"); out != "" {
		if err := checkOutDir(out, n); err != nil {
			return err
		}
	}
	if err := checkPlot(c.String("plot")); err != nil {
		return err
	}
	if p := c.String("log-predictions"); p != "" {
		if err := atomicfile.Check(p); err != nil {
			return badf("--log-predictions: %w", err)
		}
	}
	return nil
}

// checkPlot refuses a --plot path that is not a .png, .svg or .pdf file
// that can be written; "" is no plot.
func checkPlot(p string) error {
	if p == "" {
		return nil
	}
	switch strings.ToLower(filepath.Ext(p)) {
	case ".png", ".svg", ".pdf":
	default:
		return badf("--plot %s: want a .png, .svg or .pdf name", p)
	}
	if err := atomicfile.Check(p); err != nil {
		return badf("--plot: %w", err)
	}
	return nil
}

// checkOutDir checks --out for runs of n policies: a .json file for one,
// a directory (existing or to be made) for several.
func checkOutDir(out string, n int) error {
	if strings.HasSuffix(out, ".json") {
		if n > 1 {
			return badf("--out %s: %d policies write a file each; give a directory", out, n)
		}
		if err := atomicfile.Check(out); err != nil {
			return badf("--out: %w", err)
		}
		return nil
	}
	if st, err := os.Stat(out); err == nil {
		if !st.IsDir() {
			return badf("--out %s: exists and is not a directory", out)
		}
		if err := atomicfile.CheckDir(out); err != nil {
			return badf("--out: %w", err)
		}
		return nil
	}
	if err := atomicfile.CheckDir(filepath.Dir(out)); err != nil {
		return badf("--out %s: %w", out, err)
	}
	return nil
}
