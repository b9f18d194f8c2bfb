package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/replay"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

// flagsExcept drops the named flags from a list shared with another command.
func flagsExcept(flags []cli.Flag, names ...string) []cli.Flag {
	var out []cli.Flag
	for _, f := range flags {
		keep := true
		for _, n := range names {
			if f.Names()[0] == n {
				keep = false
			}
		}
		if keep {
			out = append(out, f)
		}
	}
	return out
}

// deviceFlags select the model and the executor (replay and profile).
func deviceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Value: "tiny", Usage: "served model: a preset (random weights; " + presetNames() + ") or a Hugging Face model folder", EnvVars: []string{"ELIS_SIM_MODEL"}},
		&cli.StringFlag{Name: "device", Value: "cpu", Usage: "executor: " + strings.Join(gpu.Devices(), ", ")},
		&cli.StringFlag{Name: "predictor-model", Value: "tiny", Usage: "predictor network run at prediction points: tiny, bge-base, an ELIS checkpoint .pt, or none"},
		&cli.Float64Flag{Name: "device-memory-gib", Usage: "memory budget of one worker (0: 90% of the machine's available memory on cpu)"},
	}
}

func presetNames() string { return strings.Join(gpu.PresetNames(), ", ") }

func replayCommand() *cli.Command {
	flags := flagsExcept(runFlags(), "model", "gpu", "tp", "cost-model", "workers", "gpu-memory-utilization", "predictor-cost-ms", "check", "log-predictions")
	flags = append(flags, deviceFlags()...)
	flags = append(flags,
		&cli.IntFlag{Name: "gpus", Value: 1, Usage: "devices: one worker each"},
		&cli.IntFlag{Name: "workers-per-gpu", Value: 1, Usage: "workers placed on each device (for testing)"},
		&cli.Float64Flag{Name: "time-scale", Value: 1, Usage: "multiply arrival times (0.5 replays twice as fast)"},
		&cli.StringFlag{Name: "tokenizer", Usage: "the predictor network's tokenizer.json, for --predictor network", EnvVars: []string{"ELIS_SIM_TOKENIZER"}},
	)
	return usageErrors(&cli.Command{
		Name:      "replay",
		Usage:     "run a trace for real: the scheduler core driving model forward passes on a device",
		ArgsUsage: "[TRACE]",
		Description: "Without TRACE replays an embedded ELIS-like workload: a short one on the CPU, the run\n" +
			"workload on llama-3.1-8b with --device cuda. Replays TRACE on the wall clock with the same scheduler core and policies as run, executing\n" +
			"every step with the served model (random weights for presets) and running the predictor network\n" +
			"at every prediction point. Output lengths are forced to the trace's. Records have run's format,\n" +
			"so compare and plot take them. Ctrl-C stops arrivals and finishes what is in flight; a second\n" +
			"Ctrl-C abandons it; either way what completed is written.",
		UsageText: "elis-sim replay trace.json --device cpu --model tiny --policy fcfs,isrtf --out replay/",
		Flags:     flags,
		Action:    replayAction,
	})
}

// replayEngine is the engine a replay or profile runs: CPU-sized defaults
// unless flags say otherwise.
func replayEngine(c *cli.Context, m *gpu.Model) policies.Config {
	eng := policies.Config{MaxBatchedTokens: 512, MaxSeqs: 16, BlockSize: 16, NumBlocks: 512, MaxModelLen: m.Cfg.MaxPositions, PredictionInterval: 50}
	if c.IsSet("block-size") {
		eng.BlockSize = c.Int("block-size")
	}
	setup.EngineOptions(c, &eng)
	return eng
}

// checkMemory refuses a setup that would not fit the device, naming the
// budget's parts and what to change.
func checkMemory(c *cli.Context, m *gpu.Model, eng policies.Config) error {
	budget := c.Float64("device-memory-gib") * (1 << 30)
	bytesPer := 2 // bf16 on a GPU
	if c.String("device") == "cpu" {
		bytesPer = 4
		if budget == 0 {
			budget = availableMemory() * 0.9
		}
	}
	weights, kv, act := m.Cfg.Bytes(bytesPer, eng.BlockSize, eng.NumBlocks, eng.MaxBatchedTokens)
	if budget > 0 && weights+kv+act > budget {
		return badf("device out of memory: weights %.2f GiB + KV cache %.2f GiB (%d blocks of %d tokens) + activations %.2f GiB (%d-token steps) > budget %.2f GiB; lower --kv-blocks or --max-num-batched-tokens, or pick a smaller --model",
			weights/(1<<30), kv/(1<<30), eng.NumBlocks, eng.BlockSize, act/(1<<30), eng.MaxBatchedTokens, budget/(1<<30))
	}
	return nil
}

