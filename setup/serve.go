package setup

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/engine"
	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/hist"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/serve"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

// Serve is a server's setup, read from the options of "elis-sim serve":
// one policy on one or more engine replicas, each a core stepping on a
// cost model's clock (engine "sim") or on a device's forward passes.
type Serve struct {
	Sim       *Sim
	Entry     *Policy
	Run       sim.Config // the policy's run config, engine limits included
	Device    string     // sim, or an executor
	Model     *gpu.Model // on a device: the model run
	Name      string     // the served model's name
	Limits    serve.Limits
	Predictor policies.Predictor // nil when nothing reads one
	Tokens    traces.TokenCounter
	Vocab     int // token ids a prompt may hold (0: any)
	// Warnings are notes for the operator (a bound lowered to fit).
	Warnings []string

	pol policies.Policy // the one policy, shared by the replicas' cores
}

// ParseServe reads and checks a server's options; bad ones come back as
// *Error.
func ParseServe(o Options) (*Serve, error) {
	s := &Serve{Device: o.String("engine")}
	if s.Device != "sim" && !slices.Contains(gpu.Devices(), s.Device) {
		return nil, Errorf("--engine %q: valid are sim, %s", s.Device, strings.Join(gpu.Devices(), ", "))
	}
	var err error
	if err = s.parseLimits(o); err != nil {
		return nil, err
	}
	if s.Sim, err = ParseSim(o, false); err != nil {
		return nil, err
	}
	if len(s.Sim.Policies) != 1 {
		return nil, Errorf("--policy %q: serve runs one policy; start one server per policy", o.String("policy"))
	}
	s.Entry = s.Sim.Policies[0]
	s.Run = s.Sim.ConfigFor(s.Sim.Base, s.Entry)
	if s.pol, err = policies.New(s.Run.Policy, s.Run.Mode); err != nil {
		return nil, Errorf("--policy: %w", err)
	}
	if sim.ReadsPredictor(s.Run) {
		if s.Predictor, err = servePredictor(s.Run.Predictor, s.Run.Seed); err != nil {
			return nil, Errorf("--predictor: %w", err)
		}
	}
	if s.Tokens, err = tokenCounter(o.String("tokenizer")); err != nil {
		return nil, Errorf("--tokenizer: %w", err)
	}
	if s.Name = o.String("served-model-name"); s.Name == "" {
		s.Name = o.String("model")
	}
	if r, ok := s.Run.Cost.(*cost.Roofline); ok {
		s.Vocab = r.Arch.Vocab // the model's, where it is known: ids beyond it are refused
	}
	if s.Device == "sim" {
		return s, nil
	}
	// A device engine runs the model's forward passes: CPU-sized limits
	// unless flags say otherwise, as in replay.
	if s.Model, err = gpu.LoadModel(o.String("model"), s.Run.Seed); err != nil {
		return nil, Errorf("--model: %w", err)
	}
	s.Run.Engine = DeviceEngine(o, s.Model)
	s.Run.Engine.PrefixCaching = !o.Bool("no-enable-prefix-caching")
	if err := PolicyOptions(o, &s.Run.Engine); err != nil {
		return nil, err
	}
	s.Entry.Apply(Knobs{Policy: &s.Run.Policy, Mode: &s.Run.Mode, Engine: &s.Run.Engine, Sync: &s.Run.SyncPredictions})
	s.Sim.Engine = fmt.Sprintf("%s on %s", o.String("model"), s.Device)
	s.Vocab = s.Model.Cfg.Vocab
	return s, nil
}

// Label is the server's policy as runs show it.
func (s *Serve) Label() string { return s.Sim.Label(s.Entry) }

