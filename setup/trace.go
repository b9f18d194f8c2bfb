package setup

import (
	"fmt"
	"math"

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
