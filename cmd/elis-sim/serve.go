package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"

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

func serveCommand() *cli.Command {
	flags := append(simFlags(),
		&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to listen on (0.0.0.0 for every interface)"},
		&cli.IntFlag{Name: "port", Value: 8000, Usage: "port to listen on (0: any free port, printed)"},
		&cli.StringFlag{Name: "served-model-name", Usage: "the model name clients ask for (default: --model, or the cost file's model)"},
		&cli.StringFlag{Name: "engine", Value: "sim", Usage: "what runs the steps: sim (each step lasts what the cost model says, on the wall clock; placeholder tokens), cpu or cuda (--model's forward passes, random weights for presets, as in replay)"},
		&cli.StringFlag{Name: "tokenizer", Usage: "token counter for text prompts: a Hugging Face tokenizer.json, or \"words\" (the default)", EnvVars: []string{"ELIS_SIM_TOKENIZER"}},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write every request's record to this run file when the server stops"},
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
			"SIGTERM or Ctrl-C stops accepting requests, finishes those in flight, writes --out, exits 0.",
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
	setup, err := parseSimSetup(c, false)
	if err != nil {
		return err
	}
	if len(setup.policies) != 1 {
		return badf("--policy %q: serve runs one policy; start one server per policy", c.String("policy"))
	}
	cfg := setup.configFor(setup.base, setup.policies[0])
	pol, err := policies.New(cfg.Policy, cfg.Mode)
	if err != nil {
		return badf("--policy: %w", err)
	}
	var pred policies.Predictor
	if sim.ReadsPredictor(cfg) {
		if pred, err = servePredictor(cfg.Predictor, cfg.Seed); err != nil {
			return badf("--predictor: %w", err)
		}
		if pol.Predictive() {
			pred = serve.LogPredictions(pred, os.Stderr)
		}
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
	vocab := 0
	if device != "sim" {
		if m, err = gpu.LoadModel(c.String("model"), cfg.Seed); err != nil {
			ln.Close()
			return badf("--model: %w", err)
		}
		cfg.Engine = replayEngine(c, m)
		cfg.Engine.PrefixCaching = !c.Bool("no-enable-prefix-caching")
		if err := applyPolicyFlags(c, &cfg.Engine); err != nil {
			ln.Close()
			return err
		}
		setup.engine = fmt.Sprintf("%s on %s", c.String("model"), device)
		vocab = m.Cfg.Vocab
	}
	var mu sync.Mutex
	var recs []policies.Record
	var gaps hist.H
	srv, err := serve.New(serve.Config{
		Model: name, MaxModelLen: cfg.Engine.MaxModelLen, Workers: cfg.Workers, Router: cfg.Router,
		Tokens: counter.CountTokens, Vocab: vocab,
		NewWorker: func(i int) (engine.Config, error) {
			core, err := policies.NewScheduler(cfg.Engine, pol, pred)
			if err != nil {
				return engine.Config{}, err
			}
			core.KeepHistory = pol.Predictive()
			core.OnGap = func(g float64, n int) { mu.Lock(); gaps.AddN(g, uint64(n)); mu.Unlock() }
			ec := engine.Config{Core: core, Coster: cfg.Cost, PredCost: cfg.PredCost, SyncPredictions: cfg.SyncPredictions, Seed: cfg.Seed}
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
	hs := &http.Server{Handler: srv}
	fmt.Fprintf(os.Stderr, "elis-sim serve: %s | policy %s | model %q on http://%s (engine %s)\n", setup.engine, setup.label(cfg.Policy), name, ln.Addr(), device)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "elis-sim serve: draining requests in flight")
		hs.Shutdown(context.Background())
	}()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if err := srv.Close(); err != nil {
		return err
	}
	if out := c.String("out"); out != "" {
		run := makeRun(setup.label(cfg.Policy), map[string]string{"source": "serve", "policy": cfg.Policy, "engine": setup.engine,
			"summary": fmt.Sprintf("setup: elis-sim serve, %s, policy %s", setup.engine, setup.label(cfg.Policy))}, recs, &gaps, nil, setup.slo)
		return report.WriteRun(out, run)
	}
	return nil
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
	tr, _ := defaultWorkload(seed)
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