// Config is the server's serve.Config: replicas built by NewWorker, each
// core reporting its inter-token gaps to onGap (from the replicas'
// goroutines) and its predictions to predLog (the fork's [ELIS] lines;
// nil for none).
func (s *Serve) Config(predLog io.Writer, onGap func(gap float64, n int), records func(policies.Record)) serve.Config {
	cfg, pol := s.Run, s.pol
	return serve.Config{Model: s.Name, MaxModelLen: cfg.Engine.MaxModelLen, Workers: cfg.Workers, Router: cfg.Router, Predictor: s.Predictor,
		PredictionLog: predLog, Tokens: s.Tokens.CountTokens, Vocab: s.Vocab, Limits: s.Limits, Records: records,
		NewWorker: func(i int) (engine.Config, error) {
			core, err := policies.NewScheduler(cfg.Engine, pol)
			if err != nil {
				return engine.Config{}, err
			}
			core.KeepHistory = pol.Predictive()
			core.OnGap = onGap
			ec := engine.Config{Core: core, Coster: cfg.Cost, PredCost: cfg.PredCost, SyncPredictions: cfg.SyncPredictions, Seed: cfg.Seed, Predictor: s.Predictor}
			if s.Model != nil {
				exec, err := gpu.NewExecutor(s.Device, i, s.Model, cfg.Engine.BlockSize, cfg.Engine.NumBlocks)
				if err != nil {
					return engine.Config{}, err
				}
				if err := engine.WarmUp(exec, s.Model.Cfg.Vocab); err != nil {
					return engine.Config{}, err
				}
				ec.Exec, ec.Vocab = exec, s.Model.Cfg.Vocab
			}
			return ec, nil
		}}
}

// Predictive reports whether the server's policy reads predictions.
func (s *Serve) Predictive() bool { return s.pol.Predictive() }

// parseLimits reads the client bounds, fitting the connection bound
// under the process's descriptor limit (each connection holds one).
func (s *Serve) parseLimits(o Options) error {
	l := serve.Limits{ReadHeaderTimeout: duration(o, "header-timeout"), ReadTimeout: duration(o, "body-timeout"),
		WriteTimeout: duration(o, "write-timeout"), IdleTimeout: duration(o, "idle-timeout"),
		MaxRequestBytes: int64Of(o, "max-request-bytes"), MaxConns: o.Int("max-connections"), MaxConnsPerClient: o.Int("max-connections-per-client")}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"header-timeout", l.ReadHeaderTimeout}, {"body-timeout", l.ReadTimeout}, {"write-timeout", l.WriteTimeout}, {"idle-timeout", l.IdleTimeout}, {"shutdown-timeout", duration(o, "shutdown-timeout")}} {
		if d.v <= 0 {
			return Errorf("--%s %v: want a duration > 0 (say 10s)", d.name, d.v)
		}
	}
	if l.MaxRequestBytes < 1024 {
		return Errorf("--max-request-bytes %d: want at least 1024", l.MaxRequestBytes)
	}
	if l.MaxConns < 1 || l.MaxConnsPerClient < 1 {
		return Errorf("--max-connections %d, --max-connections-per-client %d: want >= 1", l.MaxConns, l.MaxConnsPerClient)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 1<<30 {
		// Room for the process's own files, the listener and the refusals.
		if room := int(rl.Cur) - 256; l.MaxConns > room && room > 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("--max-connections %d lowered to %d to fit the descriptor limit (ulimit -n %d)", l.MaxConns, room, rl.Cur))
			l.MaxConns = room
		}
	}
	s.Limits = l
	return nil
}

// duration is read through Options where it has them (a urfave/cli
// context), and as text otherwise.
func duration(o Options, name string) time.Duration {
	if d, ok := o.(interface{ Duration(string) time.Duration }); ok {
		return d.Duration(name)
	}
	d, _ := time.ParseDuration(o.String(name))
	return d
}

func int64Of(o Options, name string) int64 {
	if d, ok := o.(interface{ Int64(string) int64 }); ok {
		return d.Int64(name)
	}
	return int64(o.Int(name))
}

