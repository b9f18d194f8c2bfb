package setup

import (
	"fmt"
	"math"
	"runtime"
	"strings"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/replay"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/sim"
	"github.com/elis-sim/elis-sim/traces"
)

// DeviceEngine is the engine that replay, serve and profile run on a
// device: CPU-sized limits (512-token steps, 16 sequences, 512 blocks of
// 16 tokens, the model's context) unless the options say otherwise.
func DeviceEngine(o Options, m *gpu.Model) policies.Config {
	eng := policies.Config{MaxBatchedTokens: 512, MaxSeqs: 16, BlockSize: 16, NumBlocks: 512, MaxModelLen: m.Cfg.MaxPositions, PredictionInterval: 50}
	if o.IsSet("block-size") {
		eng.BlockSize = o.Int("block-size")
	}
	EngineOptions(o, &eng)
	return eng
}

// CheckMemory refuses an engine that would not fit one worker's memory
// (device-memory-gib; on the CPU 90% of the host's available memory by
// default), naming the budget's parts and what to change.
func CheckMemory(o Options, m *gpu.Model, eng policies.Config) error {
	budget := o.Float64("device-memory-gib") * (1 << 30)
	bytesPer := 2 // bf16 on a GPU
	if o.String("device") == "cpu" {
		bytesPer = 4
		if budget == 0 {
			budget = gpu.AvailableMemory() * 0.9
		}
	}
	weights, kv, act := m.Cfg.Bytes(bytesPer, eng.BlockSize, eng.NumBlocks, eng.MaxBatchedTokens)
	if budget > 0 && weights+kv+act > budget {
		return Errorf("device out of memory: weights %.2f GiB + KV cache %.2f GiB (%d blocks of %d tokens) + activations %.2f GiB (%d-token steps) > budget %.2f GiB; lower --kv-blocks or --max-num-batched-tokens, or pick a smaller --model",
			weights/(1<<30), kv/(1<<30), eng.NumBlocks, eng.BlockSize, act/(1<<30), eng.MaxBatchedTokens, budget/(1<<30))
	}
	return nil
}

// Replay is a replay's setup, read from the options of "elis-sim replay":
// the served model and its engine, the policies to run one after another,
// the predictor and where everything executes. Config gives each run's
// replay.Config; Close releases the predictor network.
type Replay struct {
	Trace     *traces.Trace
	Desc      string // the workload, for the setup line
	Model     *gpu.Model
	ModelName string
	Device    string
	Engine    policies.Config
	Mode      policies.Rerank
	Sync      bool
	Entries   []*Policy
	Predictor predictor.Spec
	SLO       report.SLO
	Workers   int
	TimeScale float64

	o     Options
	host  *gpu.Predictor   // the predictor network (nil: none)
	front gpu.PredictorNet // with the network's outputs as predictions: where they are computed
	// Failed counts prompts the network gave no number for (predicted +Inf).
	Failed int
}

// ParseReplay reads and checks a replay's options for trace tr (desc
// describes it). Bad options come back as *Error.
func ParseReplay(o Options, tr *traces.Trace, desc string) (*Replay, error) {
	r := &Replay{Trace: tr, Desc: desc, o: o, Device: o.String("device"), TimeScale: o.Float64("time-scale")}
	if r.Device != "cpu" && r.Device != "cuda" {
		return nil, Errorf("--device %q: valid are %s", r.Device, strings.Join(gpu.Devices(), ", "))
	}
	if r.Device == "cuda" && o.Int("gpus") > gpu.GPUCount() && len(gpu.Devices()) > 1 {
		return nil, Errorf("--gpus %d: this machine has %d CUDA device(s)", o.Int("gpus"), gpu.GPUCount())
	}
	r.ModelName = o.String("model")
	if !o.IsSet("model") && r.Device == "cuda" {
		r.ModelName = "llama-3.1-8b" // a GPU replays the shape people serve
	}
	var err error
	if r.Model, err = gpu.LoadModel(r.ModelName, o.Uint64("seed")); err != nil {
		return nil, Errorf("--model: %w", err)
	}
	r.Engine = DeviceEngine(o, r.Model)
	if err := PolicyOptions(o, &r.Engine); err != nil {
		return nil, err
	}
	if err := CheckMemory(o, r.Model, r.Engine); err != nil {
		return nil, err
	}
	if pm := o.String("predictor-model"); pm != "none" {
		if r.host, err = gpu.LoadPredictorNet(pm, o.Uint64("seed")); err != nil {
			return nil, Errorf("--predictor-model: %w", err)
		}
	}
	if r.Mode, err = policies.ParseRerank(o.String("isrtf-mode")); err != nil {
		return nil, Errorf("--isrtf-mode: %w", err)
	}
	if r.Entries, err = ParsePolicies(o.String("policy")); err != nil {
		return nil, Errorf("--policy: %w", err)
	}
	if r.Sync, err = PredictorCalls(o, r.Mode, &r.Engine); err != nil {
		return nil, err
	}
	if r.Predictor, err = predictor.ParseSpec(o.String("predictor")); err != nil {
		return nil, Errorf("--predictor: %w", err)
	}
	if r.SLO, err = report.ParseSLO(o.String("slo")); err != nil {
		return nil, Errorf("--slo: %w", err)
	}
	if !(r.TimeScale > 0) || math.IsInf(r.TimeScale, 0) {
		return nil, Errorf("--time-scale %v: want a number > 0 (0.5 replays twice as fast)", r.TimeScale)
	}
	if r.Workers = o.Int("gpus") * o.Int("workers-per-gpu"); r.Workers < 1 {
		return nil, Errorf("--gpus and --workers-per-gpu: want >= 1")
	}
	if _, err := policies.NewRouter(o.String("router")); err != nil {
		return nil, Errorf("--router: %w", err)
	}
	if r.Device == "cuda" && len(gpu.Devices()) == 1 {
		_, err := gpu.NewExecutor("cuda", 0, r.Model, 1, 1) // says how to build with CUDA
		return nil, Bad(err)
	}
	if r.Predictor.Kind == "network" {
		// The network's outputs are the predictions, computed on GPU 0
		// before the run.
		if r.host == nil {
			return nil, Errorf("--predictor network needs a --predictor-model (an ELIS checkpoint .pt for meaningful values)")
		}
		if r.front, err = gpu.OnDevice(r.Device, 0, r.host); err != nil {
			return nil, Bad(err)
		}
	}
	return r, nil
}

