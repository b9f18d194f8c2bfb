package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/report"
)

// emitRuns does what run and replay both do with their results: --out
// files (unless written already), --plot, then JSON or the setup line and
// the side-by-side table.
func emitRuns(c *cli.Context, runs []*report.Run, written bool) error {
	if out := c.String("out"); out != "" && !written {
		for _, r := range runs {
			if err := report.WriteRunIn(out, r, len(runs)); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
		}
	}
	if p := c.String("plot"); p != "" {
		if err := plotRuns(runs, "plot-metric", c.String("plot-metric"), c.Bool("log-x"), p); err != nil {
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
	for _, r := range runs {
		if s := r.Summary; s.Rejected > 0 && !c.Bool("json") { // JSON has the counts
			fmt.Fprintf(os.Stderr, "elis-sim: %s: %d of %d requests rejected (longer than the context or the whole KV cache); the latency rows describe the %d that finished\n",
				r.Label, s.Rejected, s.Requests, s.Finished)
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

// plotRuns draws the runs' CDFs of metric, which the user named with
// --flag: a bad metric is named by the flag of the command they ran.
func plotRuns(runs []*report.Run, flag, metric string, logX bool, path string) error {
	if _, ok := report.PlotMetrics[metric]; !ok {
		return badf("--%s %q: valid are %s", flag, metric, strings.Join(report.PlotMetricNames(), ", "))
	}
	return bad(report.PlotRuns(runs, metric, logX, path))
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
	if err := atomicfile.CheckDir(out); err != nil { // made, as the user named it
		return badf("--out %s: %w", out, err)
	}
	return nil
}
