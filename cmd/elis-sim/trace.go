package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/setup"
	"github.com/elis-sim/elis-sim/traces"
)

func traceCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:  "trace",
		Usage: "generate, import and summarise request traces",
		Subcommands: []*cli.Command{
			{
				Name:      "gen",
				Usage:     "generate a synthetic trace",
				UsageText: "elis-sim trace gen --arrivals gamma:0.73:10.41 --rate-multiplier 5 --prompt lognormal:70:1 --output lognormal:200:0.9:2048 --n 200 -o trace.json",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "n", Value: 1000, Usage: "number of requests"},
					&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed; the same seed gives the same bytes", EnvVars: []string{"ELIS_SIM_SEED"}},
					&cli.StringFlag{Name: "arrivals", Value: "poisson:1", Usage: "arrival process: poisson:RATE, gamma:SHAPE:SCALE_S or constant:RATE"},
					&cli.Float64Flag{Name: "rate-multiplier", Value: 1, Usage: "multiply the arrival rate (the ELIS paper's 1x, 3x, 5x loads)"},
					&cli.StringFlag{Name: "prompt", Value: "lognormal:512:0.5:8192", Usage: "prompt length distribution: fixed:N, uniform:MIN:MAX or lognormal:MEAN:SIGMA[:MAX]"},
					&cli.StringFlag{Name: "output", Value: "lognormal:256:0.8:4096", Usage: "output length distribution, as --prompt"},
					&cli.StringFlag{Name: "lengths-from", Usage: "resample (prompt, output) pairs from this native trace instead of --prompt/--output"},
					&cli.StringFlag{Name: "name", Usage: "trace name stored in the file"},
					&cli.StringFlag{Name: "shared-prefix", Usage: "TOKENS:FRACTION[:COUNT]: that share of requests starts with one of COUNT (default 1) system prompts of TOKENS tokens, named by hash ids for the prefix cache"},
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "-", Usage: "output file (.json or .jsonl); - for stdout (JSON)"},
				},
				Action: traceGen,
			},
			{
				Name:      "import",
				Usage:     "convert a public trace format to the native one",
				ArgsUsage: "FILE",
				UsageText: "elis-sim trace import --format azure AzureLLMInferenceTrace_conv.csv -o conv.jsonl",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Required: true, Usage: "input format: " + strings.Join(traces.Formats(), ", ")},
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "-", Usage: "output file (.json or .jsonl); - for stdout (JSON)"},
					&cli.StringFlag{Name: "tokenizer", Usage: "token counter for text-only formats: a Hugging Face tokenizer.json, or \"words\"", EnvVars: []string{"ELIS_SIM_TOKENIZER"}},
					&cli.Float64Flag{Name: "from", Usage: "keep requests arriving at least this many seconds after the first"},
					&cli.Float64Flag{Name: "to", Usage: "keep requests arriving before this many seconds after the first (0: no limit)"},
					&cli.Float64Flag{Name: "time-scale", Value: 1, Usage: "multiply arrival times (0.5 doubles the rate)"},
					&cli.IntFlag{Name: "max", Usage: "keep at most this many requests (0: all)"},
					&cli.Float64Flag{Name: "rate", Usage: "Poisson arrival rate for formats without timestamps (0: all arrive at 0)"},
					&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed for --rate arrivals", EnvVars: []string{"ELIS_SIM_SEED"}},
					&cli.IntFlag{Name: "output-tokens", Usage: "output length for formats without one (elis-prompts)"},
					&cli.BoolFlag{Name: "drop-text", Usage: "do not keep prompt text"},
					&cli.IntFlag{Name: "hash-block", Usage: "mooncake: tokens each hash id names (0: the trace's 512; BLIS reads one id per 16-token block)"},
					&cli.BoolFlag{Name: "multi-turn", Usage: "sharegpt: a request per answered human turn, its prompt the conversation so far, one session per conversation (for the prefix cache)"},
				},
				Action: traceImport,
			},
			{
				Name:      "stats",
				Usage:     "summarise a native trace",
				ArgsUsage: "FILE",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action:    traceStats,
			},
		},
	})
}

