package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

// simFlags are the flags that set up a simulated run (shared with sweep
// and serve), declared from setup.Flags: one table of names, defaults and
// help for the CLI and a sweep spec alike.
func simFlags() []cli.Flag {
	var out []cli.Flag
	for _, f := range setup.Flags() {
		switch d := f.Default.(type) {
		case string:
			out = append(out, &cli.StringFlag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		case int:
			out = append(out, &cli.IntFlag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		case float64:
			out = append(out, &cli.Float64Flag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		case bool:
			out = append(out, &cli.BoolFlag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		case uint64:
			out = append(out, &cli.Uint64Flag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		default:
			panic(fmt.Sprintf("setup flag %s: default of type %T", f.Name, d))
		}
	}
	return out
}

// policyFlag gives a command's --policy the default it uses (and, when
// usage is set, its own help), so that the default help shows is the one
// the command runs: serve runs one policy (vLLM's default, fcfs), a sweep
// compares three.
func policyFlag(flags []cli.Flag, def, usage string) []cli.Flag {
	for i, f := range flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "policy" {
			one := *sf
			one.Value = def
			if usage != "" {
				one.Usage = usage
			}
			flags[i] = &one
		}
	}
	return flags
}

// simRun simulates a trace under a setup's policy entries.
type simRun struct{ *setup.Sim }

// streamOut says where a run's records go as the simulator finishes them,
// so that no run holds its records: a run file per policy in out (none
// when empty), and the per-request values of plotMetric for a plot.
type streamOut struct {
	out        string
	plotMetric string
}

// runAll simulates tr under each policy in turn. With stream set, each
// run's records are summarised and written as they finish and the runs
// returned hold none; else each, when set, gets every run as soon as it
// exists. Either way policies run one after another.
func (s simRun) runAll(tr *traces.Trace, desc string, stream *streamOut, each func(*report.Run) error) ([]*report.Run, error) {
	if s.Base.Predictor.Kind == "recorded" && !slices.ContainsFunc(tr.Requests, func(r traces.Request) bool { return len(r.Predictions) > 0 }) {
		return nil, setup.Errorf("--predictor recorded: the trace %s has no recorded predictions (its requests' \"predictions\" field)", desc)
	}
	base := s.Base
	sigma := 0.0
	reads := false // does any run read the predictor?
	for _, p := range s.Policies {
		reads = reads || sim.ReadsPredictor(s.ConfigFor(base, p))
	}
	if spec := base.Predictor; reads && spec.Kind == "noisy" && spec.MAE > 0 {
		// Fit the noisy predictor's sigma once, for every run.
		_, fit, err := sim.PredictorFor(spec, tr, base.Engine.PredictionInterval, base.Seed)
		if err != nil {
			return nil, err
		}
		sigma = fit
		base.Predictor = predictor.Spec{Kind: "noisy", Sigma: fit}
	}
	var runs []*report.Run
	for _, p := range s.Policies {
		cfg := s.ConfigFor(base, p)
		if stream != nil {
			run, err := s.streamRun(tr, desc, cfg, p, sigma, stream)
			if err != nil {
				return nil, err
			}
			runs = append(runs, run)
			continue
		}
		res, err := sim.Run(tr, cfg)
		if err != nil {
			return nil, err
		}
		run := s.toRun(p, desc, res, max(sigma, res.Sigma))
		if each != nil {
			if err := each(run); err != nil {
				return nil, err
			}
		}
		runs = append(runs, run)
	}
	return runs, nil
}

func (s simRun) toRun(p *setup.Policy, desc string, res *sim.Result, sigma float64) *report.Run {
	return report.NewRun(s.Label(p), s.SetupOf(p.Entry, desc, sigma), res.Records, &res.Gaps, &res.Stats.Errors, s.SLO)
}

// streamRun simulates one policy with its records summarised, written to
// their run file and sampled for the plot as they finish, never held.
func (s simRun) streamRun(tr *traces.Trace, desc string, cfg sim.Config, p *setup.Policy, sigma float64, st *streamOut) (*report.Run, error) {
	label := s.Label(p)
	z := report.NewSummarizer(s.SLO)
	var rw *report.RunWriter
	if st.out != "" {
		path := report.RunPath(st.out, label, len(s.Policies))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		var err error
		if rw, err = report.NewRunWriter(path); err != nil {
			return nil, err
		}
		defer rw.Abort()
	}
	var vals []float64
	cfg.OnRecord = func(r *policies.Record) error {
		z.Add(r)
		if st.plotMetric != "" {
			if v, ok := report.MetricValue(r, st.plotMetric); ok {
				vals = append(vals, v)
			}
		}
		if rw != nil {
			return rw.Add(r)
		}
		return nil
	}
	res, err := sim.Run(tr, cfg)
	if err != nil {
		return nil, err
	}
	run := report.RunFrom(label, s.SetupOf(p.Entry, desc, max(sigma, res.Sigma)), z, &res.Gaps, &res.Stats.Errors, nil)
	if st.plotMetric != "" {
		run.PlotValues = map[string][]float64{st.plotMetric: vals}
	}
	if rw != nil {
		if err := rw.Close(run); err != nil {
			return nil, err
		}
	}
	return run, nil
}
