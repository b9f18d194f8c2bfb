package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

// scenario is a workload a sweep runs at several loads.
type scenario struct {
	name, about string
	arrivals    traces.Arrivals // at 1x
	prompt      traces.Lengths
	output      traces.Lengths
	logPreds    bool // write the prediction log of ISRTF at the highest load
	// policies, when set, are the scenario's own --policy default; only
	// runs it when named (not in "all").
	policies string
	only     bool
}

// scenarios follow the ISRTF test guide for the patched vLLM.
var scenarios = []scenario{
	{"fcfs-vs-isrtf", "ELIS-like gamma arrivals, LMSYS-like lengths",
		traces.Gamma{Shape: 0.73, Scale: 10.41}, traces.LogNormal{Mean: 62, Sigma: 1.2, Max: 2048}, traces.LogNormal{Mean: 160, Sigma: 0.9, Max: 1024}, false, "", false},
	{"mixed-lengths", "a third each of short (50-100), medium (100-300) and long (300-500) outputs",
		traces.Gamma{Shape: 0.73, Scale: 10.41}, traces.LogNormal{Mean: 62, Sigma: 1.2, Max: 2048},
		traces.Mixture{traces.Uniform{Min: 50, Max: 100}, traces.Uniform{Min: 100, Max: 300}, traces.Uniform{Min: 300, Max: 500}}, false, "", false},
	{"long-output", "long outputs (800-1600 tokens) whose prediction updates can be watched",
		traces.Gamma{Shape: 0.73, Scale: 10.41 * 6}, traces.LogNormal{Mean: 62, Sigma: 1.2, Max: 2048}, traces.Uniform{Min: 800, Max: 1600}, true, "", false},
	{name: "isrtf-variants", about: "FCFS, ISRTF as the paper has it, the vLLM patch and each guard, on the fcfs-vs-isrtf workload: run with --policy to choose the variants",
		arrivals: traces.Gamma{Shape: 0.73, Scale: 10.41}, prompt: traces.LogNormal{Mean: 62, Sigma: 1.2, Max: 2048}, output: traces.LogNormal{Mean: 160, Sigma: 0.9, Max: 1024},
		policies: "fcfs,isrtf+eager,isrtf/patch+sync+eager,isrtf,isrtf+margin=20:0.2,isrtf+cap=2,isrtf+cap=1.5", only: true},
}

func scenarioNames() []string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	return out
}

