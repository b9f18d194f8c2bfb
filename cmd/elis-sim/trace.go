package main

import (
	"encoding/json"
	"io"
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
	cfg, err := setup.ParseGen(c)
	if err != nil {
		return err
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
	opt, err := setup.ParseImport(c)
	if err != nil {
		return err
	}
	t, err := traces.Import(c.String("format"), c.Args().First(), opt)
	if err != nil {
		return bad(err)
	}
	span := t.Duration()
	from, to := c.Float64("from"), c.Float64("to")
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
	return atomicfile.Write("-", func(w io.Writer) error { return s.WriteText(w, c.Args().First()) })
}
