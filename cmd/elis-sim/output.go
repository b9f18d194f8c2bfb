package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

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
	runs, last := report.SplitInterrupted(runs)
	if c.Bool("json") {
		if err := report.WriteBriefs(os.Stdout, runs); err != nil {
			return err
		}
	} else {
		fmt.Println(runs[0].Setup["summary"])
		if err := report.SideBySide(os.Stdout, runs); err != nil {
			return err
		}
	}
	for _, w := range report.Rejections(runs) {
		if !c.Bool("json") { // JSON has the counts
			fmt.Fprintf(os.Stderr, "elis-sim: %s\n", w)
		}
	}
	if last != nil {
		left := ""
		if runs[len(runs)-1] != last {
			left = "; it is left out of the table"
		}
		return &exitStatus{exitInterrupted, fmt.Errorf("interrupted: %s: %s%s (its run file is marked)", last.Label, last.Setup["interrupted"], left)}
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