// Close releases the network that computed predictions up front.
func (r *Replay) Close() {
	if r.front != nil {
		r.front.Close()
	}
}

// Run is one policy's replay: its config, label and description.
type Run struct {
	Config replay.Config
	Label  string
	Policy string
	Mode   policies.Rerank
	Engine policies.Config
	Sigma  float64 // a noisy predictor's, fitted to the trace
}

// Config is entry's replay: its mode and guards apply to it alone.
func (r *Replay) Config(entry *Policy) (*Run, error) {
	run := &Run{Mode: r.Mode, Engine: r.Engine}
	sync := r.Sync
	entry.Apply(Knobs{Policy: &run.Policy, Mode: &run.Mode, Engine: &run.Engine, Sync: &sync})
	run.Label = entry.Label(run.Mode)
	perGPU := r.o.Int("workers-per-gpu")
	var vals policies.Predictor
	// The network's cost is real: each worker runs it on its own GPU.
	var newNet func(int) (gpu.PredictorNet, error)
	if r.host != nil {
		newNet = func(worker int) (gpu.PredictorNet, error) { return gpu.OnDevice(r.Device, worker/perGPU, r.host) }
	}
	var err error
	if r.Predictor.Kind == "network" {
		if vals, err = r.networkPredictor(); err != nil {
			return nil, err
		}
		newNet = nil
	} else if vals, run.Sigma, err = sim.PredictorFor(r.Predictor, r.Trace, run.Engine.PredictionInterval, r.o.Uint64("seed")); err != nil {
		return nil, Bad(err)
	}
	if t, _ := policies.TraitsOf(run.Policy); t.Oracle {
		vals = predictor.Oracle{} // its predictions are the truth
	}
	eng, m := run.Engine, r.Model
	run.Config = replay.Config{Engine: eng, Policy: run.Policy, Mode: run.Mode, SyncPredictions: sync, Predictor: vals, NewNet: newNet,
		Workers: r.Workers, Router: r.o.String("router"), TimeScale: r.TimeScale, Vocab: m.Cfg.Vocab, Seed: r.o.Uint64("seed"), KeepHistory: true,
		NewExecutor: func(worker int) (gpu.Executor, error) {
			return gpu.NewExecutor(r.Device, worker/perGPU, m, eng.BlockSize, eng.NumBlocks)
		}}
	return run, nil
}

// networkPredictor makes the network's outputs on each request's prompt
// text, tokenized with the tokenizer option, the predictions.
func (r *Replay) networkPredictor() (policies.Predictor, error) {
	tok, err := HFTokenizer(r.o.String("tokenizer"), "--predictor network needs --tokenizer (the network's tokenizer.json, e.g. the bge one)")
	if err != nil {
		return nil, err
	}
	inputs := make([][]int32, len(r.Trace.Requests))
	for i, q := range r.Trace.Requests {
		if q.Prompt == "" {
			return nil, Errorf("--predictor network: request %s has no prompt text (import a trace that carries it, such as apex or sharegpt)", q.ID)
		}
		ids, err := tok.Encode(q.Prompt, true)
		if err != nil {
			return nil, Bad(fmt.Errorf("request %s: %w", q.ID, err))
		}
		for _, id := range ids {
			inputs[i] = append(inputs[i], int32(id))
		}
	}
	np, err := replay.NewNetworkPredictor(r.front, inputs, 32)
	if err != nil {
		return nil, err
	}
	r.Failed = np.Failed
	return np, nil
}

