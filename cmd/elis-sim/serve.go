package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/engine"
	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/hist"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/serve"
	"github.com/elis-sim/elis-sim/setup"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

func serveCommand() *cli.Command {
	d := serve.DefaultLimits()
	flags := append(policyFlag(simFlags(), "fcfs", "the one policy the server runs: "+strings.Join(policies.Names(), ", ")+"; NAME[/MODE][+GUARD...] with guards "+setup.GuardHelp+" (isrtf/patch+lazy)"),
		&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to listen on (0.0.0.0 for every interface)"},
		&cli.IntFlag{Name: "port", Value: 8000, Usage: "port to listen on (0: any free port, printed)"},
		&cli.StringFlag{Name: "served-model-name", Usage: "the model name clients ask for (default: --model, or the cost file's model)"},
		&cli.StringFlag{Name: "engine", Value: "sim", Usage: "what runs the steps: sim (each step lasts what the cost model says, on the wall clock; placeholder tokens), cpu or cuda (--model's forward passes, random weights for presets, as in replay)"},
		&cli.StringFlag{Name: "tokenizer", Usage: "token counter for text prompts: a Hugging Face tokenizer.json, or \"words\" (the default)", EnvVars: []string{"ELIS_SIM_TOKENIZER"}},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write every request's record to this run file when the server stops"},
		&cli.StringFlag{Name: "api-key", Usage: "require this bearer token on /v1 requests, as vLLM's --api-key (/health and /metrics stay open)", EnvVars: []string{"VLLM_API_KEY"}},
		&cli.DurationFlag{Name: "header-timeout", Value: d.ReadHeaderTimeout, Usage: "how long a connection may take to send a request's headers"},
		&cli.DurationFlag{Name: "body-timeout", Value: d.ReadTimeout, Usage: "how long a request's body may take to arrive"},
		&cli.DurationFlag{Name: "write-timeout", Value: d.WriteTimeout, Usage: "how long one write of an answer may block: a client that stops reading its stream loses it after this"},
		&cli.DurationFlag{Name: "idle-timeout", Value: d.IdleTimeout, Usage: "close a kept-alive connection idle this long"},
		&cli.Int64Flag{Name: "max-request-bytes", Value: d.MaxRequestBytes, Usage: "largest request body (413 beyond it)"},
		&cli.IntFlag{Name: "max-connections", Value: d.MaxConns, Usage: "open connections at most; more wait in the kernel's accept queue (lowered to fit the descriptor limit)"},
		&cli.IntFlag{Name: "max-connections-per-client", Value: d.MaxConnsPerClient, Usage: "open connections from one client address at most; more are answered 429"},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: 5 * time.Minute, Usage: "on SIGTERM or Ctrl-C, how long requests in flight may take to finish before they are abandoned"},
	)
	return usageErrors(&cli.Command{
		Name:  "serve",
		Usage: "an OpenAI-compatible server whose steps come from the scheduler core",
		Description: "Serves /v1/completions and /v1/chat/completions (streaming or not; max_tokens, min_tokens,\n" +
			"ignore_eos, priority, token-id prompts), /v1/models, /health and /metrics (vLLM's metric names), with\n" +
			"one --policy of the core. With --engine sim each step lasts, on the wall clock, what the cost model\n" +
			"(--model/--gpu/--tp or --cost-model, as in run) prices it at, and tokens are placeholders: a GPU-free\n" +
			"stand-in for vLLM to test clients, routers and bench against. Output lengths are max_tokens (the\n" +
			"stand-in never stops early). Predictive policies log the ISRTF fork's [ELIS] lines on stderr.\n" +
			"Errors are vLLM's object, {\"error\": {\"message\", \"type\", \"param\", \"code\"}}. Clients are bounded: header, body,\n" +
			"write and idle timeouts, a body limit, connections in all and per client address.\n" +
			"SIGTERM or Ctrl-C stops admitting requests (503), finishes those in flight (at most\n" +
			"--shutdown-timeout), stops the engines, writes --out, exits 0; a second signal abandons what is left.",
		UsageText: "elis-sim serve --policy isrtf --model llama-3.1-8b --gpu h100 --port 8000",
		Flags:     flags,
		Action:    serveAction,
	})
}

func serveAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return badf("serve takes no arguments, got %q", c.Args().First())
	}
	if err := checkOut(c, "out"); err != nil {
		return err
	}
	device := c.String("engine")
	if device != "sim" && !slices.Contains(gpu.Devices(), device) {
		return badf("--engine %q: valid are sim, %s", device, strings.Join(gpu.Devices(), ", "))
	}
	limits, err := serveLimits(c)
	if err != nil {
		return err
	}
	su, err := setup.ParseSim(c, false)
	if err != nil {
		return err
	}
	if len(su.Policies) != 1 {
		return badf("--policy %q: serve runs one policy; start one server per policy", c.String("policy"))
	}
	entry := su.Policies[0]
	cfg := su.ConfigFor(su.Base, entry)
	pol, err := policies.New(cfg.Policy, cfg.Mode)
	if err != nil {
		return badf("--policy: %w", err)
	}
	var pred policies.Predictor
	if sim.ReadsPredictor(cfg) {
		if pred, err = servePredictor(cfg.Predictor, cfg.Seed); err != nil {
			return badf("--predictor: %w", err)
		}
	}
	var predLog io.Writer
	if pol.Predictive() {
		predLog = os.Stderr // the fork's [ELIS] lines, which bench --server-log reads
	}
	counter, err := tokenCounter(c.String("tokenizer"))
	if err != nil {
		return bad(fmt.Errorf("--tokenizer: %w", err))
	}
	name := c.String("served-model-name")
	if name == "" {
		name = c.String("model")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(c.String("host"), fmt.Sprint(c.Int("port"))))
	if err != nil {
		return badf("--host/--port: %v", err)
	}

	// A device engine runs the model's forward passes: CPU-sized limits
	// unless flags say otherwise, as in replay.
	var m *gpu.Model
	vocab := 0 // the model's, where it is known: ids beyond it are refused
	if r, ok := cfg.Cost.(*cost.Roofline); ok {
		vocab = r.Arch.Vocab
	}
	if device != "sim" {
		if m, err = gpu.LoadModel(c.String("model"), cfg.Seed); err != nil {
			ln.Close()
			return badf("--model: %w", err)
		}
		cfg.Engine = replayEngine(c, m)
		cfg.Engine.PrefixCaching = !c.Bool("no-enable-prefix-caching")
		if err := setup.PolicyOptions(c, &cfg.Engine); err != nil {
			ln.Close()
			return err
		}
		entry.Apply(setup.Knobs{Policy: &cfg.Policy, Mode: &cfg.Mode, Engine: &cfg.Engine, Sync: &cfg.SyncPredictions})
		su.Engine = fmt.Sprintf("%s on %s", c.String("model"), device)
		vocab = m.Cfg.Vocab
	}
	var mu sync.Mutex
	var recs []policies.Record
	var gaps hist.H
	srv, err := serve.New(serve.Config{
		Model: name, MaxModelLen: cfg.Engine.MaxModelLen, Workers: cfg.Workers, Router: cfg.Router, Predictor: pred, PredictionLog: predLog,
		Tokens: counter.CountTokens, Vocab: vocab, APIKey: c.String("api-key"), Limits: limits,
		NewWorker: func(i int) (engine.Config, error) {
			core, err := policies.NewScheduler(cfg.Engine, pol)
			if err != nil {
				return engine.Config{}, err
			}
			core.KeepHistory = pol.Predictive()
			core.OnGap = func(g float64, n int) { mu.Lock(); gaps.AddN(g, uint64(n)); mu.Unlock() }
			ec := engine.Config{Core: core, Coster: cfg.Cost, PredCost: cfg.PredCost, SyncPredictions: cfg.SyncPredictions, Seed: cfg.Seed, Predictor: pred}
			if m != nil {
				exec, err := gpu.NewExecutor(device, i, m, cfg.Engine.BlockSize, cfg.Engine.NumBlocks)
				if err != nil {
					return engine.Config{}, err
				}
				if err := engine.WarmUp(exec, m.Cfg.Vocab); err != nil {
					return engine.Config{}, err
				}
				ec.Exec, ec.Vocab = exec, m.Cfg.Vocab
			}
			return ec, nil
		},
		Records: func(r policies.Record) { mu.Lock(); recs = append(recs, r); mu.Unlock() },
	})
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(os.Stderr, "elis-sim serve: %s | policy %s | model %q on http://%s (engine %s)\n", su.Engine, su.Label(entry), name, ln.Addr(), device)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case err := <-served: // the listener failed: nothing to drain
		srv.Close()
		return err
	case <-sigs:
	}
	fmt.Fprintln(os.Stderr, "elis-sim serve: draining requests in flight (a second signal abandons them)")
	ctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	err = srv.Shutdown(ctx)
	<-served
	if err != nil {
		fmt.Fprintf(os.Stderr, "elis-sim serve: %v\n", err)
	}
	if out := c.String("out"); out != "" {
		mu.Lock()
		defer mu.Unlock()
		run := report.NewRun(su.Label(entry), map[string]string{"source": "serve", "policy": cfg.Policy, "engine": su.Engine,
			"summary": fmt.Sprintf("setup: elis-sim serve, %s, policy %s", su.Engine, su.Label(entry))}, recs, &gaps, nil, su.SLO)
		if werr := report.WriteRun(out, run); werr != nil {
			return werr
		}
	}
	return err
}

