package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/elis-sim/elis-sim/experiment"
	"github.com/elis-sim/elis-sim/setup"
)

func sweepCommand() *cli.Command {
	flags := append(policyFlag(simFlags(), setup.SweepPolicies, ""),
		&cli.StringFlag{Name: "spec", Usage: "experiment file (YAML or JSON): workloads, loads, seeds, settings, axes and report; the grid flags below then do not apply"},
		&cli.StringFlag{Name: "scenario", Value: "all", Usage: "all, or one of " + strings.Join(setup.ScenarioNames(), ", ") + " (ignored with --trace)"},
		&cli.StringFlag{Name: "trace", Usage: "sweep this native trace instead of the scenarios; loads scale its arrival rate"},
		&cli.StringFlag{Name: "loads", Value: "1,2,3,4,5", Usage: "load multipliers of the arrival rate"},
		&cli.IntFlag{Name: "seeds", Value: 5, Usage: "seeds per point (workload and predictor noise)"},
		&cli.IntFlag{Name: "n", Value: 2000, Usage: "requests per generated workload"},
		&cli.StringFlag{Name: "mae", Usage: "predictor error levels to sweep, comma-separated MAEs in tokens (overrides --predictor)"},
		&cli.IntFlag{Name: "parallel", Value: runtime.NumCPU(), Usage: "runs at once"},
		&cli.StringFlag{Name: "shard", Usage: "run shard I of N (I/N, 0 <= I < N) of the grid's cells; default: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX when set"},
		&cli.IntFlag{Name: "shards", Usage: "with JOB_COMPLETION_INDEX (a Kubernetes Indexed Job): the number of shards, the Job's completions"},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "sweep", Usage: "output directory; a rerun into it skips the cells already done"},
	)
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

func parseFloats(flag, s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v <= 0 {
			return nil, badf("--%s %q: want positive numbers separated by commas", flag, s)
		}
		out = append(out, v)
	}
	return out, nil
}

// gridFlags are sweep's own flags, which a spec replaces.
var gridFlags = []string{"scenario", "trace", "loads", "seeds", "n", "mae"}

func sweepAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return badf("sweep takes no arguments (use --spec or --trace; \"sweep merge\" gathers shards)")
	}
	if err := checkSweepOut(c.String("out")); err != nil {
		return err
	}
	var spec *experiment.Spec
	var err error
	if p := c.String("spec"); p != "" {
		for _, f := range append(gridFlags, setup.FlagNames()...) {
			if c.IsSet(f) && !isEnvOnly(c, f) {
				return badf("--%s: with --spec, name it in the spec (settings or axes)", f)
			}
		}
		if spec, err = experiment.Parse(p); err != nil {
			return bad(err)
		}
		if err := spec.Check(p, experiment.CheckSetting); err != nil {
			return bad(err)
		}
	} else if spec, err = specFromFlags(c); err != nil {
		return err
	}
	experiment.PolicyAxis(spec)
	for _, w := range spec.Workloads {
		if w.Scenario != "" && setup.ScenarioByName(w.Scenario) == nil {
			return badf("%sscenario %q: valid are %s", specLine(c, w.Line), w.Scenario, strings.Join(setup.ScenarioNames(), ", "))
		}
	}
	if err := spec.Resolve(); err != nil {
		return bad(err)
	}
	shard, err := sweepShard(c)
	if err != nil {
		return err
	}
	sw, err := experiment.NewSweep(spec, c.String("spec"), c.String("out"))
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

// sweepShard is the share of the grid this process runs: --shard, else a
// batch system's index, else all of it.
func sweepShard(c *cli.Context) (experiment.Shard, error) {
	if v := c.String("shard"); v != "" {
		s, err := experiment.ParseShard(v)
		if err != nil {
			return s, badf("--shard %w", err)
		}
		return s, nil
	}
	s, ok, err := experiment.ShardFromEnv(os.Getenv, c.Int("shards"))
	if err != nil {
		return s, badf("%w", err)
	}
	if !ok {
		if c.IsSet("shards") {
			return s, badf("--shards: only with JOB_COMPLETION_INDEX set (a Kubernetes Indexed Job); else use --shard I/N")
		}
		return experiment.Shard{I: 0, N: 1}, nil
	}
	return s, nil
}

