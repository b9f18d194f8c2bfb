package setup

import (
	"fmt"
	"math"
	"strings"

	"github.com/elis-sim/elis-sim/traces"
)

// ParseGen reads the options of "elis-sim trace gen": a synthetic trace's
// size, arrivals, lengths (or a trace to resample them from) and shared
// prefixes.
func ParseGen(o Options) (traces.GenConfig, error) {
	var cfg traces.GenConfig
	arr, err := traces.ParseArrivals(o.String("arrivals"))
	if err != nil {
		return cfg, Errorf("--arrivals: %w", err)
	}
	cfg = traces.GenConfig{N: o.Int("n"), Seed: o.Uint64("seed"), Arrivals: arr,
		RateMultiplier: o.Float64("rate-multiplier"), Name: o.String("name")}
	if cfg.RateMultiplier <= 0 {
		return cfg, Errorf("--rate-multiplier %v: want a number > 0", cfg.RateMultiplier)
	}
	if cfg.Shared, err = traces.ParseSharedPrefix(o.String("shared-prefix")); err != nil {
		return cfg, Errorf("--shared-prefix: %w", err)
	}
	if from := o.String("lengths-from"); from != "" {
		src, err := traces.ReadFile(from)
		if err != nil {
			return cfg, Bad(fmt.Errorf("--lengths-from: %w", err))
		}
		if len(src.Requests) == 0 {
			return cfg, Errorf("--lengths-from %s: trace has no requests", from)
		}
		cfg.Resample = src.Requests
	} else {
		if cfg.Prompt, err = traces.ParseLengths(o.String("prompt")); err != nil {
			return cfg, Errorf("--prompt: %w", err)
		}
		if cfg.Output, err = traces.ParseLengths(o.String("output")); err != nil {
			return cfg, Errorf("--output: %w", err)
		}
	}
	return cfg, nil
}

// ParseImport reads the options of "elis-sim trace import": how a public
// trace's requests are timed, measured and windowed.
func ParseImport(o Options) (traces.ImportOptions, error) {
	opt := traces.ImportOptions{Rate: o.Float64("rate"), Seed: o.Uint64("seed"),
		OutputTokens: o.Int("output-tokens"), KeepText: !o.Bool("drop-text"), MultiTurn: o.Bool("multi-turn"), HashBlock: o.Int("hash-block")}
	if opt.HashBlock < 0 {
		return opt, Errorf("--hash-block %d: want tokens per hash id >= 1 (0: the trace's)", opt.HashBlock)
	}
	if spec := o.String("tokenizer"); spec != "" {
		tc, err := traces.LoadTokenCounter(spec)
		if err != nil {
			return opt, Errorf("--tokenizer: %w", err)
		}
		opt.Tokens = tc
	}
	if ts := o.Float64("time-scale"); !(ts > 0) || math.IsInf(ts, 0) {
		return opt, Errorf("--time-scale %v: want a number > 0", ts)
	}
	if r := o.Float64("rate"); !(r >= 0) || math.IsInf(r, 0) {
		return opt, Errorf("--rate %v: want a Poisson rate > 0 in requests/s, or 0 for all at time 0", r)
	}
	from, to := o.Float64("from"), o.Float64("to")
	if !(from >= 0) || !(to >= 0) || (to > 0 && to <= from) {
		return opt, Errorf("--from %v --to %v: want 0 <= from < to (to 0: no end)", from, to)
	}
	if o.Int("max") < 0 {
		return opt, Errorf("--max %d: want >= 0 (0: all)", o.Int("max"))
	}
	return opt, nil
}

// ImportFlags are the options of "elis-sim trace import" (ParseImport
// reads them).
func ImportFlags() []Flag {
	return []Flag{
		{Name: "format", Default: "", Usage: "input format: " + strings.Join(traces.Formats(), ", "), Aliases: []string{"f"}, Required: true},
		{Name: "out", Default: "-", Usage: "output file (.json or .jsonl); - for stdout (JSON)", Aliases: []string{"o"}},
		{Name: "tokenizer", Default: "", Usage: "token counter for text-only formats: a Hugging Face tokenizer.json, or \"words\"", Env: []string{"ELIS_SIM_TOKENIZER"}},
		{Name: "from", Default: 0.0, Usage: "keep requests arriving at least this many seconds after the first"},
		{Name: "to", Default: 0.0, Usage: "keep requests arriving before this many seconds after the first (0: no limit)"},
		{Name: "time-scale", Default: float64(1), Usage: "multiply arrival times (0.5 doubles the rate)"},
		{Name: "max", Default: 0, Usage: "keep at most this many requests (0: all)"},
		{Name: "rate", Default: 0.0, Usage: "Poisson arrival rate for formats without timestamps (0: all arrive at 0)"},
		{Name: "seed", Default: uint64(1), Usage: "seed for --rate arrivals", Env: []string{"ELIS_SIM_SEED"}},
		{Name: "output-tokens", Default: 0, Usage: "output length for formats without one (elis-prompts)"},
		{Name: "drop-text", Default: false, Usage: "do not keep prompt text"},
		{Name: "hash-block", Default: 0, Usage: "mooncake: tokens each hash id names (0: the trace's 512; BLIS reads one id per 16-token block)"},
		{Name: "multi-turn", Default: false, Usage: "sharegpt: a request per answered human turn, its prompt the conversation so far, one session per conversation (for the prefix cache)"},
	}
}

// GenFlags are the options of "elis-sim trace gen" (ParseGen reads them).
func GenFlags() []Flag {
	return []Flag{
		{Name: "n", Default: 1000, Usage: "number of requests"},
		{Name: "seed", Default: uint64(1), Usage: "random seed; the same seed gives the same bytes", Env: []string{"ELIS_SIM_SEED"}},
		{Name: "arrivals", Default: "poisson:1", Usage: "arrival process: poisson:RATE, gamma:SHAPE:SCALE_S or constant:RATE"},
		{Name: "rate-multiplier", Default: float64(1), Usage: "multiply the arrival rate (the ELIS paper's 1x, 3x, 5x loads)"},
		{Name: "prompt", Default: "lognormal:512:0.5:8192", Usage: "prompt length distribution: fixed:N, uniform:MIN:MAX or lognormal:MEAN:SIGMA[:MAX]"},
		{Name: "output", Default: "lognormal:256:0.8:4096", Usage: "output length distribution, as --prompt"},
		{Name: "lengths-from", Default: "", Usage: "resample (prompt, output) pairs from this native trace instead of --prompt/--output"},
		{Name: "name", Default: "", Usage: "trace name stored in the file"},
		{Name: "shared-prefix", Default: "", Usage: "TOKENS:FRACTION[:COUNT]: that share of requests starts with one of COUNT (default 1) system prompts of TOKENS tokens, named by hash ids for the prefix cache"},
		{Name: "out", Default: "-", Usage: "output file (.json or .jsonl); - for stdout (JSON)", Aliases: []string{"o"}},
	}
}
