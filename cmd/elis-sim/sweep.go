package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/elis-sim/elis-sim/experiment"
	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

func sweepCommand() *cli.Command {
	flags := append(simFlags(),
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
	if err := checkOutDir(c.String("out"), 2); err != nil {
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
		if err := spec.Check(p, checkFlagValue); err != nil {
			return bad(err)
		}
	} else if spec, err = specFromFlags(c); err != nil {
		return err
	}
	policyAxis(spec)
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
	sw, err := newSweepRun(spec, c.String("spec"), c.String("out"))
	if err != nil {
		return err
	}
	return sw.run(shard, c.Int("parallel"))
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
		if err := checkFlagValue(st.Flag, st.Value); err != nil {
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

// checkFlagValue tells whether flag is a run flag that takes value.
func checkFlagValue(name, value string) error {
	var valid []string
	for _, n := range setup.FlagNames() {
		if _, reserved := experiment.Reserved[n]; !reserved {
			valid = append(valid, n)
		}
	}
	if !slices.Contains(valid, name) {
		return fmt.Errorf("not a flag of elis-sim run (valid: %s)", strings.Join(valid, ", "))
	}
	return setup.NewValues().Set(name, value)
}

// cellValues are a cell's settings, the run flags' defaults for the rest,
// so that a cell is set up by the same code as "elis-sim run".
func cellValues(values []experiment.Setting) (*setup.Values, error) {
	v := setup.NewValues()
	for _, s := range values {
		if err := v.Set(s.Flag, s.Value); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// policyAxis makes the spec's policies an axis, as a cell runs one: a
// comma list in settings becomes one, and no policy at all means sweep's
// default, FCFS against ISRTF and the oracle.
func policyAxis(spec *experiment.Spec) {
	for _, ax := range spec.Axes {
		if ax.Flag == "policy" {
			return
		}
	}
	pols := setup.SweepPolicies
	if i := slices.IndexFunc(spec.Settings, func(s experiment.Setting) bool { return s.Flag == "policy" }); i >= 0 {
		pols = spec.Settings[i].Value
		spec.Settings = slices.Delete(spec.Settings, i, i+1)
	}
	ax := experiment.Axis{Flag: "policy"}
	for _, p := range strings.Split(pols, ",") {
		ax.Values = append(ax.Values, strings.TrimSpace(p))
	}
	spec.Axes = append([]experiment.Axis{ax}, spec.Axes...)
}

// predictorFlags only shape the predictor, its calls and what the
// scheduler does with its answers.
var predictorFlags = map[string]bool{"predictor": true, "prediction-interval": true, "predictor-cost-ms": true,
	"predictor-calls": true, "lazy-predictions": true, "displace-margin": true, "isrtf-mode": true}

// ignoredByCell tells the flags a cell's result cannot depend on: the
// predictor's, when its policy and router read no predictor (the
// simulator then builds none and prices no call), and the predictor and
// its cost for srpt-oracle, whose predictions are the truth and free.
// Such cells run once per point, however many values those axes have.
func ignoredByCell(c *experiment.Cell, flag string) bool {
	if !predictorFlags[flag] {
		return false
	}
	base, _, _ := strings.Cut(c.Policy(), "+")
	name, _, _ := strings.Cut(base, "/")
	if !sim.ReadsPredictor(sim.Config{Policy: name, Router: c.Get("router")}) {
		return true
	}
	t, _ := policies.TraitsOf(name)
	return (flag == "predictor" || flag == "predictor-cost-ms") && t.Oracle
}

// sweepRun binds a spec's cells to simulations.
type sweepRun struct {
	spec     *experiment.Spec
	specPath string
	out      string
	cells    []experiment.Cell
	setups   map[string]*setup.Sim // by the cell's flag values
	traces   map[string]*traces.Trace
	manifest *experiment.Manifest
}

func setupKey(scenario bool, values []experiment.Setting) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%v", scenario)
	for _, v := range values {
		fmt.Fprintf(&sb, "\x00%s=%s", v.Flag, v.Value)
	}
	return sb.String()
}

// newSweepRun expands the grid and sets up every distinct cell before any
// runs, so that a bad value fails the sweep at once.
func newSweepRun(spec *experiment.Spec, specPath, out string) (*sweepRun, error) {
	sw := &sweepRun{spec: spec, specPath: specPath, out: out, setups: map[string]*setup.Sim{}, traces: map[string]*traces.Trace{}}
	sw.manifest = &experiment.Manifest{Spec: spec, Version: experiment.Version()}
	return sw, sw.prepare()
}

func (sw *sweepRun) prepare() error {
	for _, w := range sw.spec.Workloads {
		if p := w.Trace; p != "" && sw.traces[p] == nil {
			tr, err := traces.ReadFile(p)
			if err != nil {
				return bad(err)
			}
			sw.traces[p] = tr
		}
	}
	grid := experiment.Grid{Version: sw.manifest.Version, Ignores: ignoredByCell}
	sw.cells = grid.Cells(sw.spec)
	for i := range sw.cells {
		c := &sw.cells[i]
		isScenario := c.Workload.Scenario != ""
		k := setupKey(isScenario, c.Values)
		if _, ok := sw.setups[k]; ok {
			continue
		}
		vals, err := cellValues(c.Values)
		if err == nil {
			var su *setup.Sim
			if su, err = setup.ParseSim(vals, isScenario); err == nil && len(su.Policies) != 1 {
				err = badf("--policy %q: a cell runs one policy; list several as an axis", c.Policy())
			}
			sw.setups[k] = su
		}
		if err != nil {
			return sw.cellError(c, err)
		}
	}
	return nil
}

// cellError says which cell's settings are wrong, with the spec's line
// of the flag the error names.
func (sw *sweepRun) cellError(c *experiment.Cell, err error) error {
	if sw.specPath == "" {
		return err
	}
	where := sw.specPath
	for _, st := range sw.spec.Settings {
		if strings.Contains(err.Error(), "--"+st.Flag) {
			where = fmt.Sprintf("%s:%d", sw.specPath, st.Line)
		}
	}
	for _, ax := range sw.spec.Axes {
		if strings.Contains(err.Error(), "--"+ax.Flag) {
			where = fmt.Sprintf("%s:%d", sw.specPath, ax.Line)
		}
	}
	return badf("%s: cell %q: %w", where, c.Label(), err)
}

func (sw *sweepRun) run(shard experiment.Shard, parallel int) error {
	store := experiment.Store{Dir: sw.out}
	if old, err := store.ReadManifest(); err == nil && old.Version == sw.manifest.Version && !old.Equal(sw.manifest) {
		fmt.Fprintf(os.Stderr, "elis-sim: %s held another spec's cells; those of this one are reused, the rest run\n", sw.out)
	}
	if err := store.WriteManifest(sw.manifest); err != nil {
		return err
	}
	var mine []experiment.Cell
	for i := range sw.cells {
		if shard.Has(&sw.cells[i]) {
			mine = append(mine, sw.cells[i])
		}
	}
	var bar *progressbar.ProgressBar
	done := func() {}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.NewOptions(len(mine), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("cells"), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		done = func() { bar.Add(1) }
	}
	start := time.Now()
	st, err := experiment.Run(store, mine, parallel, sw.runCell, done)
	if bar != nil {
		bar.Finish()
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
		fmt.Printf("shard %s: %d of %d cells in %s; gather the shards with: elis-sim sweep merge DIR... -o OUT\n", shard, len(mine), len(sw.cells), sw.out)
		return nil
	}
	stores := []experiment.Store{store}
	if missing := experiment.Missing(stores, sw.cells); len(missing) > 0 {
		return fmt.Errorf("%d cells have no record after the run", len(missing))
	}
	return reportSweep(sw.spec, sw.out, stores, sw.cells)
}

// runCell simulates one cell.
func (sw *sweepRun) runCell(c *experiment.Cell) (*experiment.Record, error) {
	su := sw.setups[setupKey(c.Workload.Scenario != "", c.Values)]
	entry := su.Policies[0]
	pol := entry.Entry
	var tr *traces.Trace
	about := c.Workload.Trace
	keepLog := false
	if sc := setup.ScenarioByName(c.Workload.Scenario); sc != nil {
		var err error
		tr, err = sc.Trace(sw.spec.Requests, c.Seed)
		if err != nil {
			return nil, err
		}
		about = sc.About
		// The log of a plain predictive policy's first seed (an oracle's
		// predictions are the truth: nothing to watch).
		t, _ := policies.TraitsOf(entry.Name)
		keepLog = sc.LogPredictions && pol == entry.Name && t.Predictive && !t.Oracle && c.Seed == 1
	} else {
		tr = sw.traces[c.Workload.Trace]
	}
	cfg := su.ConfigFor(su.Base, entry)
	cfg.Seed = c.Seed
	cfg.KeepHistory = keepLog
	res, err := sim.Run(scaled(tr, c.Load), cfg)
	if err != nil {
		return nil, err
	}
	run := simRun{su}.toRun(entry, fmt.Sprintf("%s, %gx load, seed %d", about, c.Load, c.Seed), res, res.Sigma)
	jct, _ := report.Values(run, "jct")
	rec := &experiment.Record{Workload: c.Workload.Name(), Load: c.Load, Seed: c.Seed, Values: c.Values, Label: c.Label(), Policy: pol,
		Setup: run.Setup, Summary: run.Summary, JCTQuantiles: report.Quantiles(jct, 200)}
	if !ignoredByCell(c, "predictor") { // the result depends on the predictor's error
		rec.MAETarget = cfg.Predictor.MAE
	}
	if keepLog {
		var sb strings.Builder
		if err := report.WritePredictionLog(&sb, run.Records); err != nil {
			return nil, err
		}
		fmt.Fprintf(&sb, "\n# accuracy by tokens generated so far\n")
		if err := report.WriteAccuracy(&sb, report.AccuracyByProgress(run.Records, 0)); err != nil {
			return nil, err
		}
		rec.PredictionLog = sb.String()
	}
	return rec, nil
}

func sweepMergeAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return badf("sweep merge: name the shards' output directories")
	}
	out := c.String("out")
	if err := checkOutDir(out, 2); err != nil {
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
	grid := experiment.Grid{Version: man.Version, Ignores: ignoredByCell}
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
	return reportSweep(man.Spec, out, []experiment.Store{dst}, cells)
}

// reportSweep writes each workload's results.csv, summary, plots and
// prediction log from the cells' records, read one at a time: of each it
// keeps the summary, and the JCT quantiles only when CDFs are drawn.
func reportSweep(spec *experiment.Spec, out string, stores []experiment.Store, cells []experiment.Cell) error {
	var axes []string
	for _, ax := range spec.Axes {
		if ax.Flag != "policy" {
			axes = append(axes, ax.Flag)
		}
	}
	cdf := slices.Contains(spec.Report.Plots, "cdf")
	top := spec.Loads[len(spec.Loads)-1]
	for _, w := range spec.Workloads {
		var mine []experiment.Cell
		for _, c := range cells {
			if c.Workload.Name() == w.Name() {
				mine = append(mine, c)
			}
		}
		var runs []report.SweepRun
		var logText, head string
		err := experiment.Gather(stores, mine, func(r *experiment.Record) error {
			run := &report.Run{Label: r.Label, Summary: r.Summary}
			if cdf {
				run.PlotValues = map[string][]float64{"jct": r.JCTQuantiles}
			}
			if head == "" {
				head = r.Setup["summary"]
			}
			sr := report.SweepRun{Run: run, Policy: r.Policy, Load: r.Load, Seed: r.Seed, MAE: r.MAETarget, Cell: r.Key}
			for _, a := range axes {
				v := ""
				for _, s := range r.Values {
					if s.Flag == a {
						v = s.Value
					}
				}
				sr.Axes = append(sr.Axes, v)
			}
			if r.PredictionLog != "" && logText == "" && r.Load == top {
				logText = r.PredictionLog
			}
			runs = append(runs, sr)
			return nil
		})
		if err != nil {
			return err
		}
		if len(runs) == 0 {
			continue
		}
		dir := filepath.Join(out, w.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(dir, "results.csv"), func(wr io.Writer) error { return report.WriteSweepCSV(wr, axes, runs) }); err != nil {
			return err
		}
		about := w.Trace
		if sc := setup.ScenarioByName(w.Scenario); sc != nil {
			about = sc.About
		}
		if err := reportWorkload(spec, w.Name(), fmt.Sprintf("scenario %s: %s\n%s\n", w.Name(), about, head), dir, runs); err != nil {
			return err
		}
		if logText != "" {
			if err := atomicfile.Write(filepath.Join(dir, "predictions.log"), func(wr io.Writer) error { _, err := io.WriteString(wr, logText); return err }); err != nil {
				return err
			}
		}
	}
	return nil
}

// reportWorkload writes a workload's summary and plots.
func reportWorkload(spec *experiment.Spec, name, head, dir string, runs []report.SweepRun) error {
	loads, curves, order := report.Sweep(runs, spec.Loads)
	if len(spec.Report.Metrics) > 0 {
		for i := range loads {
			for j := range loads[i].Rows {
				for m := range loads[i].Rows[j].Values {
					if !slices.Contains(spec.Report.Metrics, m) {
						delete(loads[i].Rows[j].Values, m)
					}
				}
			}
		}
	}
	plots := spec.Report.Plots
	wrote := []string{"results.csv", "summary.txt"} // to say what was written
	if slices.Contains(plots, "cdf") {
		wrote = append(wrote, "cdf-*.png")
		for _, l := range loads {
			p, err := report.CDF(fmt.Sprintf("CDF of job completion time, %s at %gx load (all seeds)", name, l.Load), report.PlotMetrics["jct"], true, l.JCTs)
			if err != nil {
				return err
			}
			if err := report.Save(p, filepath.Join(dir, fmt.Sprintf("cdf-%gx.png", l.Load))); err != nil {
				return err
			}
		}
	}
	seeds := fmt.Sprintf("%d seeds, 95%% CI", len(spec.Seeds))
	if len(spec.Seeds) == 1 {
		seeds = "1 seed"
	}
	if slices.Contains(plots, "load") {
		wrote = append(wrote, "load.png")
		p, err := report.LoadCurves(fmt.Sprintf("%s: job completion time against load (%s)", name, seeds), curves, order)
		if err != nil {
			return err
		}
		if err := report.Save(p, filepath.Join(dir, "load.png")); err != nil {
			return err
		}
	}
	if slices.Contains(plots, "pareto") && len(order) > 2 {
		// Several policies or variants: the mean-against-tail trade per load.
		wrote = append(wrote, "pareto-*.png")
		for _, l := range spec.Loads {
			p, err := report.Pareto(fmt.Sprintf("%s at %gx: mean against P99 job completion time (%s)", name, l, seeds), curves, order, l)
			if err != nil {
				return err
			}
			if err := report.Save(p, filepath.Join(dir, fmt.Sprintf("pareto-%gx.png", l))); err != nil {
				return err
			}
		}
	}
	if err := atomicfile.Write(filepath.Join(dir, "summary.txt"), func(w io.Writer) error { return report.WriteSweepSummary(w, head, loads) }); err != nil {
		return err
	}
	if err := report.WriteSweepSummary(os.Stdout, head, loads); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s/{%s}\n\n", dir, strings.Join(wrote, ","))
	return nil
}

// scaled returns tr with its arrival rate multiplied by load.
func scaled(tr *traces.Trace, load float64) *traces.Trace {
	out := &traces.Trace{Name: tr.Name, Requests: append([]traces.Request(nil), tr.Requests...)}
	for i := range out.Requests {
		out.Requests[i].Arrival /= load
	}
	return out
}