func replayAction(c *cli.Context) error {
	if c.NArg() > 1 {
		return badf("replay wants at most one TRACE, got %d arguments", c.NArg())
	}
	if err := checkRunOutputs(c); err != nil {
		return err
	}
	device := c.String("device")
	if device == "cuda" && c.Int("gpus") > gpu.GPUCount() && len(gpu.Devices()) > 1 {
		return badf("--gpus %d: this machine has %d CUDA device(s)", c.Int("gpus"), gpu.GPUCount())
	}
	var tr *traces.Trace
	var desc string
	if c.NArg() == 1 {
		var err error
		if tr, desc, err = loadTrace(c); err != nil {
			return err
		}
	} else {
		tr, desc = setup.DefaultReplayWorkload(device, c.Uint64("seed"))
	}
	model := c.String("model")
	if !c.IsSet("model") && device == "cuda" {
		model = "llama-3.1-8b" // a GPU replays the shape people serve
	}
	m, err := gpu.LoadModel(model, c.Uint64("seed"))
	if err != nil {
		return badf("--model: %w", err)
	}
	eng := replayEngine(c, m)
	if err := setup.PolicyOptions(c, &eng); err != nil {
		return err
	}
	if err := checkMemory(c, m, eng); err != nil {
		return err
	}
	var host *gpu.Predictor
	if pm := c.String("predictor-model"); pm != "none" {
		if host, err = gpu.LoadPredictorNet(pm, c.Uint64("seed")); err != nil {
			return badf("--predictor-model: %w", err)
		}
	}
	mode, err := policies.ParseRerank(c.String("isrtf-mode"))
	if err != nil {
		return badf("--isrtf-mode: %w", err)
	}
	entries, err := setup.ParsePolicies(c.String("policy"))
	if err != nil {
		return badf("--policy: %w", err)
	}
	sync, err := setup.PredictorCalls(c, mode, &eng)
	if err != nil {
		return err
	}
	spec, err := predictor.ParseSpec(c.String("predictor"))
	if err != nil {
		return badf("--predictor: %w", err)
	}
	slo, err := report.ParseSLO(c.String("slo"))
	if err != nil {
		return badf("--slo: %w", err)
	}
	// With --predictor network the network's outputs are the predictions,
	// computed on GPU 0 as requests arrive.
	var frontNet gpu.PredictorNet
	if spec.Kind == "network" && host != nil {
		if frontNet, err = gpu.OnDevice(c.String("device"), 0, host); err != nil {
			return bad(err)
		}
		defer frontNet.Close()
	}
	if ts := c.Float64("time-scale"); !(ts > 0) || math.IsInf(ts, 0) {
		return badf("--time-scale %v: want a number > 0 (0.5 replays twice as fast)", ts)
	}
	workers := c.Int("gpus") * c.Int("workers-per-gpu")
	if workers < 1 {
		return badf("--gpus and --workers-per-gpu: want >= 1")
	}
	if _, err := policies.NewRouter(c.String("router")); err != nil {
		return badf("--router: %w", err)
	}
	if c.String("device") != "cpu" && c.String("device") != "cuda" {
		return badf("--device %q: valid are %s", c.String("device"), strings.Join(gpu.Devices(), ", "))
	}
	if c.String("device") == "cuda" && len(gpu.Devices()) == 1 {
		_, err := gpu.NewExecutor("cuda", 0, m, 1, 1)
		return bad(err)
	}
	perGPU := c.Int("workers-per-gpu")
	stop, abandon, done := interrupts("elis-sim: stopping arrivals; Ctrl-C again to abandon requests in flight")
	defer done()

	var runs []*report.Run
	for _, entry := range entries {
		// The entry's mode and guards apply to its run alone.
		pol, mode, eng, sync := "", mode, eng, sync
		entry.Apply(setup.Knobs{Policy: &pol, Mode: &mode, Engine: &eng, Sync: &sync})
		var vals policies.Predictor
		var sigma float64
		// The network's cost is real: each worker runs it on its own GPU.
		var newNet func(int) (gpu.PredictorNet, error)
		if host != nil {
			newNet = func(worker int) (gpu.PredictorNet, error) {
				return gpu.OnDevice(c.String("device"), worker/perGPU, host)
			}
		}
		if spec.Kind == "network" {
			// Its outputs are the predictions, computed up front on GPU 0.
			if vals, err = networkPredictor(c, frontNet, tr); err != nil {
				return err
			}
			newNet = nil
		} else if vals, sigma, err = sim.PredictorFor(spec, tr, eng.PredictionInterval, c.Uint64("seed")); err != nil {
			return bad(err)
		}
		if t, _ := policies.TraitsOf(pol); t.Oracle {
			vals = predictor.Oracle{} // its predictions are the truth
		}
		cfg := replay.Config{Engine: eng, Policy: pol, Mode: mode, SyncPredictions: sync, Predictor: vals, NewNet: newNet, Workers: workers,
			Router: c.String("router"), TimeScale: c.Float64("time-scale"), Vocab: m.Cfg.Vocab, Seed: c.Uint64("seed"), KeepHistory: true,
			NewExecutor: func(worker int) (gpu.Executor, error) {
				return gpu.NewExecutor(c.String("device"), worker/perGPU, m, eng.BlockSize, eng.NumBlocks)
			}}
		cfg.Stop = stop.Done()
		// A replay runs in real time: say which policy is under way.
		fmt.Fprintf(os.Stderr, "elis-sim replay: %s: %d requests\n", entry.Label(mode), len(tr.Requests))
		res, err := replay.Run(abandon, tr, cfg)
		if err != nil {
			return err
		}
		predDesc := spec.String()
		if sigma > 0 {
			predDesc += fmt.Sprintf(" (sigma %.3f)", sigma)
		}
		engine := fmt.Sprintf("%s on %s", model, device)
		if device == "cpu" && workers > 1 {
			engine += fmt.Sprintf(" (%d workers sharing %d cores)", workers, runtime.NumCPU())
		}
		summary := fmt.Sprintf("setup: %s | replay: %s, %d worker(s), max %d seqs, %d-token budget, %d KV blocks | predictor %s (network %s), K=%d, ISRTF mode %s, time scale %g",
			desc, engine, workers, eng.MaxSeqs, eng.MaxBatchedTokens, eng.NumBlocks, predDesc, c.String("predictor-model"), eng.PredictionInterval, mode, c.Float64("time-scale"))
		label := entry.Label(mode)
		setup := map[string]string{"source": "replay", "summary": summary, "policy": pol, "workload": desc, "engine": engine,
			"predictor": predDesc, "isrtf_mode": mode.String(), "workers": fmt.Sprint(workers), "router": c.String("router"),
			"max_num_seqs": fmt.Sprint(eng.MaxSeqs), "max_num_batched_tokens": fmt.Sprint(eng.MaxBatchedTokens),
			"kv_blocks": fmt.Sprint(eng.NumBlocks), "prediction_interval": fmt.Sprint(eng.PredictionInterval),
			"time_scale": fmt.Sprint(c.Float64("time-scale")), "seed": fmt.Sprint(c.Uint64("seed"))}
		if res.Interrupted {
			setup["interrupted"] = fmt.Sprintf("%d of %d requests arrived, %d completed", res.Arrived, len(tr.Requests), len(res.Records))
		}
		runs = append(runs, report.NewRun(label, setup, res.Records, &res.Gaps, &res.Stats.Errors, slo))
		if res.Interrupted {
			break
		}
	}
	return emitRuns(c, runs, false)
}