// servePredictor is the predictor a server uses: oracle and noisy know the
// truth because the stand-in's output lengths are forced to max_tokens. A
// mean absolute error is turned into a sigma over the embedded workload's
// output lengths, the server having no trace to fit it to.
func servePredictor(spec predictor.Spec, seed uint64) (policies.Predictor, error) {
	switch spec.Kind {
	case "recorded", "network":
		return nil, fmt.Errorf("%s predictions need a trace; serve takes oracle, noisy or constant", spec.Kind)
	}
	tr, _ := DefaultWorkload(seed)
	p, _, err := sim.PredictorFor(spec, tr, 50, seed)
	return p, err
}

// tokenCounter is what counts a text prompt's tokens: words without a
// tokenizer.
func tokenCounter(spec string) (traces.TokenCounter, error) {
	if spec == "" {
		return traces.Words{}, nil
	}
	return traces.LoadTokenCounter(spec)
}

// ServeFlags are the options of "elis-sim serve" beyond a run's (Flags):
// where it listens, what runs its steps, and the bounds on its clients.
func ServeFlags() []Flag {
	d := serve.DefaultLimits()
	return []Flag{
		{Name: "host", Default: "127.0.0.1", Usage: "address to listen on (0.0.0.0 for every interface)"},
		{Name: "port", Default: 8000, Usage: "port to listen on (0: any free port, printed)"},
		{Name: "served-model-name", Default: "", Usage: "the model name clients ask for (default: --model, or the cost file's model)"},
		{Name: "engine", Default: "sim", Usage: "what runs the steps: sim (each step lasts what the cost model says, on the wall clock; placeholder tokens), cpu or cuda (--model's forward passes, random weights for presets, as in replay)"},
		{Name: "tokenizer", Default: "", Usage: "token counter for text prompts: a Hugging Face tokenizer.json, or \"words\" (the default)", Env: []string{"ELIS_SIM_TOKENIZER"}},
		{Name: "out", Default: "", Usage: "write every request's record to this run file when the server stops", Aliases: []string{"o"}},
		{Name: "api-key", Default: "", Usage: "require this bearer token on /v1 requests, as vLLM's --api-key (/health and /metrics stay open)", Env: []string{"VLLM_API_KEY"}},
		{Name: "header-timeout", Default: time.Duration(d.ReadHeaderTimeout), Usage: "how long a connection may take to send a request's headers"},
		{Name: "body-timeout", Default: time.Duration(d.ReadTimeout), Usage: "how long a request's body may take to arrive"},
		{Name: "write-timeout", Default: time.Duration(d.WriteTimeout), Usage: "how long one write of an answer may block: a client that stops reading its stream loses it after this"},
		{Name: "idle-timeout", Default: time.Duration(d.IdleTimeout), Usage: "close a kept-alive connection idle this long"},
		{Name: "max-request-bytes", Default: int64(d.MaxRequestBytes), Usage: "largest request body (413 beyond it)"},
		{Name: "max-connections", Default: d.MaxConns, Usage: "open connections at most; more wait in the kernel's accept queue (lowered to fit the descriptor limit)"},
		{Name: "max-connections-per-client", Default: d.MaxConnsPerClient, Usage: "open connections from one client address at most; more are answered 429"},
		{Name: "shutdown-timeout", Default: time.Duration(5 * time.Minute), Usage: "on SIGTERM or Ctrl-C, how long requests in flight may take to finish before they are abandoned"},
	}
}

// RunOf is what a server served, as a run: its records and inter-token
// gaps under its policy.
func (s *Serve) RunOf(recs []policies.Record, gaps *hist.H) *report.Run {
	label := s.Label()
	return report.NewRun(label, map[string]string{"source": "serve", "policy": s.Run.Policy, "engine": s.Sim.Engine,
		"summary": fmt.Sprintf("setup: elis-sim serve, %s, policy %s", s.Sim.Engine, label)}, recs, gaps, nil, s.Sim.SLO)
}
