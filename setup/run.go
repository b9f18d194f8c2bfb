package setup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

// Stream says where a run's records go as the simulator finishes them,
// so that no run holds its records: a run file per policy in Out (none
// when empty), and the per-request values of PlotMetric for a plot.
type Stream struct {
	Out        string
	PlotMetric string
}

// Run simulates the trace args name (or the default workload) under each
// policy in turn, as RunAll does. A JSONL trace is read as each run goes
// (traces.Stream: the trace is never held whole) when the runs stream
// their records and none needs the whole trace first (a predictor fitted
// to a target error over it, recorded predictions, overheads before
// joining) and the trace is a regular file; any other, or one a stream
// cannot vouch for (traces.ErrReadWhole), is loaded first.
func (s *Sim) Run(o Options, args []string, stream *Stream, each func(*report.Run) error) ([]*report.Run, error) {
	if len(args) == 1 && traces.IsJSONL(args[0]) && regular(args[0]) && s.streamable(stream) {
		runs, err := s.streamAll(args[0], stream)
		if !errors.Is(err, traces.ErrReadWhole) {
			return runs, err
		}
	}
	tr, desc, err := LoadTrace(o, args)
	if err != nil {
		return nil, err
	}
	return s.RunAll(tr, desc, stream, each)
}

// regular reports whether path is a regular file: each run streams it
// anew, which a pipe could not give twice.
func regular(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// streamable reports whether every run can take its trace as a stream.
func (s *Sim) streamable(stream *Stream) bool {
	if stream == nil {
		return false
	}
	for _, p := range s.Policies {
		cfg := s.ConfigFor(s.Base, p)
		if sim.NeedsTrace(cfg) || cfg.Overheads.PerRequest > 0 || cfg.Overheads.PerPromptToken > 0 {
			return false
		}
	}
	return true
}

// streamAll runs each policy on its own stream of the trace at path.
func (s *Sim) streamAll(path string, stream *Stream) ([]*report.Run, error) {
	// The summary's samples are sized for the most requests the file can
	// hold (a request's line is at least 62 bytes), which costs address
	// space only, up to a bound.
	requests := 0
	if fi, err := os.Stat(path); err == nil {
		requests = int(min(fi.Size()/62, 1<<22))
	}
	var runs []*report.Run
	for _, p := range s.Policies {
		cfg := s.ConfigFor(s.Base, p)
		run, err := s.streamRun(cfg, p, 0, requests, stream, func(cfg sim.Config) (*sim.Result, string, error) {
			st, err := traces.OpenStream(path)
			if err != nil {
				return nil, "", Bad(err)
			}
			defer st.Close()
			res, err := sim.RunStream(st, cfg)
			if err != nil {
				return nil, "", err
			}
			if err := st.Err(); err != nil {
				if errors.Is(err, traces.ErrReadWhole) {
					return nil, "", err
				}
				return nil, "", Bad(err)
			}
			return res, describe(path, st.Len(), st.Duration(), st.Rate()), nil
		})
		if err != nil {
			return nil, err
		}
		runs = append(runs, run)
	}
	return runs, nil
}

// RunAll simulates tr under each policy in turn. With stream set, each
// run's records are summarised and written as they finish and the runs
// returned hold none; else each, when set, gets every run as soon as it
// exists. Either way policies run one after another.
func (s *Sim) RunAll(tr *traces.Trace, desc string, stream *Stream, each func(*report.Run) error) ([]*report.Run, error) {
	if s.Base.Predictor.Kind == "recorded" && !slices.ContainsFunc(tr.Requests, func(r traces.Request) bool { return len(r.Predictions) > 0 }) {
		return nil, Errorf("--predictor recorded: the trace %s has no recorded predictions (its requests' \"predictions\" field)", desc)
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
			run, err := s.streamRun(cfg, p, sigma, len(tr.Requests), stream, func(cfg sim.Config) (*sim.Result, string, error) {
				res, err := sim.Run(tr, cfg)
				return res, desc, err
			})
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
		run := s.ToRun(p, desc, res, max(sigma, res.Sigma))
		if each != nil {
			if err := each(run); err != nil {
				return nil, err
			}
		}
		runs = append(runs, run)
	}
	return runs, nil
}

// ToRun is policy p's simulation of the workload desc describes, as a run
// (sigma: the noisy predictor's).
func (s *Sim) ToRun(p *Policy, desc string, res *sim.Result, sigma float64) *report.Run {
	return report.NewRun(s.Label(p), s.SetupOf(p.Entry, desc, sigma), res.Records, &res.Gaps, &res.Stats.Errors, s.SLO)
}

// streamRun simulates one policy with its records summarised, written to
// their run file and sampled for the plot as they finish, never held:
// simulate runs cfg and says what workload it ran (for the run's setup).
// Its summary is sized for about requests requests.
func (s *Sim) streamRun(cfg sim.Config, p *Policy, sigma float64, requests int, st *Stream, simulate func(sim.Config) (*sim.Result, string, error)) (*report.Run, error) {
	label := s.Label(p)
	z := report.NewSummarizer(s.SLO)
	z.Grow(requests)
	done := false // the run and its file, if any, are complete
	var rw *report.RunWriter
	if st.Out != "" {
		path := report.RunPath(st.Out, label, len(s.Policies))
		made, err := makeDirs(filepath.Dir(path))
		if err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		// A run that fails leaves no directory it made (a streamed trace's
		// bad line is found at the end of the first run).
		defer func() {
			if !done {
				for i := len(made) - 1; i >= 0; i-- {
					os.Remove(made[i]) // only if empty
				}
			}
		}()
		if rw, err = report.NewRunWriter(path); err != nil {
			return nil, err
		}
		defer rw.Abort()
	}
	var vals []float64
	pipe := newRecordPipe(func(r *policies.Record) error {
		z.Add(r)
		if st.PlotMetric != "" {
			if v, ok := report.MetricValue(r, st.PlotMetric); ok {
				vals = append(vals, v)
			}
		}
		if rw != nil {
			return rw.Add(r)
		}
		return nil
	})
	cfg.OnRecord = pipe.Add
	res, desc, err := simulate(cfg)
	if perr := pipe.Close(); err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	run := report.RunFrom(label, s.SetupOf(p.Entry, desc, max(sigma, res.Sigma)), z, &res.Gaps, &res.Stats.Errors, nil)
	if st.PlotMetric != "" {
		run.PlotValues = map[string][]float64{st.PlotMetric: vals}
	}
	if rw != nil {
		if err := rw.Close(run); err != nil {
			return nil, err
		}
	}
	done = true
	return run, nil
}

// Outputs is where a run's records go, from its output options: streamed
// out of the simulator into the summary, the run files and the plot's
// sample as they finish; only the prediction log, which reads them all
// at the end, needs them kept (the run files are then written as each
// run ends).
func (s *Sim) Outputs(o Options) (*Stream, func(*report.Run) error) {
	out := o.String("out")
	if o.String("log-predictions") == "" {
		st := &Stream{Out: out}
		if o.String("plot") != "" {
			st.PlotMetric = o.String("plot-metric")
		}
		return st, nil
	}
	if out == "" {
		return nil, nil
	}
	return nil, func(r *report.Run) error { return report.WriteRunIn(out, r, len(s.Policies)) }
}

// recordPipe hands a run's records to a sink on another goroutine, in
// batches and in order, so that the simulator goes on while they are
// summarised and written (a million-request run file is 300 MB of JSON,
// as long to encode as the run is to simulate). The sink's first error
// comes back from Close; records after it are not given to it.
type recordPipe struct {
	batch      []policies.Record
	full, free chan []policies.Record
	done       chan error
}

const pipeBatch = 4096

func newRecordPipe(sink func(*policies.Record) error) *recordPipe {
	p := &recordPipe{full: make(chan []policies.Record, 2), free: make(chan []policies.Record, 3), done: make(chan error, 1)}
	for range 2 {
		p.free <- make([]policies.Record, 0, pipeBatch)
	}
	p.batch = make([]policies.Record, 0, pipeBatch)
	go func() {
		var err error
		for b := range p.full {
			for i := range b {
				if err == nil {
					err = sink(&b[i])
				}
			}
			clear(b)
			p.free <- b[:0]
		}
		p.done <- err
	}()
	return p
}

// Add queues a copy of r for the sink.
func (p *recordPipe) Add(r *policies.Record) error {
	p.batch = append(p.batch, *r)
	if len(p.batch) == pipeBatch {
		p.full <- p.batch
		p.batch = <-p.free
	}
	return nil
}

// Close hands over what is queued, waits for the sink to finish and
// returns its first error.
func (p *recordPipe) Close() error {
	if len(p.batch) > 0 {
		p.full <- p.batch
	}
	close(p.full)
	return <-p.done
}

// makeDirs makes dir and its missing parents, and returns those it made,
// outermost first.
func makeDirs(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	slices.Reverse(missing)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return missing, nil
}
