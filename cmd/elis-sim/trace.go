package main

import (
	"encoding/json"
	"io"
	"os"

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
				Flags:     cliFlags(setup.GenFlags()),
				Action:    traceGen,
			},
			{
				Name:      "import",
				Usage:     "convert a public trace format to the native one",
				ArgsUsage: "FILE",
				UsageText: "elis-sim trace import --format azure AzureLLMInferenceTrace_conv.csv -o conv.jsonl",
				Flags:     cliFlags(setup.ImportFlags()),
				Action:    traceImport,
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