func sweepCommand() *cli.Command {
	flags := append(simFlags(),
		&cli.StringFlag{Name: "scenario", Value: "all", Usage: "all, or one of " + strings.Join(scenarioNames(), ", ") + " (ignored with --trace)"},
		&cli.StringFlag{Name: "trace", Usage: "sweep this native trace instead of the scenarios; loads scale its arrival rate"},
		&cli.StringFlag{Name: "loads", Value: "1,2,3,4,5", Usage: "load multipliers of the arrival rate"},
		&cli.IntFlag{Name: "seeds", Value: 5, Usage: "seeds per point (workload and predictor noise)"},
		&cli.IntFlag{Name: "n", Value: 2000, Usage: "requests per generated workload"},
		&cli.StringFlag{Name: "mae", Usage: "predictor error levels to sweep, comma-separated MAEs in tokens (overrides --predictor)"},
		&cli.IntFlag{Name: "parallel", Value: runtime.NumCPU(), Usage: "runs at once"},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "sweep", Usage: "output directory"},
	)
	return usageErrors(&cli.Command{
		Name:  "sweep",
		Usage: "run policies x loads x seeds (x predictor errors) and plot latency against load",
		Description: "Without --trace it runs the three scenarios of the ISRTF test guide. For each it writes\n" +
			"results.csv (every run), summary.txt (a comparison per load), load.png (mean and P99 JCT\n" +
			"against load, one colour per policy) and cdf-<load>x.png; long-output also predictions.log.",
		UsageText: "elis-sim sweep --policy fcfs,isrtf,srpt-oracle --loads 1,2,3,4,5 --seeds 5 -o sweep",
		Flags:     flags,
		Action:    sweepAction,
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

func sweepAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return badf("sweep takes no arguments (use --trace)")
	}
	if err := checkOutDir(c.String("out"), 2); err != nil {
		return err
	}
	if !c.IsSet("policy") {
		def := "fcfs,isrtf,srpt-oracle"
		for _, s := range scenarios {
			if s.name == c.String("scenario") && s.policies != "" && c.String("trace") == "" {
				def = s.policies
			}
		}
		c.Set("policy", def)
	}
	setup, err := parseSimSetup(c, c.String("trace") == "")
	if err != nil {
		return err
	}
	loads, err := parseFloats("loads", c.String("loads"))
	if err != nil {
		return err
	}
	var maes []float64
	if c.String("mae") != "" {
		if maes, err = parseFloats("mae", c.String("mae")); err != nil {
			return err
		}
	}
	seeds := c.Int("seeds")
	if seeds < 1 || c.Int("n") < 1 {
		return badf("--seeds and --n: want >= 1")
	}
	var todo []scenario
	var base *traces.Trace
	if p := c.String("trace"); p != "" {
		if base, err = traces.ReadFile(p); err != nil {
			return bad(err)
		}
		todo = []scenario{{name: strings.TrimSuffix(filepath.Base(p), filepath.Ext(p)), about: p}}
	} else {
		for _, s := range scenarios {
			if c.String("scenario") == "all" && !s.only || c.String("scenario") == s.name {
				todo = append(todo, s)
			}
		}
		if len(todo) == 0 {
			return badf("--scenario %q: valid are all, %s", c.String("scenario"), strings.Join(scenarioNames(), ", "))
		}
	}
	sw := &sweep{setup: setup, loads: loads, maes: maes, seeds: seeds, n: c.Int("n"), parallel: c.Int("parallel"), out: c.String("out")}
	for _, sc := range todo {
		if err := sw.run(sc, base); err != nil {
			return err
		}
	}
	return nil
}

type sweep struct {
	setup    *simSetup
	loads    []float64
	maes     []float64
	seeds    int
	n        int
	parallel int
	out      string
}

// point is one cell of the grid.
type point struct {
	policy string
	load   float64
	seed   uint64
	mae    float64 // 0: the --predictor flag's
}

func (p point) label() string {
	if p.mae > 0 && usesPredictor(p.policy) {
		return fmt.Sprintf("%s mae=%g", p.policy, p.mae)
	}
	return p.policy
}

// usesPredictor tells the policies whose results depend on the predictor's
// error (srpt-oracle has a perfect one built in).
func usesPredictor(policy string) bool { return strings.HasPrefix(policy, "isrtf") }

