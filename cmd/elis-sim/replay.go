package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/replay"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
)

// flagsExcept drops the named flags from a list shared with another command.
func flagsExcept(flags []cli.Flag, names ...string) []cli.Flag {
	var out []cli.Flag
	for _, f := range flags {
		keep := true
		for _, n := range names {
			if f.Names()[0] == n {
				keep = false
			}
		}
		if keep {
			out = append(out, f)
		}
	}
	return out
}

func replayCommand() *cli.Command {
	flags := flagsExcept(runFlags(), "model", "gpu", "tp", "cost-model", "workers", "gpu-memory-utilization", "predictor-cost-ms", "check", "log-predictions")
	flags = append(flags, cliFlags(setup.DeviceFlags())...)
	flags = append(flags, cliFlags(setup.ReplayFlags())...)
	return usageErrors(&cli.Command{
		Name:      "replay",
		Usage:     "run a trace for real: the scheduler core driving model forward passes on a device",
		ArgsUsage: "[TRACE]",
		Description: "Without TRACE replays an embedded ELIS-like workload: a short one on the CPU, the run\n" +
			"workload on llama-3.1-8b with --device cuda. Replays TRACE on the wall clock with the same scheduler core and policies as run, executing\n" +
			"every step with the served model (random weights for presets) and running the predictor network\n" +
			"at every prediction point. Output lengths are forced to the trace's. Records have run's format,\n" +
			"so compare and plot take them. Ctrl-C stops arrivals and finishes what is in flight; a second\n" +
			"Ctrl-C abandons it; either way what completed is written.",
		UsageText: "elis-sim replay trace.json --device cpu --model tiny --policy fcfs,isrtf --out replay/",
		Flags:     flags,
		Action:    replayAction,
	})
}

func replayAction(c *cli.Context) error {
	if c.NArg() > 1 {
		return badf("replay wants at most one TRACE, got %d arguments", c.NArg())
	}
	if err := setup.CheckRunOutputs(c); err != nil {
		return err
	}
	tr, desc := setup.DefaultReplayWorkload(c.String("device"), c.Uint64("seed"))
	if c.NArg() == 1 {
		var err error
		if tr, desc, err = setup.LoadTrace(c, c.Args().Slice()); err != nil {
			return err
		}
	}
	rp, err := setup.ParseReplay(c, tr, desc)
	if err != nil {
		return err
	}
	defer rp.Close()
	stop, abandon, done := interrupts("elis-sim: stopping arrivals; Ctrl-C again to abandon requests in flight")
	defer done()
	var runs []*report.Run
	for _, entry := range rp.Entries {
		run, err := rp.Config(entry)
		if err != nil {
			return err
		}
		if rp.Failed > 0 {
			fmt.Fprintf(os.Stderr, "elis-sim: the predictor network gave no number for %d of %d prompts; those requests are predicted +Inf (FCFS-like)\n", rp.Failed, len(tr.Requests))
		}
		run.Config.Stop = stop.Done()
		// A replay runs in real time: say which policy is under way.
		fmt.Fprintf(os.Stderr, "elis-sim replay: %s: %d requests\n", run.Label, len(tr.Requests))
		res, err := replay.Run(abandon, tr, run.Config)
		if err != nil {
			return err
		}
		runs = append(runs, report.NewRun(run.Label, rp.RunSetup(run, res), res.Records, &res.Gaps, &res.Stats.Errors, rp.SLO))
		if res.Interrupted {
			break
		}
	}
	return emitRuns(c, runs, false)
}
