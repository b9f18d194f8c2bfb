package experiment

// The simulator's side of a sweep: a spec's cells set up by package setup
// (the very code "elis-sim run" uses), each simulated, and the records
// gathered into each workload's tables and plots.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

// CheckSetting tells whether flag is a run flag that takes value.
func CheckSetting(name, value string) error {
	var valid []string
	for _, n := range setup.FlagNames() {
		if _, reserved := Reserved[n]; !reserved {
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
func cellValues(values []Setting) (*setup.Values, error) {
	v := setup.NewValues()
	for _, s := range values {
		if err := v.Set(s.Flag, s.Value); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// PolicyAxis makes the spec's policies an axis, as a cell runs one: a
// comma list in settings becomes one, and no policy at all means sweep's
// default, FCFS against ISRTF and the oracle.
func PolicyAxis(spec *Spec) {
	for _, ax := range spec.Axes {
		if ax.Flag == "policy" {
			return
		}
	}
	pols := setup.SweepPolicies
	if i := slices.IndexFunc(spec.Settings, func(s Setting) bool { return s.Flag == "policy" }); i >= 0 {
		pols = spec.Settings[i].Value
		spec.Settings = slices.Delete(spec.Settings, i, i+1)
	}
	ax := Axis{Flag: "policy"}
	for _, p := range strings.Split(pols, ",") {
		ax.Values = append(ax.Values, strings.TrimSpace(p))
	}
	spec.Axes = append([]Axis{ax}, spec.Axes...)
}

// predictorFlags only shape the predictor, its calls and what the
// scheduler does with its answers.
var predictorFlags = map[string]bool{"predictor": true, "prediction-interval": true, "predictor-cost-ms": true,
	"predictor-calls": true, "lazy-predictions": true, "displace-margin": true, "isrtf-mode": true}

// IgnoredByCell tells the flags a cell's result cannot depend on: the
// predictor's, when its policy and router read no predictor (the
// simulator then builds none and prices no call), and the predictor and
// its cost for srpt-oracle, whose predictions are the truth and free.
// Such cells run once per point, however many values those axes have.
func IgnoredByCell(c *Cell, flag string) bool {
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
type Sweep struct {
	Spec     *Spec
	Out      string
	Cells    []Cell
	Manifest *Manifest
	specPath string
	setups   map[string]*setup.Sim // by the cell's flag values
	traces   map[string]*traces.Trace
}

func setupKey(scenario bool, values []Setting) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%v", scenario)
	for _, v := range values {
		fmt.Fprintf(&sb, "\x00%s=%s", v.Flag, v.Value)
	}
	return sb.String()
}

// NewSweep expands the grid and sets up every distinct cell before any
// runs, so that a bad value fails the sweep at once.
func NewSweep(spec *Spec, specPath, out string) (*Sweep, error) {
	sw := &Sweep{Spec: spec, specPath: specPath, Out: out, setups: map[string]*setup.Sim{}, traces: map[string]*traces.Trace{}}
	sw.Manifest = &Manifest{Spec: spec, Version: Version()}
	return sw, sw.prepare()
}

func (sw *Sweep) prepare() error {
	for _, w := range sw.Spec.Workloads {
		if p := w.Trace; p != "" && sw.traces[p] == nil {
			tr, err := traces.ReadFile(p)
			if err != nil {
				return setup.Bad(err)
			}
			sw.traces[p] = tr
		}
	}
	grid := Grid{Version: sw.Manifest.Version, Ignores: IgnoredByCell}
	sw.Cells = grid.Cells(sw.Spec)
	for i := range sw.Cells {
		c := &sw.Cells[i]
		isScenario := c.Workload.Scenario != ""
		k := setupKey(isScenario, c.Values)
		if _, ok := sw.setups[k]; ok {
			continue
		}
		vals, err := cellValues(c.Values)
		if err == nil {
			var su *setup.Sim
			if su, err = setup.ParseSim(vals, isScenario); err == nil && len(su.Policies) != 1 {
				err = setup.Errorf("--policy %q: a cell runs one policy; list several as an axis", c.Policy())
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
func (sw *Sweep) cellError(c *Cell, err error) error {
	if sw.specPath == "" {
		return err
	}
	where := sw.specPath
	for _, st := range sw.Spec.Settings {
		if strings.Contains(err.Error(), "--"+st.Flag) {
			where = fmt.Sprintf("%s:%d", sw.specPath, st.Line)
		}
	}
	for _, ax := range sw.Spec.Axes {
		if strings.Contains(err.Error(), "--"+ax.Flag) {
			where = fmt.Sprintf("%s:%d", sw.specPath, ax.Line)
		}
	}
	return setup.Errorf("%s: cell %q: %w", where, c.Label(), err)
}

// RunCell simulates one cell.
func (sw *Sweep) RunCell(c *Cell) (*Record, error) {
	su := sw.setups[setupKey(c.Workload.Scenario != "", c.Values)]
	entry := su.Policies[0]
	pol := entry.Entry
	var tr *traces.Trace
	about := c.Workload.Trace
	keepLog := false
	if sc := setup.ScenarioByName(c.Workload.Scenario); sc != nil {
		var err error
		tr, err = sc.Trace(sw.Spec.Requests, c.Seed)
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
	run := su.ToRun(entry, fmt.Sprintf("%s, %gx load, seed %d", about, c.Load, c.Seed), res, res.Sigma)
	jct, _ := report.Values(run, "jct")
	rec := &Record{Workload: c.Workload.Name(), Load: c.Load, Seed: c.Seed, Values: c.Values, Label: c.Label(), Policy: pol,
		Setup: run.Setup, Summary: run.Summary, JCTQuantiles: report.Quantiles(jct, 200)}
	if !IgnoredByCell(c, "predictor") { // the result depends on the predictor's error
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

// WriteReports writes each workload's results.csv, summary, plots and
// prediction log from the cells' records, read one at a time: of each it
// keeps the summary, and the JCT quantiles only when CDFs are drawn.
func WriteReports(spec *Spec, out string, stores []Store, cells []Cell, summary io.Writer) error {
	var axes []string
	for _, ax := range spec.Axes {
		if ax.Flag != "policy" {
			axes = append(axes, ax.Flag)
		}
	}
	cdf := slices.Contains(spec.Report.Plots, "cdf")
	top := spec.Loads[len(spec.Loads)-1]
	for _, w := range spec.Workloads {
		var mine []Cell
		for _, c := range cells {
			if c.Workload.Name() == w.Name() {
				mine = append(mine, c)
			}
		}
		var runs []report.SweepRun
		var logText, head string
		err := Gather(stores, mine, func(r *Record) error {
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
		// The setup line is the first cell's: say what the cells vary, and
		// which are missing (a merge with --allow-missing).
		head = fmt.Sprintf("scenario %s: %s\n%s\n", w.Name(), about, head)
		for _, ax := range spec.Axes {
			if ax.Flag != "policy" {
				head += fmt.Sprintf("swept --%s: %s (the setup line above is the first cell's)\n", ax.Flag, strings.Join(ax.Values, ", "))
			}
		}
		if missing := Missing(stores, mine); len(missing) > 0 {
			head += fmt.Sprintf("missing: %d of %d cells have no record (merged with --allow-missing); their runs are left out of every row below\n", len(missing), len(mine))
		}
		if err := reportWorkload(summary, spec, w.Name(), head, dir, runs); err != nil {
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
func reportWorkload(summary io.Writer, spec *Spec, name, head, dir string, runs []report.SweepRun) error {
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
	if err := report.WriteSweepSummary(summary, head, loads); err != nil {
		return err
	}
	fmt.Fprintf(summary, "\nwrote %s/{%s}\n\n", dir, strings.Join(wrote, ","))
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
