package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
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
	return append(simFlags(), cliFlags(setup.RunOutputFlags())...)
}

func runAction(c *cli.Context) error {
	if err := setup.CheckRunOutputs(c); err != nil {
		return err
	}
	su, err := setup.ParseSim(c, c.NArg() == 0)
	if err != nil {
		return err
	}
	stream, each := su.Outputs(c)
	runs, err := su.Run(c, c.Args().Slice(), stream, each)
	if err != nil {
		return err
	}
	if err := emitRuns(c, runs, c.String("out") != ""); err != nil {
		return err
	}
	if p := c.String("log-predictions"); p != "" && !c.Bool("json") {
		return report.LogPredictions(p, runs, os.Stdout)
	}
	return nil
}
