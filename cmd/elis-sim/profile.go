package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/bench"
	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/replay"
	"github.com/elis-sim/elis-sim/setup"
)

func profileCommand() *cli.Command {
	flags := append(deviceFlags(),
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "profile.csv", Usage: "output CSV"},
		&cli.StringFlag{Name: "prefill", Value: ints(replay.DefaultShapes.Prefill), Usage: "prefill chunk sizes to time"},
		&cli.StringFlag{Name: "batches", Value: ints(replay.DefaultShapes.Batches), Usage: "decode batch sizes to time"},
		&cli.StringFlag{Name: "contexts", Value: ints(replay.DefaultShapes.Contexts), Usage: "cached tokens per decode sequence"},
		&cli.IntFlag{Name: "reps", Value: replay.DefaultShapes.Reps, Usage: "timed repetitions per shape (median kept)"},
		&cli.IntFlag{Name: "max-num-seqs", Usage: "engine setting recorded for calibrate (default: replay's)"},
		&cli.IntFlag{Name: "max-num-batched-tokens", Usage: "engine setting recorded for calibrate (default: replay's)"},
		&cli.IntFlag{Name: "kv-blocks", Usage: "KV cache blocks (default: replay's)"},
		&cli.IntFlag{Name: "block-size", Value: 16, Usage: "tokens per KV block"},
		&cli.IntFlag{Name: "max-model-len", Usage: "context length recorded for calibrate"},
		&cli.IntFlag{Name: "long-prefill-token-threshold", Usage: "engine setting recorded for calibrate"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of random weights"},
		&cli.StringFlag{Name: "url", Usage: "profile a live OpenAI-compatible server instead (vLLM, elis-sim serve): --model is the served name; --prefill the prompt lengths timed alone, --batches x --contexts the concurrent decodes"},
		&cli.IntFlag{Name: "decode", Value: bench.DefaultProfileShapes.Decode, Usage: "with --url: tokens each concurrent request generates"},
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "with --url: per request"},
		&cli.IntFlag{Name: "vocab", Usage: "with --url: prompt token ids are drawn from 1000 to below this (0: the server's vocabulary where /v1/models says it, as llama.cpp's does, else 32000)"},
		&cli.StringFlag{Name: "api-key-env", Value: "OPENAI_API_KEY", Usage: "with --url: environment variable holding the API key"},
	)
	return usageErrors(&cli.Command{
		Name:  "profile",
		Usage: "time step shapes and predictor calls on a device, or a live server, for calibrate",
		UsageText: "elis-sim profile --model tiny --device cpu -o profile.csv\n" +
			"elis-sim profile --url http://localhost:8000 --model meta-llama/Llama-3.1-8B-Instruct --max-num-batched-tokens 8192 -o profile.csv",
		Flags:  flags,
		Action: profileAction,
	})
}

func ints(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func profileAction(c *cli.Context) error {
	if err := setup.CheckOut(c, "out"); err != nil {
		return err
	}
	if u := c.String("url"); u != "" {
		p, err := setup.URLProfile(c.Context, c, os.Stderr)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(c.String("out"), func(w io.Writer) error { return cost.WriteDeviceProfile(w, p) }); err != nil {
			return err
		}
		fmt.Printf("profiled %s (%s): %d prompt lengths alone, %d decode shapes, in %s s, into %s\n", u, c.String("model"), len(p.Requests), len(p.Steps), p.Meta["profile_seconds"], c.String("out"))
		return nil
	}
	p, err := setup.DeviceProfile(c)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(c.String("out"), func(w io.Writer) error { return cost.WriteDeviceProfile(w, p) }); err != nil {
		return err
	}
	fmt.Printf("profiled %d step shapes and %d predictor calls on %s (%s) into %s\n", len(p.Steps), len(p.Predictor), c.String("device"), c.String("model"), c.String("out"))
	return nil
}

func calibrateCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:      "calibrate",
		Usage:     "fit the simulator's cost model to a device profile",
		ArgsUsage: "PROFILE.csv",
		UsageText: "elis-sim calibrate profile.csv -o cost.json && elis-sim run trace.json --cost-model cost.json",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "cost.json", Usage: "output cost model JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return badf("calibrate wants one PROFILE.csv, got %d arguments", c.NArg())
			}
			if err := setup.CheckOut(c, "out"); err != nil {
				return err
			}
			p, err := cost.ReadDeviceProfile(c.Args().First())
			if err != nil {
				return bad(err)
			}
			cf, err := cost.CalibrateProfile(p)
			if err != nil {
				return bad(err)
			}
			if err := cost.WriteCostFile(c.String("out"), cf); err != nil {
				return err
			}
			cf.Describe(os.Stdout, p)
			fmt.Printf("wrote %s; use it with: elis-sim run TRACE --cost-model %s\n", c.String("out"), c.String("out"))
			return nil
		},
	})
}