// specFromFlags is the spec today's flags describe.
func specFromFlags(c *cli.Context) (*experiment.Spec, error) {
	s := &experiment.Spec{Requests: c.Int("n")}
	if c.Int("seeds") < 1 || c.Int("n") < 1 {
		return nil, badf("--seeds and --n: want >= 1")
	}
	for i := 1; i <= c.Int("seeds"); i++ {
		s.Seeds = append(s.Seeds, uint64(i))
	}
	var err error
	if s.Loads, err = parseFloats("loads", c.String("loads")); err != nil {
		return nil, err
	}
	if p := c.String("trace"); p != "" {
		s.Workloads = []experiment.Workload{{Trace: p}}
	} else {
		for _, sc := range setup.Scenarios {
			if c.String("scenario") == "all" && !sc.Only || c.String("scenario") == sc.Name {
				s.Workloads = append(s.Workloads, experiment.Workload{Scenario: sc.Name})
			}
		}
		if len(s.Workloads) == 0 {
			return nil, badf("--scenario %q: valid are all, %s", c.String("scenario"), strings.Join(setup.ScenarioNames(), ", "))
		}
	}
	// --policy is a setting here; policyAxis makes it the first axis.
	pols := setup.SweepPolicies
	if c.IsSet("policy") {
		pols = c.String("policy")
	} else if sc := setup.ScenarioByName(c.String("scenario")); sc != nil && sc.Policies != "" && c.String("trace") == "" {
		pols = sc.Policies
	}
	s.Settings = append(s.Settings, experiment.Setting{Flag: "policy", Value: pols})
	for _, name := range setup.FlagNames() {
		if name == "policy" || name == "seed" || !c.IsSet(name) {
			continue
		}
		s.Settings = append(s.Settings, experiment.Setting{Flag: name, Value: fmt.Sprint(c.Value(name))})
	}
	if m := c.String("mae"); m != "" {
		maes, err := parseFloats("mae", m)
		if err != nil {
			return nil, err
		}
		ax := experiment.Axis{Flag: "predictor"}
		for _, v := range maes {
			ax.Values = append(ax.Values, fmt.Sprintf("noisy:mae=%g", v))
		}
		s.Settings = slices.DeleteFunc(s.Settings, func(st experiment.Setting) bool { return st.Flag == "predictor" })
		s.Axes = append(s.Axes, ax)
	}
	for _, st := range s.Settings {
		if err := experiment.CheckSetting(st.Flag, st.Value); err != nil {
			return nil, badf("--%s: %w", st.Flag, err)
		}
	}
	return s, nil
}

func specLine(c *cli.Context, line int) string {
	if c.String("spec") == "" {
		return "--"
	}
	return fmt.Sprintf("%s:%d: workloads: ", c.String("spec"), line)
}

// checkSweepOut refuses an --out a sweep cannot fill: a sweep writes a
// directory (its cells, spec and reports).
func checkSweepOut(out string) error {
	if st, err := os.Stat(out); err == nil && !st.IsDir() {
		return badf("--out %s: is a file; a sweep writes a directory (cells, spec, reports): name a directory", out)
	}
	if strings.HasSuffix(out, ".json") {
		return badf("--out %s: a sweep writes a directory (cells, spec, reports), not a .json file", out)
	}
	return checkOutDir(out, 2)
}

// errSweepStopped ends a sweep that was asked to stop.
var errSweepStopped = errors.New("stopped")