// HFTokenizer loads a tokenizer.json (the predictor network's); missing
// says what to do when path is empty.
func HFTokenizer(path, missing string) (traces.HFTokenizer, error) {
	if path == "" {
		return traces.HFTokenizer{}, Errorf("%s", missing)
	}
	tc, err := traces.LoadTokenCounter(path)
	if err != nil {
		return traces.HFTokenizer{}, Errorf("--tokenizer: %w", err)
	}
	tok, ok := tc.(traces.HFTokenizer)
	if !ok {
		return traces.HFTokenizer{}, Errorf("--tokenizer: want a tokenizer.json, not %q", path)
	}
	return tok, nil
}

// RunSetup is the setup a run file records for run: the workload, engine,
// predictor and limits, and the one-line summary tables print.
func (r *Replay) RunSetup(run *Run, res *replay.Result) map[string]string {
	predDesc := r.Predictor.String()
	if run.Sigma > 0 {
		predDesc += fmt.Sprintf(" (sigma %.3f)", run.Sigma)
	}
	engine := fmt.Sprintf("%s on %s", r.ModelName, r.Device)
	if r.Device == "cpu" && r.Workers > 1 {
		engine += fmt.Sprintf(" (%d workers sharing %d cores)", r.Workers, runtime.NumCPU())
	}
	eng, o := run.Engine, r.o
	summary := fmt.Sprintf("setup: %s | replay: %s, %d worker(s), max %d seqs, %d-token budget, %d KV blocks | predictor %s (network %s), K=%d, ISRTF mode %s, time scale %g",
		r.Desc, engine, r.Workers, eng.MaxSeqs, eng.MaxBatchedTokens, eng.NumBlocks, predDesc, o.String("predictor-model"), eng.PredictionInterval, run.Mode, r.TimeScale)
	s := map[string]string{"source": "replay", "summary": summary, "policy": run.Policy, "workload": r.Desc, "engine": engine,
		"predictor": predDesc, "isrtf_mode": run.Mode.String(), "workers": fmt.Sprint(r.Workers), "router": o.String("router"),
		"max_num_seqs": fmt.Sprint(eng.MaxSeqs), "max_num_batched_tokens": fmt.Sprint(eng.MaxBatchedTokens),
		"kv_blocks": fmt.Sprint(eng.NumBlocks), "prediction_interval": fmt.Sprint(eng.PredictionInterval),
		"time_scale": fmt.Sprint(r.TimeScale), "seed": fmt.Sprint(o.Uint64("seed"))}
	if res.Interrupted {
		s["interrupted"] = fmt.Sprintf("%d of %d requests arrived, %d completed", res.Arrived, len(r.Trace.Requests), len(res.Records))
	}
	return s
}

// DeviceFlags select the served model, the executor and the predictor
// network (replay, profile).
func DeviceFlags() []Flag {
	return []Flag{
		{Name: "model", Default: "tiny", Usage: "served model: a preset (random weights; " + strings.Join(gpu.PresetNames(), ", ") + ") or a Hugging Face model folder", Env: []string{"ELIS_SIM_MODEL"}},
		{Name: "device", Default: "cpu", Usage: "executor: " + strings.Join(gpu.Devices(), ", ")},
		{Name: "predictor-model", Default: "tiny", Usage: "predictor network run at prediction points: tiny, bge-base, an ELIS checkpoint .pt, or none"},
		{Name: "device-memory-gib", Default: 0.0, Usage: "memory budget of one worker (0: 90% of the machine's available memory on cpu)"},
	}
}

// ReplayFlags are the options of "elis-sim replay" beyond a run's and the
// device's: how many devices and workers, the time scale, the network's
// tokenizer.
func ReplayFlags() []Flag {
	return []Flag{
		{Name: "gpus", Default: 1, Usage: "devices: one worker each"},
		{Name: "workers-per-gpu", Default: 1, Usage: "workers placed on each device (for testing)"},
		{Name: "time-scale", Default: float64(1), Usage: "multiply arrival times (0.5 replays twice as fast)"},
		{Name: "tokenizer", Default: "", Usage: "the predictor network's tokenizer.json, for --predictor network", Env: []string{"ELIS_SIM_TOKENIZER"}},
	}
}
