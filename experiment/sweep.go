package experiment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/elis-sim/elis-sim/setup"
)

// Grid options are the sweep's own settings, which a spec replaces:
// scenario (a name, or all), trace, loads and mae (comma-separated
// numbers), seeds and n.
var GridOptions = []string{"scenario", "trace", "loads", "seeds", "n", "mae"}

// SpecFromOptions is the spec a sweep's options describe without a spec
// file: every scenario (or the one named, or the trace) at each load and
// seed, the run options that were set as settings, the policy list first,
// and the mae values, when given, as a predictor axis. Bad options come
// back as *setup.Error.
func SpecFromOptions(o setup.Options) (*Spec, error) {
	s := &Spec{Requests: o.Int("n")}
	if o.Int("seeds") < 1 || o.Int("n") < 1 {
		return nil, setup.Errorf("--seeds and --n: want >= 1")
	}
	for i := 1; i <= o.Int("seeds"); i++ {
		s.Seeds = append(s.Seeds, uint64(i))
	}
	var err error
	if s.Loads, err = positives("loads", o.String("loads")); err != nil {
		return nil, err
	}
	if p := o.String("trace"); p != "" {
		s.Workloads = []Workload{{Trace: p}}
	} else {
		for _, sc := range setup.Scenarios {
			if o.String("scenario") == "all" && !sc.Only || o.String("scenario") == sc.Name {
				s.Workloads = append(s.Workloads, Workload{Scenario: sc.Name})
			}
		}
		if len(s.Workloads) == 0 {
			return nil, setup.Errorf("--scenario %q: valid are all, %s", o.String("scenario"), strings.Join(setup.ScenarioNames(), ", "))
		}
	}
	// The policy list is a setting here; PolicyAxis makes it the first axis.
	pols := setup.SweepPolicies
	if o.IsSet("policy") {
		pols = o.String("policy")
	} else if sc := setup.ScenarioByName(o.String("scenario")); sc != nil && sc.Policies != "" && o.String("trace") == "" {
		pols = sc.Policies
	}
	s.Settings = append(s.Settings, Setting{Flag: "policy", Value: pols})
	for _, f := range setup.Flags() {
		if f.Name == "policy" || f.Name == "seed" || !o.IsSet(f.Name) {
			continue
		}
		s.Settings = append(s.Settings, Setting{Flag: f.Name, Value: setup.Text(o, f)})
	}
	if m := o.String("mae"); m != "" {
		maes, err := positives("mae", m)
		if err != nil {
			return nil, err
		}
		ax := Axis{Flag: "predictor"}
		for _, v := range maes {
			ax.Values = append(ax.Values, fmt.Sprintf("noisy:mae=%g", v))
		}
		s.Settings = slices.DeleteFunc(s.Settings, func(st Setting) bool { return st.Flag == "predictor" })
		s.Axes = append(s.Axes, ax)
	}
	for _, st := range s.Settings {
		if err := CheckSetting(st.Flag, st.Value); err != nil {
			return nil, setup.Errorf("--%s: %w", st.Flag, err)
		}
	}
	return s, nil
}

func positives(flag, s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v <= 0 {
			return nil, setup.Errorf("--%s %q: want positive numbers separated by commas", flag, s)
		}
		out = append(out, v)
	}
	return out, nil
}

// Stopped is the error of a sweep whose context was cancelled: the cells
// under way finished and are kept, so the same sweep resumes from them.
type Stopped struct {
	Stats
	Cells int // this shard's
	Dir   string
}

func (e *Stopped) Error() string {
	return fmt.Sprintf("sweep stopped: %d of %d cells done (%d this run, %d before), kept in %s/cells; run the same command again to resume",
		e.Ran+e.Cached, e.Cells, e.Ran, e.Cached, e.Dir)
}

var errStop = errors.New("stopped")

