package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
	"github.com/elis-sim/elis-sim/traces"
)

func runCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:      "run",
		Usage:     "simulate a trace under one or more scheduling policies",
		ArgsUsage: "[TRACE]",
		Description: "Simulates TRACE (a native trace, .json or .jsonl) on vLLM-like engines under each policy and prints\n" +
			"their metrics side by side. Without TRACE it runs the embedded ELIS-like workload.",
		UsageText: "elis-sim run trace.json --policy fcfs,isrtf --model llama-2-13b --gpu a100-80g --max-num-seqs 4",
		Flags:     runFlags(),
		Action:    runAction,
	})
}

// runFlags are run's own output flags.
func runFlags() []cli.Flag {
	return append(simFlags(),
		&cli.BoolFlag{Name: "json", Usage: "print the summaries as JSON"},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write run files with per-request records: a .json file for one policy, a directory for several"},
		&cli.StringFlag{Name: "plot", Usage: "write a CDF plot of the policies to this .png, .svg or .pdf file"},
		&cli.StringFlag{Name: "plot-metric", Value: "jct", Usage: "metric of --plot: " + strings.Join(report.PlotMetricNames(), ", ")},
		&cli.BoolFlag{Name: "log-x", Usage: "log-scale x axis in --plot"},
		&cli.StringFlag{Name: "log-predictions", Usage: "write every prediction event to this file and print the predictor's accuracy by tokens generated"},
	)
}

// loadTrace reads TRACE, or builds the embedded workload.
func loadTrace(c *cli.Context) (*traces.Trace, string, error) {
	if c.NArg() > 1 {
		return nil, "", badf("want at most one TRACE, got %d arguments", c.NArg())
	}
	if c.NArg() == 1 {
		t, err := traces.ReadFile(c.Args().First())
		if err != nil {
			return nil, "", bad(err)
		}
		s := traces.Summarize(t)
		return t, fmt.Sprintf("%s: %d requests over %.0f s (%.3g req/s)", c.Args().First(), s.Requests, s.Duration, s.Rate), nil
	}
	t, desc := setup.DefaultWorkload(c.Uint64("seed"))
	return t, desc, nil
}

func runAction(c *cli.Context) error {
	if err := setup.CheckRunOutputs(c); err != nil {
		return err
	}
	tr, desc, err := loadTrace(c)
	if err != nil {
		return err
	}
	su, err := setup.ParseSim(c, c.NArg() == 0)
	if err != nil {
		return err
	}
	// Records stream out of the simulator into the summary, the run files
	// and the plot's sample as they finish; only the prediction log, which
	// reads them all at the end, keeps them (and writes the files then).
	out := c.String("out")
	var stream *setup.Stream
	var each func(*report.Run) error
	if c.String("log-predictions") == "" {
		stream = &setup.Stream{Out: out}
		if c.String("plot") != "" {
			stream.PlotMetric = c.String("plot-metric")
		}
	} else if out != "" {
		each = func(r *report.Run) error { return report.WriteRunIn(out, r, len(su.Policies)) }
	}
	runs, err := su.RunAll(tr, desc, stream, each)
	if err != nil {
		return err
	}
	if err := emitRuns(c, runs, out != ""); err != nil {
		return err
	}
	if p := c.String("log-predictions"); p != "" && !c.Bool("json") {
		return report.LogPredictions(p, runs, os.Stdout)
	}
	return nil
}