// serveLimits reads the client bounds, fitting the connection bound
// under the process's descriptor limit (each connection holds one).
func serveLimits(c *cli.Context) (serve.Limits, error) {
	l := serve.Limits{ReadHeaderTimeout: c.Duration("header-timeout"), ReadTimeout: c.Duration("body-timeout"),
		WriteTimeout: c.Duration("write-timeout"), IdleTimeout: c.Duration("idle-timeout"),
		MaxRequestBytes: c.Int64("max-request-bytes"), MaxConns: c.Int("max-connections"), MaxConnsPerClient: c.Int("max-connections-per-client")}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"header-timeout", l.ReadHeaderTimeout}, {"body-timeout", l.ReadTimeout}, {"write-timeout", l.WriteTimeout}, {"idle-timeout", l.IdleTimeout}, {"shutdown-timeout", c.Duration("shutdown-timeout")}} {
		if d.v <= 0 {
			return l, badf("--%s %v: want a duration > 0 (say 10s)", d.name, d.v)
		}
	}
	if l.MaxRequestBytes < 1024 {
		return l, badf("--max-request-bytes %d: want at least 1024", l.MaxRequestBytes)
	}
	if l.MaxConns < 1 || l.MaxConnsPerClient < 1 {
		return l, badf("--max-connections %d, --max-connections-per-client %d: want >= 1", l.MaxConns, l.MaxConnsPerClient)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 1<<30 {
		// Room for the process's own files, the listener and the refusals.
		if room := int(rl.Cur) - 256; l.MaxConns > room && room > 0 {
			fmt.Fprintf(os.Stderr, "elis-sim serve: --max-connections %d lowered to %d to fit the descriptor limit (ulimit -n %d)\n", l.MaxConns, room, rl.Cur)
			l.MaxConns = room
		}
	}
	return l, nil
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
	tr, _ := setup.DefaultWorkload(seed)
	p, _, err := sim.PredictorFor(spec, tr, 50, seed)
	return p, err
}

// tokenCounter is what counts a text prompt's tokens.
func tokenCounter(spec string) (traces.TokenCounter, error) {
	if spec == "" {
		return traces.Words{}, nil
	}
	return traces.LoadTokenCounter(spec)
}