// networkPredictor builds --predictor network: the predictor network's
// outputs on each request's prompt text, tokenized with --tokenizer.
func networkPredictor(c *cli.Context, net gpu.PredictorNet, tr *traces.Trace) (policies.Predictor, error) {
	if net == nil {
		return nil, badf("--predictor network needs a --predictor-model (an ELIS checkpoint .pt for meaningful values)")
	}
	if c.String("tokenizer") == "" {
		return nil, badf("--predictor network needs --tokenizer (the network's tokenizer.json, e.g. the bge one)")
	}
	tc, err := traces.LoadTokenCounter(c.String("tokenizer"))
	if err != nil {
		return nil, badf("--tokenizer: %w", err)
	}
	tok, ok := tc.(traces.HFTokenizer)
	if !ok {
		return nil, badf("--tokenizer: want a tokenizer.json, not %q", c.String("tokenizer"))
	}
	inputs := make([][]int32, len(tr.Requests))
	for i, r := range tr.Requests {
		if r.Prompt == "" {
			return nil, badf("--predictor network: request %s has no prompt text (import a trace that carries it, such as apex or sharegpt)", r.ID)
		}
		ids, err := tok.Encode(r.Prompt, true)
		if err != nil {
			return nil, bad(fmt.Errorf("request %s: %w", r.ID, err))
		}
		for _, id := range ids {
			inputs[i] = append(inputs[i], int32(id))
		}
	}
	np, err := replay.NewNetworkPredictor(net, inputs, 32)
	if err != nil {
		return nil, err
	}
	if np.Failed > 0 {
		fmt.Fprintf(os.Stderr, "elis-sim: the predictor network gave no number for %d of %d prompts; those requests are predicted +Inf (FCFS-like)\n", np.Failed, len(inputs))
	}
	return np, nil
}