// RunShard runs the cells of sw that shard holds, parallel at a time,
// reusing those already in sw.Out; done is called as each ends. A
// cancelled ctx starts no new cell and returns *Stopped. notes gets what
// the user should know (a folder that held another spec's cells).
func (sw *Sweep) RunShard(ctx context.Context, shard Shard, parallel int, done func(), notes io.Writer) (Stats, []Cell, error) {
	store := Store{Dir: sw.Out}
	if old, err := store.ReadManifest(); err == nil && old.Version == sw.Manifest.Version && !old.Equal(sw.Manifest) {
		fmt.Fprintf(notes, "elis-sim: %s held another spec's cells; those of this one are reused, the rest run\n", sw.Out)
	}
	if err := store.WriteManifest(sw.Manifest); err != nil {
		return Stats{}, nil, err
	}
	var mine []Cell
	for i := range sw.Cells {
		if shard.Has(&sw.Cells[i]) {
			mine = append(mine, sw.Cells[i])
		}
	}
	run := func(c *Cell) (*Record, error) {
		if ctx.Err() != nil {
			return nil, errStop
		}
		return sw.RunCell(c)
	}
	st, err := Run(store, mine, parallel, run, done)
	if errors.Is(err, errStop) {
		return st, mine, &Stopped{Stats: st, Cells: len(mine), Dir: sw.Out}
	}
	return st, mine, err
}

// Report writes the reports of a whole sweep (shard N of 1) after its run.
func (sw *Sweep) Report(summary io.Writer) error {
	stores := []Store{{Dir: sw.Out}}
	if missing := Missing(stores, sw.Cells); len(missing) > 0 {
		return fmt.Errorf("%d cells have no record after the run", len(missing))
	}
	return WriteReports(sw.Spec, sw.Out, stores, sw.Cells, summary)
}

// Merge gathers the cells of sharded sweeps (their output folders, dirs)
// into out, a sweep's output like any (it resumes and merges again), and
// writes its reports to summary. Missing cells are listed on notes and
// refused unless allowMissing. Every record is read before anything is
// written, so a damaged one leaves no half-merged folder behind.
func Merge(dirs []string, out string, allowMissing bool, notes, summary io.Writer) error {
	var stores []Store
	var man *Manifest
	for _, dir := range dirs {
		s := Store{Dir: dir}
		m, err := s.ReadManifest()
		if err != nil {
			return setup.Bad(err)
		}
		if man != nil && !man.Equal(m) {
			return setup.Errorf("%s: its spec or binary differs from %s's; merge only shards of one sweep", dir, stores[0].Dir)
		}
		man = m
		stores = append(stores, s)
	}
	grid := Grid{Version: man.Version, Ignores: IgnoredByCell}
	cells := grid.Cells(man.Spec)
	if missing := Missing(stores, cells); len(missing) > 0 {
		fmt.Fprintf(notes, "elis-sim: %d of %d cells are missing:\n", len(missing), len(cells))
		for i, m := range missing {
			if i == 20 {
				fmt.Fprintf(notes, "  ... and %d more\n", len(missing)-20)
				break
			}
			fmt.Fprintf(notes, "  %s (cell %d of the grid, in shard %d mod N): %s, %s, %gx load, seed %d\n", m.Key, m.Index, m.Index, m.Workload.Name(), m.Label(), m.Load, m.Seed)
		}
		if !allowMissing {
			return fmt.Errorf("merge: %d cells missing (rerun their shards, or --allow-missing to report the rest)", len(missing))
		}
	}
	if err := Gather(stores, cells, func(*Record) error { return nil }); err != nil {
		return err
	}
	dst := Store{Dir: out}
	if err := dst.WriteManifest(man); err != nil {
		return err
	}
	err := Gather(stores, cells, func(r *Record) error {
		if dst.Has(r.Key) {
			return nil
		}
		return dst.Put(r)
	})
	if err != nil {
		return err
	}
	return WriteReports(man.Spec, out, []Store{dst}, cells, summary)
}

