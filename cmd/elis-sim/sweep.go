package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/elis-sim/elis-sim/experiment"
	"github.com/elis-sim/elis-sim/setup"
)

func sweepCommand() *cli.Command {
	flags := append(policyFlag(simFlags(), setup.SweepPolicies, ""), cliFlags(experiment.GridFlags())...)
	return usageErrors(&cli.Command{
		Name:  "sweep",
		Usage: "run a grid of simulations (policies x loads x seeds x any run flag) and report latency against load",
		Description: "A spec file (--spec exp.yaml) names the grid; without one, the flags do, and it runs the three\n" +
			"scenarios of the ISRTF test guide. Each cell's record goes to OUT/cells/<key>.json as it\n" +
			"finishes, keyed by a hash of everything that determines its result, so a rerun skips what is\n" +
			"done. For each workload it writes results.csv (every run), summary.txt (a comparison per\n" +
			"load), load.png (mean and P99 JCT against load), cdf-<load>x.png, pareto-<load>x.png (three\n" +
			"or more lines); long-output also predictions.log. With --shard it runs a share of the cells\n" +
			"and \"elis-sim sweep merge\" gathers the shards.",
		UsageText: "elis-sim sweep --spec exp.yaml -o out\n" +
			"elis-sim sweep --policy fcfs,isrtf,srpt-oracle --loads 1,2,3,4,5 --seeds 5 -o sweep\n" +
			"elis-sim sweep --spec exp.yaml --shard 2/4 -o out-2 && elis-sim sweep merge out-*/ -o all",
		Flags:       flags,
		Action:      sweepAction,
		Subcommands: []*cli.Command{sweepMergeCommand()},
	})
}

func sweepMergeCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:      "merge",
		Usage:     "gather the cells of sharded sweeps into one output: results.csv, summaries and plots",
		UsageText: "elis-sim sweep merge out-0 out-1 out-2 out-3 -o all",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output directory"},
			&cli.BoolFlag{Name: "allow-missing", Usage: "report what is there when cells are missing (else: list them and write nothing)"},
		},
		Action: sweepMergeAction,
	})
}

func sweepAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return badf("sweep takes no arguments (use --spec or --trace; \"sweep merge\" gathers shards)")
	}
	sw, shard, err := experiment.FromOptions(c, func(name string) bool { return isEnvOnly(c, name) }, os.Getenv)
	if err != nil {
		return err
	}
	return runSweep(sw, shard, c.Int("parallel"))
}

// isEnvOnly tells a flag set by its environment variable (ELIS_SIM_MODEL)
// rather than on the command line. A spec's cells ignore the environment
// (a cell is what its key says), so such a variable is only warned about.
func isEnvOnly(c *cli.Context, name string) bool {
	for _, f := range c.Command.Flags {
		if f.Names()[0] != name {
			continue
		}
		if ef, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, e := range ef.GetEnvVars() {
				if os.Getenv(e) != "" {
					fmt.Fprintf(os.Stderr, "elis-sim: %s is ignored with --spec: set %s in the spec\n", e, name)
					return true
				}
			}
		}
	}
	return false
}

func runSweep(sw *experiment.Sweep, shard experiment.Shard, parallel int) error {
	var bar *progressbar.ProgressBar
	done := func() {}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		n := 0
		for i := range sw.Cells {
			if shard.Has(&sw.Cells[i]) {
				n++
			}
		}
		bar = progressbar.NewOptions(n, progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("cells"), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		done = func() { bar.Add(1) }
	}
	// Ctrl-C starts no new cell; the cells under way finish and are kept,
	// and a rerun of the same command resumes from them.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	st, mine, err := sw.RunShard(ctx, shard, parallel, done, os.Stderr)
	if bar != nil {
		bar.Finish()
	}
	var stopped *experiment.Stopped
	if errors.As(err, &stopped) {
		return &exitStatus{exitInterrupted, err}
	}
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	rate := ""
	if st.Ran > 0 {
		rate = fmt.Sprintf(" (%.1f cells/s)", float64(st.Ran)/math.Max(secs, 1e-9))
	}
	fmt.Fprintf(os.Stderr, "elis-sim: %d cells: %d run, %d already done, in %.1f s%s\n", len(mine), st.Ran, st.Cached, secs, rate)
	if shard.N > 1 {
		fmt.Printf("shard %s: %d of %d cells in %s; gather the shards with: elis-sim sweep merge DIR... -o OUT\n", shard, len(mine), len(sw.Cells), sw.Out)
		return nil
	}
	return sw.Report(os.Stdout)
}

func sweepMergeAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return badf("sweep merge: name the shards' output directories")
	}
	if err := experiment.CheckOut(c.String("out")); err != nil {
		return err
	}
	return experiment.Merge(c.Args().Slice(), c.String("out"), c.Bool("allow-missing"), os.Stderr, os.Stdout)
}