func traceGen(c *cli.Context) error {
	if c.NArg() > 0 {
		return badf("trace gen takes no arguments, got %q", c.Args().First())
	}
	if err := setup.CheckOut(c, "out"); err != nil {
		return err
	}
	arr, err := traces.ParseArrivals(c.String("arrivals"))
	if err != nil {
		return badf("--arrivals: %w", err)
	}
	cfg := traces.GenConfig{N: c.Int("n"), Seed: c.Uint64("seed"), Arrivals: arr,
		RateMultiplier: c.Float64("rate-multiplier"), Name: c.String("name")}
	if cfg.RateMultiplier <= 0 {
		return badf("--rate-multiplier %v: want a number > 0", cfg.RateMultiplier)
	}
	if cfg.Shared, err = traces.ParseSharedPrefix(c.String("shared-prefix")); err != nil {
		return badf("--shared-prefix: %w", err)
	}
	if from := c.String("lengths-from"); from != "" {
		src, err := traces.ReadFile(from)
		if err != nil {
			return bad(fmt.Errorf("--lengths-from: %w", err))
		}
		if len(src.Requests) == 0 {
			return badf("--lengths-from %s: trace has no requests", from)
		}
		cfg.Resample = src.Requests
	} else {
		if cfg.Prompt, err = traces.ParseLengths(c.String("prompt")); err != nil {
			return badf("--prompt: %w", err)
		}
		if cfg.Output, err = traces.ParseLengths(c.String("output")); err != nil {
			return badf("--output: %w", err)
		}
	}
	t, err := traces.Generate(cfg)
	if err != nil {
		return bad(err)
	}
	return traces.WriteFile(c.String("out"), t)
}

func traceImport(c *cli.Context) error {
	if c.NArg() != 1 {
		return badf("trace import wants one FILE, got %d arguments", c.NArg())
	}
	if err := setup.CheckOut(c, "out"); err != nil {
		return err
	}
	opt := traces.ImportOptions{Rate: c.Float64("rate"), Seed: c.Uint64("seed"),
		OutputTokens: c.Int("output-tokens"), KeepText: !c.Bool("drop-text"), MultiTurn: c.Bool("multi-turn"), HashBlock: c.Int("hash-block")}
	if opt.HashBlock < 0 {
		return badf("--hash-block %d: want tokens per hash id >= 1 (0: the trace's)", opt.HashBlock)
	}
	if spec := c.String("tokenizer"); spec != "" {
		tc, err := traces.LoadTokenCounter(spec)
		if err != nil {
			return badf("--tokenizer: %w", err)
		}
		opt.Tokens = tc
	}
	if ts := c.Float64("time-scale"); !(ts > 0) || math.IsInf(ts, 0) {
		return badf("--time-scale %v: want a number > 0", ts)
	}
	if r := c.Float64("rate"); !(r >= 0) || math.IsInf(r, 0) {
		return badf("--rate %v: want a Poisson rate > 0 in requests/s, or 0 for all at time 0", r)
	}
	from, to := c.Float64("from"), c.Float64("to")
	if !(from >= 0) || !(to >= 0) || (to > 0 && to <= from) {
		return badf("--from %v --to %v: want 0 <= from < to (to 0: no end)", from, to)
	}
	if c.Int("max") < 0 {
		return badf("--max %d: want >= 0 (0: all)", c.Int("max"))
	}
	t, err := traces.Import(c.String("format"), c.Args().First(), opt)
	if err != nil {
		return bad(err)
	}
	span := t.Duration()
	t.Window(from, to, c.Float64("time-scale"), c.Int("max"))
	if len(t.Requests) == 0 {
		return badf("%s: no request arrives in the window --from %v --to %v (the trace spans %.0f s)", c.Args().First(), from, to, span)
	}
	return traces.WriteFile(c.String("out"), t)
}

func traceStats(c *cli.Context) error {
	if c.NArg() != 1 {
		return badf("trace stats wants one FILE, got %d arguments", c.NArg())
	}
	t, err := traces.ReadFile(c.Args().First())
	if err != nil {
		return bad(err)
	}
	s := traces.Summarize(t)
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	return atomicfile.Write("-", func(w io.Writer) error { return writeStats(w, c.Args().First(), s) })
}

func writeStats(w io.Writer, name string, s traces.Stats) error {
	fmt.Fprintf(w, "trace %s\n", name)
	fmt.Fprintf(w, "  requests        %d\n", s.Requests)
	fmt.Fprintf(w, "  duration        %.1f s\n", s.Duration)
	fmt.Fprintf(w, "  mean rate       %.4g req/s\n", s.Rate)
	fmt.Fprintf(w, "  inter-arrival   CV %.3f\n", s.GapCV)
	fmt.Fprintf(w, "  %-14s %9s %8s %8s %8s %8s\n", "tokens", "mean", "p50", "p90", "p99", "max")
	for _, row := range []struct {
		n string
		d traces.Dist
	}{{"prompt", s.Prompt}, {"output", s.Output}} {
		fmt.Fprintf(w, "  %-14s %9.1f %8.0f %8.0f %8.0f %8.0f\n", row.n, row.d.Mean, row.d.P50, row.d.P90, row.d.P99, row.d.Max)
	}
	return nil
}