// FromOptions is the sweep a command's options describe, and the share of
// it this process runs: a spec file (the spec option; then the grid and
// run options must not be set, unless envOnly says their environment
// variable set them), or the grid the options name; the shard option,
// else a batch system's index from getenv. Bad options come back as
// *setup.Error.
func FromOptions(o setup.Options, envOnly func(name string) bool, getenv func(string) string) (*Sweep, Shard, error) {
	if err := CheckOut(o.String("out")); err != nil {
		return nil, Shard{}, err
	}
	var spec *Spec
	var err error
	if p := o.String("spec"); p != "" {
		for _, f := range append(GridOptions, setup.FlagNames()...) {
			if o.IsSet(f) && !envOnly(f) {
				return nil, Shard{}, setup.Errorf("--%s: with --spec, name it in the spec (settings or axes)", f)
			}
		}
		if spec, err = Parse(p); err != nil {
			return nil, Shard{}, setup.Bad(err)
		}
		if err := spec.Check(p, CheckSetting); err != nil {
			return nil, Shard{}, setup.Bad(err)
		}
	} else if spec, err = SpecFromOptions(o); err != nil {
		return nil, Shard{}, err
	}
	PolicyAxis(spec)
	for _, w := range spec.Workloads {
		if w.Scenario != "" && setup.ScenarioByName(w.Scenario) == nil {
			return nil, Shard{}, setup.Errorf("%sscenario %q: valid are %s", specLine(o, w.Line), w.Scenario, strings.Join(setup.ScenarioNames(), ", "))
		}
	}
	if err := spec.Resolve(); err != nil {
		return nil, Shard{}, setup.Bad(err)
	}
	shard, err := shardOf(o, getenv)
	if err != nil {
		return nil, Shard{}, err
	}
	sw, err := NewSweep(spec, o.String("spec"), o.String("out"))
	return sw, shard, err
}

// shardOf is the share of the grid this process runs: --shard, else a
// batch system's index, else all of it.
func shardOf(o setup.Options, getenv func(string) string) (Shard, error) {
	if v := o.String("shard"); v != "" {
		s, err := ParseShard(v)
		if err != nil {
			return s, setup.Errorf("--shard %w", err)
		}
		return s, nil
	}
	s, ok, err := ShardFromEnv(getenv, o.Int("shards"))
	if err != nil {
		return s, setup.Errorf("%w", err)
	}
	if !ok {
		if o.IsSet("shards") {
			return s, setup.Errorf("--shards: only with JOB_COMPLETION_INDEX set (a Kubernetes Indexed Job); else use --shard I/N")
		}
		return Shard{I: 0, N: 1}, nil
	}
	return s, nil
}

func specLine(o setup.Options, line int) string {
	if o.String("spec") == "" {
		return "--"
	}
	return fmt.Sprintf("%s:%d: workloads: ", o.String("spec"), line)
}

// CheckOut refuses an --out a sweep cannot fill: a sweep writes a
// directory (its cells, spec and reports).
func CheckOut(out string) error {
	if st, err := os.Stat(out); err == nil && !st.IsDir() {
		return setup.Errorf("--out %s: is a file; a sweep writes a directory (cells, spec, reports): name a directory", out)
	}
	if strings.HasSuffix(out, ".json") {
		return setup.Errorf("--out %s: a sweep writes a directory (cells, spec, reports), not a .json file", out)
	}
	return setup.CheckOutDir(out, 2)
}

// GridFlags are the options of "elis-sim sweep" beyond a run's (which
// become settings): the spec, or the grid it would hold (GridOptions),
// and how the cells run.
func GridFlags() []setup.Flag {
	return []setup.Flag{
		{Name: "spec", Default: "", Usage: "experiment file (YAML or JSON): workloads, loads, seeds, settings, axes and report; the grid flags below then do not apply"},
		{Name: "scenario", Default: "all", Usage: "all, or one of " + strings.Join(setup.ScenarioNames(), ", ") + " (ignored with --trace)"},
		{Name: "trace", Default: "", Usage: "sweep this native trace instead of the scenarios; loads scale its arrival rate"},
		{Name: "loads", Default: "1,2,3,4,5", Usage: "load multipliers of the arrival rate"},
		{Name: "seeds", Default: 5, Usage: "seeds per point (workload and predictor noise)"},
		{Name: "n", Default: 2000, Usage: "requests per generated workload"},
		{Name: "mae", Default: "", Usage: "predictor error levels to sweep, comma-separated MAEs in tokens (overrides --predictor)"},
		{Name: "parallel", Default: runtime.NumCPU(), Usage: "runs at once"},
		{Name: "shard", Default: "", Usage: "run shard I of N (I/N, 0 <= I < N) of the grid's cells; default: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX when set"},
		{Name: "shards", Default: 0, Usage: "with JOB_COMPLETION_INDEX (a Kubernetes Indexed Job): the number of shards, the Job's completions"},
		{Name: "out", Default: "sweep", Usage: "output directory; a rerun into it skips the cells already done", Aliases: []string{"o"}},
	}
}