func runSweep(sw *experiment.Sweep, shard experiment.Shard, parallel int) error {
	store := experiment.Store{Dir: sw.Out}
	if old, err := store.ReadManifest(); err == nil && old.Version == sw.Manifest.Version && !old.Equal(sw.Manifest) {
		fmt.Fprintf(os.Stderr, "elis-sim: %s held another spec's cells; those of this one are reused, the rest run\n", sw.Out)
	}
	if err := store.WriteManifest(sw.Manifest); err != nil {
		return err
	}
	var mine []experiment.Cell
	for i := range sw.Cells {
		if shard.Has(&sw.Cells[i]) {
			mine = append(mine, sw.Cells[i])
		}
	}
	var bar *progressbar.ProgressBar
	done := func() {}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.NewOptions(len(mine), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("cells"), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		done = func() { bar.Add(1) }
	}
	// Ctrl-C starts no new cell; the cells under way finish and are kept,
	// and a rerun of the same command resumes from them.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := func(c *experiment.Cell) (*experiment.Record, error) {
		if ctx.Err() != nil {
			return nil, errSweepStopped
		}
		return sw.RunCell(c)
	}
	start := time.Now()
	st, err := experiment.Run(store, mine, parallel, run, done)
	if bar != nil {
		bar.Finish()
	}
	if errors.Is(err, errSweepStopped) {
		return &exitStatus{exitInterrupted, fmt.Errorf("sweep stopped: %d of %d cells done (%d this run, %d before), kept in %s/cells; run the same command again to resume",
			st.Ran+st.Cached, len(mine), st.Ran, st.Cached, sw.Out)}
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
	stores := []experiment.Store{store}
	if missing := experiment.Missing(stores, sw.Cells); len(missing) > 0 {
		return fmt.Errorf("%d cells have no record after the run", len(missing))
	}
	return experiment.WriteReports(sw.Spec, sw.Out, stores, sw.Cells, os.Stdout)
}

func sweepMergeAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return badf("sweep merge: name the shards' output directories")
	}
	out := c.String("out")
	if err := checkSweepOut(out); err != nil {
		return err
	}
	var stores []experiment.Store
	var man *experiment.Manifest
	for _, dir := range c.Args().Slice() {
		s := experiment.Store{Dir: dir}
		m, err := s.ReadManifest()
		if err != nil {
			return bad(err)
		}
		if man != nil && !man.Equal(m) {
			return badf("%s: its spec or binary differs from %s's; merge only shards of one sweep", dir, stores[0].Dir)
		}
		man = m
		stores = append(stores, s)
	}
	grid := experiment.Grid{Version: man.Version, Ignores: experiment.IgnoredByCell}
	cells := grid.Cells(man.Spec)
	missing := experiment.Missing(stores, cells)
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "elis-sim: %d of %d cells are missing:\n", len(missing), len(cells))
		for i, m := range missing {
			if i == 20 {
				fmt.Fprintf(os.Stderr, "  ... and %d more\n", len(missing)-20)
				break
			}
			fmt.Fprintf(os.Stderr, "  %s (cell %d of the grid, in shard %d mod N): %s, %s, %gx load, seed %d\n", m.Key, m.Index, m.Index, m.Workload.Name(), m.Label(), m.Load, m.Seed)
		}
		if !c.Bool("allow-missing") {
			return fmt.Errorf("merge: %d cells missing (rerun their shards, or --allow-missing to report the rest)", len(missing))
		}
	}
	// Every record is read once before anything is written, so that a
	// damaged one leaves no half-merged directory behind.
	if err := experiment.Gather(stores, cells, func(*experiment.Record) error { return nil }); err != nil {
		return err
	}
	// The merged directory is a sweep's output like any: its cells and
	// spec, so that it resumes and merges again.
	dst := experiment.Store{Dir: out}
	if err := dst.WriteManifest(man); err != nil {
		return err
	}
	err := experiment.Gather(stores, cells, func(r *experiment.Record) error {
		if dst.Has(r.Key) {
			return nil
		}
		return dst.Put(r)
	})
	if err != nil {
		return err
	}
	return experiment.WriteReports(man.Spec, out, []experiment.Store{dst}, cells, os.Stdout)
}