func (sw *sweep) run(sc scenario, base *traces.Trace) error {
	var pts []point
	var jobs []sim.Job
	maes := sw.maes
	if len(maes) == 0 {
		maes = []float64{0}
	}
	for _, load := range sw.loads {
		for seed := uint64(1); seed <= uint64(sw.seeds); seed++ {
			tr := base
			if tr == nil {
				var err error
				if tr, err = traces.Generate(traces.GenConfig{N: sw.n, Seed: seed, Arrivals: sc.arrivals, Prompt: sc.prompt, Output: sc.output, Name: sc.name}); err != nil {
					return err
				}
			}
			tr = scaled(tr, load)
			for _, pol := range sw.setup.policies {
				for _, mae := range maes {
					if mae > 0 && !usesPredictor(pol) && mae != maes[0] {
						continue // the predictor does not matter to these
					}
					cfg := sw.setup.configFor(sw.setup.base, pol)
					cfg.Seed = seed
					cfg.KeepHistory = sc.logPreds
					if mae > 0 {
						cfg.Predictor = predictor.Spec{Kind: "noisy", MAE: mae}
					}
					pts = append(pts, point{pol, load, seed, mae})
					jobs = append(jobs, sim.Job{Trace: tr, Config: cfg})
				}
			}
		}
	}
	var bar *progressbar.ProgressBar
	done := func() {}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.NewOptions(len(jobs), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(sc.name), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		done = func() { bar.Add(1) }
	}
	results, err := sim.RunAll(jobs, sw.parallel, done)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	dir := filepath.Join(sw.out, sc.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	runs := make([]report.SweepRun, len(results))
	for i, res := range results {
		desc := fmt.Sprintf("%s, %gx load, seed %d", sc.about, pts[i].load, pts[i].seed)
		r := sw.setup.toRun(pts[i].policy, desc, res, res.Sigma)
		r.Label = pts[i].label()
		target := pts[i].mae
		if target == 0 && usesPredictor(pts[i].policy) {
			target = sw.setup.base.Predictor.MAE // the --predictor flag's target, if it has one
		}
		runs[i] = report.SweepRun{Run: r, Policy: pts[i].policy, Load: pts[i].load, Seed: pts[i].seed, MAE: target}
	}
	if err := atomicfile.Write(filepath.Join(dir, "results.csv"), func(w io.Writer) error { return report.WriteSweepCSV(w, runs) }); err != nil {
		return err
	}
	return sw.report(sc, dir, runs)
}

// report writes the sweep's summary, its plots and, for scenarios that ask
// for it, the prediction log.
func (sw *sweep) report(sc scenario, dir string, runs []report.SweepRun) error {
	loads, curves, order := report.Sweep(runs, sw.loads)
	for _, l := range loads {
		p, err := report.CDF(fmt.Sprintf("CDF of job completion time, %s at %gx load (all seeds)", sc.name, l.Load), report.PlotMetrics["jct"], true, l.JCTs)
		if err != nil {
			return err
		}
		if err := report.Save(p, filepath.Join(dir, fmt.Sprintf("cdf-%gx.png", l.Load))); err != nil {
			return err
		}
	}
	seeds := fmt.Sprintf("%d seeds, 95%% CI", sw.seeds)
	if sw.seeds == 1 {
		seeds = "1 seed"
	}
	p, err := report.LoadCurves(fmt.Sprintf("%s: job completion time against load (%s)", sc.name, seeds), curves, order)
	if err != nil {
		return err
	}
	if err := report.Save(p, filepath.Join(dir, "load.png")); err != nil {
		return err
	}
	if len(order) > 2 {
		// Several policies or variants: the mean-against-tail trade per load.
		for _, l := range sw.loads {
			p, err := report.Pareto(fmt.Sprintf("%s at %gx: mean against P99 job completion time (%s)", sc.name, l, seeds), curves, order, l)
			if err != nil {
				return err
			}
			if err := report.Save(p, filepath.Join(dir, fmt.Sprintf("pareto-%gx.png", l))); err != nil {
				return err
			}
		}
	}
	if sc.logPreds {
		if err := sw.writePredictionLog(dir, runs); err != nil {
			return err
		}
	}
	head := fmt.Sprintf("scenario %s: %s\n%s\n", sc.name, sc.about, runs[0].Run.Setup["summary"])
	if err := atomicfile.Write(filepath.Join(dir, "summary.txt"), func(w io.Writer) error { return report.WriteSweepSummary(w, head, loads) }); err != nil {
		return err
	}
	if err := report.WriteSweepSummary(os.Stdout, head, loads); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s/{results.csv,summary.txt,load.png,cdf-*.png,pareto-*.png}\n\n", dir)
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

// writePredictionLog logs ISRTF's predictions at the highest load, seed 1.
func (sw *sweep) writePredictionLog(dir string, runs []report.SweepRun) error {
	top := sw.loads[len(sw.loads)-1]
	for _, sr := range runs {
		if sr.Policy == "isrtf" && sr.Load == top && sr.Seed == 1 {
			return atomicfile.Write(filepath.Join(dir, "predictions.log"), func(w io.Writer) error {
				if err := report.WritePredictionLog(w, sr.Run.Records); err != nil {
					return err
				}
				fmt.Fprintf(w, "\n# accuracy by tokens generated so far\n")
				return report.WriteAccuracy(w, report.AccuracyByProgress(sr.Run.Records, 0))
			})
		}
	}
	return nil
}
