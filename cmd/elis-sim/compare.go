package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
)

func compareCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:      "compare",
		Usage:     "compare run files: one row per run, change against the first",
		ArgsUsage: "RUN.json ...",
		Description: "Reads run files written by \"elis-sim run --out\" or \"elis-sim replay --out\". Runs with the same label\n" +
			"and source (several seeds) form one row, their metrics averaged with 95% confidence intervals; the\n" +
			"first row is the baseline. Given replay and simulated runs of the same policies, it also prints the\n" +
			"simulator's error per metric and in the change between policies. Runs that were interrupted or\n" +
			"cover different numbers of requests are refused (exit 2) unless --allow-partial.",
		UsageText: "elis-sim compare results/fcfs.json results/isrtf.json",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "allow-partial", Usage: "compare runs that were interrupted or cover different numbers of requests (flagged above the table)"}},
		Action: func(c *cli.Context) error {
			runs, err := readRuns(c)
			if err != nil {
				return err
			}
			if err := report.Comparable(runs, c.Args().Slice()); err != nil {
				if !c.Bool("allow-partial") {
					return bad(fmt.Errorf("%w; compare them anyway with --allow-partial", err))
				}
				fmt.Fprintf(os.Stderr, "elis-sim compare: warning: %v\n", err)
			}
			rows := report.Compare(runs)
			fid := report.CheckFidelity(runs)
			if c.Bool("json") {
				return report.WriteCompareJSON(os.Stdout, rows, fid)
			}
			if err := report.WriteCompare(os.Stdout, rows); err != nil {
				return err
			}
			if fid != nil {
				fmt.Println()
				return report.WriteFidelity(os.Stdout, fid)
			}
			return nil
		},
	})
}

func readRuns(c *cli.Context) ([]*report.Run, error) {
	if c.NArg() == 0 {
		return nil, badf("want at least one run file (written by elis-sim run --out)")
	}
	runs, err := report.ReadRuns(c.Args().Slice())
	return runs, bad(err)
}

func plotCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:      "plot",
		Usage:     "draw empirical CDFs of a metric, one line per run file",
		ArgsUsage: "RUN.json ...",
		UsageText: "elis-sim plot results/fcfs.json results/isrtf.json --metric ttft --log-x -o ttft.png",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output file: .png, .svg or .pdf"},
			&cli.StringFlag{Name: "metric", Value: "jct", Usage: "jct, ttft, tpot, itl, queue or norm"},
			&cli.BoolFlag{Name: "log-x", Usage: "log-scale x axis"},
		},
		Action: func(c *cli.Context) error {
			if err := setup.CheckOut(c, "out"); err != nil {
				return err
			}
			runs, err := readRuns(c)
			if err != nil {
				return err
			}
			return plotRuns(runs, "metric", c.String("metric"), c.Bool("log-x"), c.String("out"))
		},
	})
}
